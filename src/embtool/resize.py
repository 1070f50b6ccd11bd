"""Tables of another width: PCA to fewer columns, or padding with drawn columns (``embtool resize``).

Users mostly have 300-d vectors and a 512-d model. ``pca`` keeps the ``dim`` directions of most
variance (the rows centred, then projected; the kept share of variance is reported); ``pad`` appends
columns drawn at the table's own mean and σ (``fill="table"``) or from Xavier's U(−a, a) for the new
N × D (``fill="xavier"``). The learned alternative is ``train --input-dim``. Either way the table's
σ changes: ``doctor`` and ``stats`` compare the result against Xavier for the new D.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embtool.errors import BadInput
from embtool.stats import table_moments, xavier_bound
from embtool.table import EmbeddingTable

METHODS = ("pca", "pad")
FILLS = ("table", "xavier")
_BLOCK = 1 << 21  # values per block: few large float64 products, 16 MB each


def resize(
    table: EmbeddingTable, dim: int, method: str = "pca", fill: str = "table", seed: int = 0
) -> tuple[EmbeddingTable, float | None]:
    """The table with ``dim`` columns, and for PCA the share of the variance kept (None for pad)."""
    if method not in METHODS:
        raise BadInput(f"--method {method!r}: valid choices: {', '.join(METHODS)}")
    if fill not in FILLS:
        raise BadInput(f"--fill {fill!r}: valid choices: {', '.join(FILLS)}")
    if dim < 1:
        raise BadInput(f"--dim must be at least 1, got {dim}")
    if method == "pca":
        if dim >= table.dim:
            raise BadInput(
                f"--method pca narrows: --dim {dim} must be below the table's D={table.dim}; pad widens"
            )
        if table.n < 2:
            raise BadInput(f"{table.origin}: PCA needs at least 2 rows")
        vectors, kept = _pca(table, dim)
        args: dict[str, Any] = {"method": method, "dim": dim, "from_dim": table.dim, "kept_variance": kept}
        return table.derive(vectors, "resize", args), kept
    if dim <= table.dim:
        raise BadInput(
            f"--method pad widens: --dim {dim} must be above the table's D={table.dim}; pca narrows"
        )
    rng = np.random.default_rng(seed)
    shape = (table.n, dim - table.dim)
    if fill == "table":
        mean, std = table_moments(table)
        extra = rng.standard_normal(shape, dtype=np.float32) * np.float32(std) + np.float32(
            mean
        )  # (N, dim − D)
    else:
        a = xavier_bound(table.n, dim)
        extra = rng.uniform(-a, a, shape).astype(np.float32)
    vectors = np.concatenate([table.vectors.astype(np.float32), extra], axis=1)  # (N, dim)
    args = {"method": method, "dim": dim, "from_dim": table.dim, "fill": fill, "seed": seed}
    return table.derive(vectors, "resize", args), None


def _pca(table: EmbeddingTable, dim: int) -> tuple[np.ndarray, float]:
    """Rows (N, dim) float32: the centred rows on the top ``dim`` principal axes; the kept variance share."""
    d = table.dim
    total = np.zeros(d, np.float64)  # (D,)
    gram = np.zeros((d, d), np.float64)  # (D, D) Σ xᵀx
    for block in table.blocks(_BLOCK):
        b = block.astype(np.float64)
        total += b.sum(axis=0)
        gram += b.T @ b
    mean = total / table.n
    cov = (gram - table.n * np.outer(mean, mean)) / (table.n - 1)  # (D, D)
    values, axes = np.linalg.eigh(cov)  # ascending
    values = np.clip(values[::-1], 0.0, None)
    axes = axes[:, ::-1][:, :dim]  # (D, dim), most variance first
    axes *= np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(dim)])  # a fixed sign per axis
    kept = float(values[:dim].sum() / values.sum()) if values.sum() > 0 else 1.0
    out = np.empty((table.n, dim), np.float32)
    start = 0
    for block in table.blocks(_BLOCK):
        out[start : start + len(block)] = (block.astype(np.float64) - mean) @ axes
        start += len(block)
    return out, kept
