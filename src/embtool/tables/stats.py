"""Distribution figures of a table: the paper's Tables 2 and 6, plus position-encoding absorption."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from embtool.core.errors import BadInput
from embtool.tables.positional import DEFAULT_MAX_LEN, check_max_len, encodings

if TYPE_CHECKING:
    from embtool.tables.table import EmbeddingTable

__all__ = [
    "DEFAULT_MAX_LEN",
    "PosencFinding",
    "TableStats",
    "block_moments",
    "moments",
    "table6_posenc_finding",
    "table_moments",
    "table_stats",
]
_CHUNK = 1 << 16  # values per block: a block and its temporaries stay in the CPU's cache


def moments(x: np.ndarray) -> tuple[float, float]:
    """Mean and sample σ (ddof=1) of all elements of the array ``x``, accurate to ~1e-8 relative.

    One blockwise pass without a full-size temporary (see ``block_moments``).
    """
    flat = np.asarray(x).reshape(-1)
    return block_moments(
        flat[i : i + _CHUNK].astype(np.float32, copy=False) for i in range(0, flat.size, _CHUNK)
    )


def table_moments(table: EmbeddingTable) -> tuple[float, float]:
    """``moments`` of a table's values, block by block (a pending map too), never a copy of the table."""
    return block_moments(block.reshape(-1) for block in table.blocks(_CHUNK))


def block_moments(blocks: Iterable[np.ndarray]) -> tuple[float, float]:
    """Mean and sample σ (ddof=1) of the values in ``blocks``: 1-D float32 numpy arrays.

    float32 cascade sums of d = x − c and d² per block, accumulated in float64, around c = the
    first block's mean (so that d is small and the sums do not cancel; shifted-data variance).
    """
    with np.errstate(all="ignore"):  # NaN/Inf (--allow-nonfinite) give NaN figures, not warnings
        return _moments(blocks)


def _moments(blocks: Iterable[np.ndarray]) -> tuple[float, float]:
    n, s1, s2 = 0, 0.0, 0.0
    c: float | None = None
    for block in blocks:
        if not len(block):
            continue
        if c is None:  # rounded to float32 because the blocks subtract it in float32
            c = struct.unpack("f", struct.pack("f", float(block.sum()) / len(block)))[0]
        d = block - np.float32(c)
        s1 += float(d.sum())
        d *= d
        s2 += float(d.sum())
        n += len(block)
    if n < 2 or c is None:
        raise BadInput(f"need at least 2 values for a standard deviation, got {n}")
    mean = c + s1 / n
    var = max(s2 - s1 * s1 / n, 0.0) / (n - 1)
    return mean, math.sqrt(var)


