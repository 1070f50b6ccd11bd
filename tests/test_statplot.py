"""stats --plot: a PNG of the value histograms against Xavier's and the position encoding's."""

from __future__ import annotations

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.tables.statplot import plot_tables, sample_values
from embtool.tables.stats import table_stats
from embtool.tables.table import EmbeddingTable, save
from embtool.tables.transforms import standardize


@pytest.fixture
def raw() -> EmbeddingTable:
    v = (np.random.default_rng(0).standard_normal((300, 16)) * 0.4).astype(np.float32)
    return EmbeddingTable(v, [f"w{i}" for i in range(300)])


def test_png_with_sigma_labels(raw, tmp_path) -> None:
    x = standardize(raw)
    labels = plot_tables([raw, x], [table_stats(raw, "raw"), table_stats(x, "raw_x")], tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert labels[0] == "raw: σ=0.399 (5.01× σ_x)" and labels[1] == "raw_x: σ=0.0796 (1× σ_x)"


def test_sample_values_picks_whole_rows_and_drops_nonfinite() -> None:
    v = np.arange(40, dtype=np.float32).reshape(10, 4)
    v[1, 2] = np.nan
    t = EmbeddingTable(v, [str(i) for i in range(10)], allow_nonfinite=True)
    assert len(sample_values(t)) == 39
    got = sample_values(t, limit=8)  # 2 rows of 4
    assert len(got) in (7, 8) and set((got // 4).astype(int).tolist()) <= set(range(10))
    with pytest.raises(BadInput, match="no tables"):
        plot_tables([], [], "x.png")


def test_cli_stats_plot(cli, raw, tmp_path) -> None:
    save(raw, tmp_path / "raw.safetensors")
    r = cli("stats", str(tmp_path / "raw.safetensors"), "--plot", str(tmp_path / "s.png"))
    assert r.code == 0 and (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert "histograms of 1 table(s)" in r.stderr
