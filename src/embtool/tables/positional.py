"""The sinusoidal position encoding of Vaswani et al. (Appendix A.1, the paper's Eq. 2), in numpy.

Shared by ``transforms.posenc`` (footnote 6: one random position added to each row), ``stats``
(the absorption ratio of Table 4/6) and the trainer's model (which wraps it in a tensor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from embtool.core.errors import BadInput

if TYPE_CHECKING:  # numpy is imported inside the functions: the commands read the defaults for --help
    import numpy as np

DEFAULT_BASE = 10000.0  # Vaswani et al.; the paper's Eq. 2 misprints it as 1000
DEFAULT_MAX_LEN = 5000  # positions drawn from, and of stats' reference: Table 6's mean 0.131 at D=300
MAX_LEN_LIMIT = 1_000_000  # positions: far beyond any sequence length, small enough to allocate


def check_max_len(max_len: int, option: str = "--max-len") -> int:
    """``max_len`` if it is a usable number of positions, else BadInput naming ``option``."""
    if not 1 <= max_len <= MAX_LEN_LIMIT:
        raise BadInput(f"{option} must be between 1 and {MAX_LEN_LIMIT:,}, got {max_len}")
    return max_len


def encodings(positions: np.ndarray, dim: int, base: float = DEFAULT_BASE) -> np.ndarray:
    """The encodings of ``positions`` (K,): (K, dim) float32, computed in float64.

    P[i, 2k] = sin(i / base^(2k/D)), P[i, 2k+1] = cos(i / base^(2k/D)). Row i does not depend on
    the other positions asked for, so any subset equals the same rows of ``sinusoidal``.
    """
    import numpy as np

    if dim < 1:
        raise BadInput(f"position encoding needs dim ≥ 1, got {dim}")
    pos = np.asarray(positions, dtype=np.float64)[:, None]  # (K, 1)
    two_k = np.arange(0, dim, 2, dtype=np.float64)  # (ceil(D/2),)
    angle = pos / base ** (two_k / dim)  # (K, ceil(D/2))
    pe = np.empty((len(pos), dim), dtype=np.float64)  # (K, D)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : dim // 2])
    return pe.astype(np.float32)


def sinusoidal(max_len: int, dim: int, base: float = DEFAULT_BASE) -> np.ndarray:
    """The position encoding P (max_len, dim) float32 of positions 0 … max_len − 1 (Eq. 2)."""
    if max_len < 1 or dim < 1:
        raise BadInput(f"position encoding needs max_len ≥ 1 and dim ≥ 1, got {max_len}, {dim}")
    import numpy as np

    return encodings(np.arange(max_len), dim, base)
