"""resize: PCA keeps the variance it reports and the row geometry; pad keeps the old columns."""

from __future__ import annotations

import re

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.tables.resize import resize
from embtool.tables.stats import table_moments, xavier_std
from embtool.tables.table import EmbeddingTable, load


@pytest.fixture
def table() -> EmbeddingTable:
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((3, 10))  # rows live near a 3-d subspace of 10-d
    v = rng.standard_normal((200, 3)) @ basis + 0.01 * rng.standard_normal((200, 10)) + 5.0
    return EmbeddingTable(v.astype(np.float32), [f"t{i}" for i in range(200)], origin="t.safetensors")


def test_pca_keeps_reported_variance_and_distances(table) -> None:
    out, kept = resize(table, 3, "pca")
    assert out.dim == 3 and kept is not None and kept > 0.999
    x = table.vectors.astype(np.float64)
    ref = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    assert kept == pytest.approx(ref[:3].sum() / ref.sum(), rel=1e-6)
    d_in = np.linalg.norm(x[0] - x[1:], axis=1)
    d_out = np.linalg.norm(out.vectors[0] - out.vectors[1:], axis=1)
    np.testing.assert_allclose(d_out, d_in, rtol=1e-2)
    assert out.history[-1]["op"] == "resize" and out.history[-1]["args"]["kept_variance"] == kept
    assert out.tokens == table.tokens


@pytest.mark.parametrize("fill", ["table", "xavier"])
def test_pad_keeps_columns_and_draws_new_ones(table, fill) -> None:
    out, kept = resize(table, 16, "pad", fill=fill, seed=3)
    assert kept is None and out.dim == 16
    np.testing.assert_array_equal(out.vectors[:, :10], table.vectors)
    new = out.vectors[:, 10:].astype(np.float64)
    if fill == "table":
        mean, std = table_moments(table)
        assert new.mean() == pytest.approx(mean, abs=0.2) and new.std() == pytest.approx(std, rel=0.1)
    else:
        a = np.sqrt(3) * xavier_std(200, 16)
        assert np.abs(new).max() <= a and new.std() == pytest.approx(xavier_std(200, 16), rel=0.1)
    assert np.array_equal(out.vectors, resize(table, 16, "pad", fill=fill, seed=3)[0].vectors)


@pytest.mark.parametrize("dim, method, fill, message", [
    (12, "pca", "table", "pca narrows"), (4, "pad", "table", "pad widens"), (4, "svd", "table", "valid choices: pca, pad"),
    (12, "pad", "zeros", "valid choices: table, xavier"), (0, "pca", "table", "at least 1")])  # fmt: skip
def test_bad_options(table, dim, method, fill, message) -> None:
    with pytest.raises(BadInput, match=message):
        resize(table, dim, method, fill)


def test_cli(cli, table, tmp_path) -> None:
    from embtool.tables.table import save

    save(table, tmp_path / "t.safetensors")
    r = cli("resize", str(tmp_path / "t.safetensors"), "--dim", "2", "-o", str(tmp_path / "o.safetensors"))
    assert r.code == 0 and "200 × 10 → 200 × 2 by pca, kept 9" in r.stderr and "% of the variance" in r.stderr
    assert load(tmp_path / "o.safetensors").dim == 2
    r = cli(
        "resize", str(tmp_path / "t.safetensors"), "--dim", "4", "--method", "pad", "-o", str(tmp_path / "p")
    )
    assert (
        r.code == 2
        and r.stderr.startswith("embtool: error: --method pad widens")
        and not (tmp_path / "p").exists()
    )


def _rank_deficient(case: str) -> EmbeddingTable:
    rng = np.random.default_rng(1)
    if case == "few rows":  # 7 centred rows span at most 6 directions of 16
        v = rng.standard_normal((7, 16))
    elif case == "copied columns":  # columns 5–9 repeat columns 0–4: 5 directions of 10
        v = rng.standard_normal((50, 10))
        v[:, 5:] = v[:, :5]
    else:  # every row the same: no direction carries variance
        v = np.tile(rng.standard_normal(8), (30, 1)) + 3.0
    return EmbeddingTable(v.astype(np.float32), [f"t{i}" for i in range(len(v))], origin="r.safetensors")