def posenc_range(max_len: int, dim: int) -> tuple[float, float]:
    """Minimum and maximum of the sinusoidal encoding (max_len, dim) (Table 6's "Pos. Encoding" row)."""
    step = max(1, _CHUNK // dim)
    lo, hi = math.inf, -math.inf
    for i in range(0, max_len, step):
        block = encodings(np.arange(i, min(i + step, max_len)), dim)
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return lo, hi


def posenc_moments(max_len: int, dim: int) -> tuple[float, float]:
    """``moments`` of the sinusoidal encoding (max_len, dim), computed a few positions at a time."""
    step = max(1, _CHUNK // dim)  # positions per block
    return block_moments(encodings(np.arange(i, min(i + step, max_len)), dim).reshape(-1)
                         for i in range(0, max_len, step))  # fmt: skip


# Table 6's "Pos. Encoding" row at D = 300 (the GloVe encoder's width): mean 0.131 (σ 0.67).
TABLE6_POSENC = (300, 0.131, 0.67)  # D, mean, σ
TABLE6_LENGTHS = (5000, 1000)  # the L whose mean (5,000: 0.131) and whose σ (1,000: 0.669) it reads


@dataclass(frozen=True)
class PosencFinding:
    """Why no one length L gives Table 6's position-encoding mean and σ together (issue 22.5).

    Each sin column has a cos column of the same angle and sin² + cos² = 1, so for an even D the
    mean square of any encoding is exactly ½ and σ² = (½ − mean²)·n/(n − 1) (n = L·D values): the
    mean fixes σ at every L. Mean 0.131 is L = 5,000's and gives σ 0.695; σ 0.67 is L = 1,000's, whose
    mean is 0.229. Interleaved or concatenated sin/cos (the same values), population or sample σ
    (n ≥ 300,000: they agree to 1e-6), the positions a sentence uses (L ≈ 40: mean 0.41) and the
    positions drawn for each row (footnote 6) change nothing of this; nor does Eq. 2 as printed (base
    1,000, the cos at exponent j/D instead of its sin's (j − 1)/D): its mean square stays within 0.001
    of ½ from L = 50 to 10,000. The 0.67 is another L's σ.
    """

    dim: int
    paper_mean: float
    paper_std: float
    std_at_paper_mean: float  # √(½ − mean²): the σ that goes with the paper's mean, any L
    by_length: tuple[tuple[int, float, float], ...]  # (L, mean, σ) of TABLE6_LENGTHS

    def text(self) -> str:
        """Two lines for ``embtool stats``: the identity, and which L each of the paper's figures is."""
        (n_mean, m1, s1), (n_std, m2, s2) = self.by_length
        return (
            f"pos. enc.: mean² + σ² = ½ at every L (each sin has a cos of its angle), so Table 6's "
            f"{self.paper_mean} ({self.paper_std}) at D = {self.dim} is no one L's:\n"
            f"its mean is L = {n_mean:,}'s (mean {m1:.3f}, σ {s1:.3f}), its σ L = {n_std:,}'s "
            f"(mean {m2:.3f}, σ {s2:.3f}); mean {self.paper_mean} gives σ {self.std_at_paper_mean:.3f} at any L."
        )


def table6_posenc_finding() -> PosencFinding:
    """The figures behind ``PosencFinding``, computed from the encoding itself."""
    dim, mean, std = TABLE6_POSENC
    by_length = tuple((n, *posenc_moments(n, dim)) for n in TABLE6_LENGTHS)
    return PosencFinding(dim, mean, std, math.sqrt(0.5 - mean * mean), by_length)


def xavier_bound(n: int, dim: int) -> float:
    """a of Xavier-uniform U(−a, a) for an n × dim matrix: √(6/(n+dim))."""
    return math.sqrt(6.0 / (n + dim))


def xavier_std(n: int, dim: int) -> float:
    """σ_x of Xavier-uniform for an n × dim matrix: a/√3 = √(2/(n+dim)) (Eq. 1)."""
    return math.sqrt(2.0 / (n + dim))


@dataclass
class TableStats:
    """One table's figures; the field names are those of ``embtool stats --json``."""

    name: str
    n: int
    dim: int
    min: float
    max: float
    mean: float
    std: float
    xavier_bound: float
    xavier_std: float
    xavier_scaled_bound: float  # Table 6's Xavier "(Scaled)" row: a·√D …
    xavier_scaled_std: float  # … and σ_x·√D
    std_ratio: float  # σ / σ_x
    scaled_min: float  # the same after × √D (Table 6's "(Scaled)" rows)
    scaled_max: float
    scaled_mean: float
    scaled_std: float
    posenc_mean: float  # sinusoidal encoding of max_len positions × D
    posenc_std: float
    posenc_min: float
    posenc_max: float
    absorption: float  # σ(scaled table) / σ(position encoding)
    max_len: int
    source: str
    tokenizer: str
    history: str  # "op → op → …"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def table_stats(table: EmbeddingTable, name: str = "table", max_len: int = DEFAULT_MAX_LEN) -> TableStats:
    """Compute every figure of ``embtool stats`` for one table."""
    check_max_len(max_len)
    lo, hi = table.value_range()
    mean, std = table_moments(table)
    n, dim = table.n, table.dim
    s = math.sqrt(dim)
    pe_mean, pe_std = posenc_moments(max_len, dim)
    pe_min, pe_max = posenc_range(max_len, dim)
    return TableStats(
        name=name,
        n=n,
        dim=dim,
        min=float(lo),
        max=float(hi),
        mean=mean,
        std=std,
        xavier_bound=xavier_bound(n, dim),
        xavier_std=xavier_std(n, dim),
        xavier_scaled_bound=xavier_bound(n, dim) * s,
        xavier_scaled_std=xavier_std(n, dim) * s,
        std_ratio=std / xavier_std(n, dim),
        scaled_min=float(lo) * s,
        scaled_max=float(hi) * s,
        scaled_mean=mean * s,
        scaled_std=std * s,
        posenc_mean=pe_mean,
        posenc_std=pe_std,
        posenc_min=pe_min,
        posenc_max=pe_max,
        absorption=std * s / pe_std,
        max_len=max_len,
        source=table.source,
        tokenizer=table.tokenizer,
        history=" → ".join(str(h.get("op", "?")) for h in table.history) or "-",
    )
