"""The paper's Table 2 and 6 in one look: value histograms of tables (``embtool stats --plot``).

Left: each table's values against the density of Xavier's U(−a, a) for its N × D, labelled with σ
and σ/σ_x. Right: the same values × √D (what the transformer adds to the position encoding)
against the sinusoidal encoding's values, labelled with σ and the absorption ratio. Densities are
drawn on a log scale, so that a raw table (σ ≈ 0.4) and Xavier's spike (σ ≈ 0.01) show together.

matplotlib is imported inside ``plot_tables``: importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embtool.core.errors import BadInput
from embtool.tables.positional import encodings

if TYPE_CHECKING:
    from embtool.tables.stats import TableStats
    from embtool.tables.table import EmbeddingTable

PANEL_INCHES = (6.0, 4.2)  # one panel's width and height
DPI = 100
SAMPLE = 1 << 20  # values drawn per table (rows picked at random, seed 0): a histogram needs no more
BINS = 120


def sample_values(table: EmbeddingTable, limit: int = SAMPLE, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` finite values of whole rows picked at random (all of a small table), float32."""
    rows = max(1, limit // max(1, table.dim))
    if table.n <= rows:
        values = np.asarray(table.vectors, dtype=np.float32).reshape(-1)
    else:
        pick = np.sort(np.random.default_rng(seed).choice(table.n, rows, replace=False))
        values = np.asarray(table.vectors[pick], dtype=np.float32).reshape(-1)
    return values[np.isfinite(values)]


def plot_tables(
    tables: list[EmbeddingTable], stats: list[TableStats], path: str | os.PathLike[str]
) -> list[str]:
    """Write the two-panel PNG for ``tables`` (their ``stats`` in the same order); returns the labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not tables:
        raise BadInput("no tables to plot")
    fig, (left, right) = plt.subplots(1, 2, figsize=(PANEL_INCHES[0] * 2, PANEL_INCHES[1]), dpi=DPI)
    labels = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    spans, scaled_spans = [], []
    shapes: set[tuple[int, int]] = set()
    for k, (table, st) in enumerate(zip(tables, stats, strict=True)):
        color = colors[k % len(colors)]
        values = sample_values(table)
        if not len(values):
            continue
        lo, hi = np.percentile(values, [0.1, 99.9])
        span = max(abs(lo), abs(hi), st.xavier_bound * 1.2)
        spans.append(span)
        label = f"{st.name}: σ={st.std:.3g} ({st.std_ratio:.3g}× σ_x)"
        labels.append(label)
        left.hist(
            values, bins=BINS, range=(-span, span), density=True, histtype="step", color=color, label=label
        )
        if (st.n, st.dim) not in shapes:  # Xavier's U(−a, a), density 1/(2a), once per N × D
            shapes.add((st.n, st.dim))
            a = st.xavier_bound
            left.plot([-a, -a, a, a], [0, 1 / (2 * a), 1 / (2 * a), 0], linestyle="--", color="black",
                      alpha=0.4 + 0.6 / len(shapes), label=f"Xavier U(±{a:.3g}) for {st.n} × {st.dim}, "
                      f"σ_x={st.xavier_std:.3g}")  # fmt: skip
        s = math.sqrt(table.dim)
        scaled_spans.append(span * s)
        right.hist(values * s, bins=BINS, range=(-span * s, span * s), density=True, histtype="step", color=color,
                   label=f"{st.name} ×√{table.dim}: σ={st.scaled_std:.3g} ({st.absorption:.3g}× σ_pe)")  # fmt: skip
    if not spans:
        raise BadInput("no finite values to plot")
    width = max(scaled_spans)
    for dim in sorted({t.dim for t in tables}):
        positions = np.linspace(0, stats[0].max_len - 1, min(stats[0].max_len, 4096)).round()
        pe = encodings(positions, dim).reshape(-1)  # (K·D,)
        st = next(s for s in stats if s.dim == dim)
        right.hist(pe, bins=BINS, range=(-width, width), density=True, histtype="stepfilled", alpha=0.25,
                   color="gray", label=f"position encoding, D={dim}: σ={st.posenc_std:.3g}")  # fmt: skip
    left.set_xlim(-max(spans), max(spans))
    right.set_xlim(-width, width)
    left.set_title("values vs Xavier's uniform (the paper's Table 2)")
    right.set_title("values × √D vs the position encoding (Table 6)")
    for ax in (left, right):
        ax.set_yscale("log")
        ax.set_ylabel("density (log)")
        ax.set_xlabel("value")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper right")
    fig.tight_layout()
    save_figure(fig, path)
    return labels


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = DPI) -> None:
    """Write a matplotlib figure to ``path`` atomically, in the format its suffix names (png when it
    has none), and close it."""
    import matplotlib.pyplot as plt

    from embtool.core.atomic import atomic_path

    suffix = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix, dpi=dpi)
    plt.close(fig)