@pytest.mark.parametrize(
    "case, rank, dim", [("few rows", 6, 12), ("copied columns", 5, 6), ("same rows", 0, 1)]
)
def test_pca_beyond_the_rank_is_refused(case, rank, dim) -> None:
    t = _rank_deficient(case)
    with pytest.raises(
        BadInput, match=rf"^r\.safetensors: only {rank} direction\(s\) carry variance.*--dim {dim}"
    ):
        resize(t, dim, "pca")
    if rank:
        out, kept = resize(t, rank, "pca")  # as many columns as carry variance: all of it kept
        assert out.dim == rank and kept == pytest.approx(1.0)
        x = t.vectors.astype(np.float64)
        d_in = np.linalg.norm(x[0] - x[1:], axis=1)
        np.testing.assert_allclose(np.linalg.norm(out.vectors[0] - out.vectors[1:], axis=1), d_in, rtol=1e-5)


def test_pca_keeps_directions_of_small_but_real_variance(table) -> None:
    out, kept = resize(table, 9, "pca")  # the fixture's 0.01 noise spreads over all 10 directions
    assert out.dim == 9 and kept is not None and kept < 1.0


def _with_nan_row() -> EmbeddingTable:
    v = np.random.default_rng(2).standard_normal((20, 6)).astype(np.float32)
    v[3, 2] = np.nan
    v[5, 0] = np.inf
    return EmbeddingTable(v, [f"t{i}" for i in range(20)], allow_nonfinite=True, origin="n.safetensors")


def test_pca_of_nonfinite_rows_is_refused_by_row() -> None:
    with pytest.raises(BadInput, match=r"^n\.safetensors: PCA needs finite values: row 3 \(token 't3'\)"):
        resize(_with_nan_row(), 4, "pca")


def test_pad_of_nonfinite_rows_draws_from_the_finite_values() -> None:
    t = _with_nan_row()
    out, _ = resize(t, 9, "pad", fill="table", seed=0)
    np.testing.assert_array_equal(out.vectors[:, :6], t.vectors)  # NaN/Inf stay where they were
    assert np.isfinite(out.vectors[:, 6:]).all()


def test_pad_larger_than_memory_is_refused(monkeypatch, table) -> None:
    import embtool.tables.resize

    monkeypatch.setattr(embtool.tables.resize, "_available_bytes", lambda: 2**30)
    with pytest.raises(BadInput, match=r"^--dim 100000000: .*200 × 100000000 float32.* 74\.5 GiB.*1\.0 GiB"):
        resize(table, 100_000_000, "pad")
    out, _ = resize(table, 1000, "pad")  # 0.8 MB fits
    assert out.dim == 1000


@pytest.mark.parametrize("args, message", [
    (["--dim", "12"], r"r\.safetensors: only 6 direction\(s\) carry variance"),
    (["--dim", "10000000000000", "--method", "pad"], r"--dim 10000000000000: the padded table would be"),
])  # fmt: skip
def test_cli_refusals_are_one_line_and_write_nothing(cli, tmp_path, args, message) -> None:
    from embtool.tables.table import save

    save(_rank_deficient("few rows"), tmp_path / "r.safetensors")
    out = tmp_path / "o.safetensors"
    r = cli("resize", str(tmp_path / "r.safetensors"), *args, "-o", str(out))
    assert r.code == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert re.match("embtool: error: .*" + message, r.stderr)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["r.safetensors"]


def test_cli_nonfinite_pca_is_one_line(cli, tmp_path) -> None:
    from embtool.tables.table import save

    save(_with_nan_row(), tmp_path / "n.safetensors")
    out = tmp_path / "o.safetensors"
    r = cli("resize", str(tmp_path / "n.safetensors"), "--dim", "3", "--allow-nonfinite", "-o", str(out))
    assert r.code == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "PCA needs finite values: row 3" in r.stderr and not out.exists()
