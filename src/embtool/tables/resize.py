"""Tables of another width: PCA to fewer columns, or padding with drawn columns (``embtool resize``).

Users mostly have 300-d vectors and a 512-d model. ``pca`` keeps the ``dim`` directions of most
variance (the rows centred, then projected; the kept share of variance is reported); ``pad`` appends
columns drawn at the table's own mean and σ (``fill="table"``) or from Xavier's U(−a, a) for the new
N × D (``fill="xavier"``). The learned alternative is ``train --input-dim``. Either way the table's
σ changes: ``doctor`` and ``stats`` compare the result against Xavier for the new D.

PCA cannot give more columns than directions that carry variance (at most N − 1 for N rows): the
rest would be empty columns, so such a ``dim`` is refused. PCA needs finite values; ``pad`` keeps
NaN/Inf (``--allow-nonfinite``) where they are and draws its columns from the finite values.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from embtool.core.errors import BadInput
from embtool.tables.stats import block_moments, table_moments, xavier_bound
from embtool.tables.table import EmbeddingTable

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
    vectors = _pad(table, dim, fill, seed)
    args = {"method": method, "dim": dim, "from_dim": table.dim, "fill": fill, "seed": seed}
    return table.derive(vectors, "resize", args), None


def _pad(table: EmbeddingTable, dim: int, fill: str, seed: int) -> np.ndarray:
    """Rows (N, dim) float32: the table's columns, then ``dim − D`` drawn ones."""
    _check_fits(table.n, dim)
    if fill == "table":
        mean, std = table_moments(table)
        if not (np.isfinite(mean) and np.isfinite(std)):
            # NaN/Inf (--allow-nonfinite) stay in their rows; they do not set the new columns' draw
            mean, std = block_moments(b[np.isfinite(b)] for b in table.blocks(_BLOCK))
        if not (np.isfinite(mean) and np.isfinite(std)):
            raise BadInput(
                f"{table.origin}: --fill table needs finite values to draw from; use --fill xavier"
            )
    try:
        out = np.empty((table.n, dim), np.float32)  # (N, dim)
    except (MemoryError, ValueError):  # a limit _check_fits cannot see (cgroup, ulimit -v), or > 2⁶³ bytes
        raise BadInput(
            f"--dim {dim}: {_need(table.n, dim)}, which cannot be allocated; choose a smaller --dim"
        ) from None
    start = 0
    for block in table.blocks(_BLOCK):  # (B, D): a memory-mapped or pending table is not copied whole
        out[start : start + len(block), : table.dim] = block
        start += len(block)
    rng = np.random.default_rng(seed)
    a = xavier_bound(table.n, dim)
    step = max(1, _BLOCK // dim)
    # blocks of rows draw the same values as one (N, dim − D) draw, without a second array that size
    for start in range(0, table.n, step):
        shape = (min(step, table.n - start), dim - table.dim)
        if fill == "table":
            extra = rng.standard_normal(shape, dtype=np.float32) * np.float32(std) + np.float32(mean)
        else:
            extra = rng.uniform(-a, a, shape).astype(np.float32)
        out[start : start + shape[0], table.dim :] = extra  # (B, dim − D)
    return out


def _need(n: int, dim: int) -> str:
    return f"the padded table would be {n} × {dim} float32 = {n * dim * 4 / 2**30:.1f} GiB"


def _check_fits(n: int, dim: int) -> None:
    """BadInput when the (n, dim) float32 result is larger than the memory available now."""
    available = _available_bytes()
    if available is not None and n * dim * 4 > available:
        raise BadInput(
            f"--dim {dim}: {_need(n, dim)}, more than the {available / 2**30:.1f} GiB of memory "
            "available; choose a smaller --dim"
        )


def _available_bytes() -> int | None:
    """The memory a new allocation can take now (Linux's MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _pca(table: EmbeddingTable, dim: int) -> tuple[np.ndarray, float]:
    """Rows (N, dim) float32: the centred rows on the top ``dim`` principal axes; the kept variance share."""
    d = table.dim
    total = np.zeros(d, np.float64)  # (D,)
    gram = np.zeros((d, d), np.float64)  # (D, D) Σ xᵀx
    for block in table.blocks(_BLOCK):
        b = block.astype(np.float64)
        total += b.sum(axis=0)
        gram += b.T @ b
    if not (np.isfinite(total).all() and np.isfinite(gram).all()):
        _refuse_nonfinite(table)
    mean = total / table.n
    cov = (gram - table.n * np.outer(mean, mean)) / (table.n - 1)  # (D, D)
    values, axes = np.linalg.eigh(cov)  # ascending
    values = np.clip(values[::-1], 0.0, None)
    # numpy.linalg.matrix_rank's tolerance, scaled to the uncentred second moments: Σ xᵀx − N·μμᵀ
    # rounds at that scale, so an empty direction's eigenvalue is noise of that size, not 0
    tol = max(table.n, d) * np.finfo(np.float64).eps * np.trace(gram) / (table.n - 1)
    rank = int((values > tol).sum())
    if dim > rank:
        raise BadInput(
            f"{table.origin}: only {rank} direction(s) carry variance ({table.n} rows × D={d}), so "
            f"--dim {dim} would add {dim - rank} empty column(s): pass --dim {rank} or less"
            + (f", then --method pad --dim {dim} to widen" if rank else "")
        )
    axes = axes[:, ::-1][:, :dim]  # (D, dim), most variance first
    axes *= np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(dim)])  # a fixed sign per axis
    kept = float(values[:dim].sum() / values.sum())
    out = np.empty((table.n, dim), np.float32)
    start = 0
    for block in table.blocks(_BLOCK):
        out[start : start + len(block)] = (block.astype(np.float64) - mean) @ axes
        start += len(block)
    return out, kept


def _refuse_nonfinite(table: EmbeddingTable) -> None:
    start = 0
    for block in table.blocks(_BLOCK):
        bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if len(bad):
            row = start + int(bad[0])
            raise BadInput(
                f"{table.origin}: PCA needs finite values: row {row} (token {table.tokens[row]!r}) holds "
                "NaN/Inf; rebuild the table from its source (embtool extract SOURCE --vocab V)"
            )
        start += len(block)
    raise AssertionError("non-finite sums without a non-finite value")
