"""resize: PCA keeps the variance it reports and the row geometry; pad keeps the old columns."""

from __future__ import annotations

import numpy as np
import pytest

from embtool.errors import BadInput
from embtool.resize import resize
from embtool.stats import table_moments, xavier_std
from embtool.table import EmbeddingTable, load


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
    from embtool.table import save

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
