"""Distribution figures (the paper's Tables 2 and 6) held against numpy's float64 answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.tables.positional import sinusoidal
from embtool.tables.stats import (
    block_moments,
    moments,
    posenc_moments,
    table6_posenc_finding,
    table_moments,
    table_stats,
)
from embtool.tables.table import Affine, save


@pytest.fixture
def glove_like(make_table):
    rows = np.random.default_rng(0).standard_normal((500, 40), dtype=np.float32) * 0.37 + 0.053
    return make_table(rows, source="glove:test")


def test_stats_equal_numpy(glove_like) -> None:
    x = glove_like.vectors.astype(np.float64)
    s = table_stats(glove_like, max_len=100)
    assert (s.n, s.dim) == (500, 40)
    assert s.min == x.min() and s.max == x.max()
    assert s.mean == pytest.approx(x.mean(), rel=1e-6) and s.std == pytest.approx(x.std(ddof=1), rel=1e-7)
    assert s.xavier_bound == pytest.approx(math.sqrt(6 / 540)) and s.xavier_std == pytest.approx(
        math.sqrt(2 / 540)
    )
    assert s.scaled_std == pytest.approx(x.std(ddof=1) * math.sqrt(40), rel=1e-7)
    pe = sinusoidal(100, 40).astype(np.float64)
    assert s.posenc_mean == pytest.approx(pe.mean(), abs=1e-9) and s.posenc_std == pytest.approx(
        pe.std(ddof=1), rel=1e-6
    )
    assert s.absorption == pytest.approx(s.scaled_std / s.posenc_std)
    assert (s.posenc_min, s.posenc_max) == (pytest.approx(pe.min()), pytest.approx(pe.max()))


def test_stats_reference_posenc_matches_paper_table6(make_table) -> None:
    s = table_stats(make_table(np.random.default_rng(1).standard_normal((10, 300), dtype=np.float32)))
    assert s.posenc_mean == pytest.approx(0.131, abs=5e-4)  # Table 6: Pos. Encoding mean 0.131


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_stats_of_half_tables_are_of_their_stored_values(glove_like, dtype) -> None:
    half = glove_like.derive(glove_like.vectors, "cast", {}, dtype=dtype)
    x = half.vectors.astype(np.float64)
    s = table_stats(half, max_len=10)
    assert s.min == x.min() and s.std == pytest.approx(x.std(ddof=1), rel=1e-7)


def test_stats_of_a_pending_map_are_those_of_its_values(glove_like) -> None:
    lazy = glove_like.derive_map("scale", {}, Affine(-3.0, shift=0.5))
    values = glove_like.derive_map("scale", {}, Affine(-3.0, shift=0.5)).vectors.astype(np.float64)  # whole
    assert table_moments(lazy) == pytest.approx((values.mean(), values.std(ddof=1)), rel=1e-7)
    assert lazy.value_range() == (values.min(), values.max())


def test_stats_max_len_is_bounded(glove_like) -> None:
    with pytest.raises(BadInput, match="--max-len must be between 1 and 1,000,000"):
        table_stats(glove_like, max_len=2_000_000)


def test_posenc_moments_equal_those_of_the_whole_encoding() -> None:
    pe = sinusoidal(3000, 30).astype(np.float64)
    assert posenc_moments(3000, 30) == pytest.approx((pe.mean(), pe.std(ddof=1)), rel=1e-7)


def test_moments_precise_with_large_offset() -> None:
    x = np.random.default_rng(1).standard_normal((2000, 300), dtype=np.float32) * 0.01 + 50.0
    a = x.astype(np.float64)
    mean, std = moments(x)
    assert mean == pytest.approx(a.mean(), rel=1e-9) and std == pytest.approx(a.std(ddof=1), rel=1e-5)


def test_block_moments_do_not_depend_on_the_blocks() -> None:
    x = np.random.default_rng(4).standard_normal((3000, 7), dtype=np.float32) * 5 + 100
    blocks = [b.reshape(-1) for b in np.array_split(x, 5)]
    truth = (x.astype(np.float64).mean(), x.astype(np.float64).std(ddof=1))
    assert block_moments(blocks) == pytest.approx(truth, rel=3e-8) and moments(x) == pytest.approx(
        truth, rel=3e-8
    )


def test_moments_need_two_values() -> None:
    with pytest.raises(BadInput, match="at least 2 values"):
        moments(np.ones(1, np.float32))


def test_stats_has_table6s_xavier_rows_for_the_papers_encoder_layer(make_table) -> None:
    """Table 6: Xavier −0.027, 0.027 (σ 0.016); scaled −0.47, 0.47 (σ 0.27); Pos. Encoding −1, 1.
    Those are Xavier's for the encoder layer the caption names, 7,853 × 300 (German); its "5893 × 300"
    (the English decoder's) would give ±0.031, σ 0.018."""
    s = table_stats(make_table(np.eye(7853, 300, dtype=np.float32)))
    assert round(s.xavier_bound, 3) == 0.027 and round(s.xavier_std, 3) == 0.016
    assert round(s.xavier_scaled_bound, 2) == 0.47 and round(s.xavier_scaled_std, 2) == 0.27
    assert round(s.posenc_min, 2) == -1.0 and round(s.posenc_max, 2) == 1.0


# ----------------------------------------------------------------------------- Table 6's pos. enc. σ (issue 22.5)


@pytest.mark.parametrize("max_len", [1, 41, 256, 1000, 5000])
def test_posenc_mean_fixes_its_sigma_at_every_length(max_len) -> None:
    """sin² + cos² = 1 per pair of columns: the mean square is ½ at any L (even D), so σ follows the mean."""
    pe = sinusoidal(max_len, 300).astype(np.float64)
    assert (pe**2).mean() == pytest.approx(0.5, abs=1e-6)
    if max_len > 1:
        n = pe.size
        assert pe.std(ddof=1) ** 2 == pytest.approx((0.5 - pe.mean() ** 2) * n / (n - 1), abs=1e-6)


def test_table6_posenc_is_two_lengths_figures() -> None:
    """The paper's 0.131 (0.67): its mean is L = 5,000's (σ 0.695 there), its σ L = 1,000's (mean
    0.229); the figures here are numpy's on the whole encoding, not the code under test's."""
    found = table6_posenc_finding()
    want = {n: (sinusoidal(n, 300).astype(np.float64)) for n in (5000, 1000)}
    assert found.by_length == (
        (5000, pytest.approx(want[5000].mean(), abs=1e-6), pytest.approx(want[5000].std(ddof=1), abs=1e-6)),
        (1000, pytest.approx(want[1000].mean(), abs=1e-6), pytest.approx(want[1000].std(ddof=1), abs=1e-6)),
    )
    assert round(want[5000].mean(), 3) == 0.131 and round(want[1000].std(ddof=1), 2) == 0.67
    assert round(want[5000].std(ddof=1), 3) == 0.695 and round(want[1000].mean(), 3) == 0.229
    assert found.std_at_paper_mean == pytest.approx(0.695, abs=5e-4)


def test_stats_says_which_length_gives_table6s_posenc_figures(glove_like, tmp_path, cli) -> None:
    save(glove_like, tmp_path / "g.safetensors")
    r = cli("stats", str(tmp_path / "g.safetensors"))
    assert r.code == 0, r.stderr
    lines = r.text.splitlines()
    assert "mean² + σ² = ½ at every L" in lines[-2] and "0.131 (0.67)" in lines[-2]
    assert (
        "L = 5,000's (mean 0.131, σ 0.695)" in lines[-1] and "L = 1,000's (mean 0.229, σ 0.669)" in lines[-1]
    )
    r = cli("stats", "--json", str(tmp_path / "g.safetensors"))
    assert len(r.text.splitlines()) == 1  # --json: one object a table, nothing else
