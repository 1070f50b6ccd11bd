"""A table as gensim's ``KeyedVectors`` sees it in its evaluations: float32 rows and their keys.

gensim looks a word up upper-cased unless ``case_sensitive``, among the first ``restrict`` rows
only, and the first row of a key wins (its ``ok_vocab``). Both evaluations follow it, so they
share this one lookup. Rows arrive as the table holds them, a numpy array or a torch tensor of
any float type; numpy and torch rows give the same numbers, and torch is never imported here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embtool.core.errors import BadInput


def as_float32(vectors: Any) -> np.ndarray:
    """(N, D) rows as a C-contiguous float32 numpy array (gensim scores in float32).

    Takes a numpy array or a torch tensor (on any device, requiring grad or not). A float32
    array comes back as is, not copied: callers must not write to it.
    """
    if isinstance(vectors, np.ndarray):
        if vectors.ndim != 2:
            raise BadInput(f"table rows must be a 2-D (N, D) array, got shape {vectors.shape}")
        return np.ascontiguousarray(vectors, dtype=np.float32)
    # A tensor exists only if torch is already imported, so looking in sys.modules is exact and
    # keeps numpy tables free of torch's start-up time.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(vectors, torch.Tensor):
        return as_float32(vectors.detach().to(device="cpu", dtype=torch.float32).numpy())
    raise BadInput(f"table rows must be a numpy array or a torch tensor, got {type(vectors).__name__}")


@dataclass
class Keys:
    """The first ``restrict`` rows' keys as gensim sees them: a key per row, the first row per key."""

    keys: list[str]  # (R,) token, upper-cased unless case-sensitive
    first: dict[str, int]  # key → its first row (gensim's ok_vocab)
    group: np.ndarray  # (R,) int64: first row of the row's key
    variants: dict[str, list[int]]  # key → all its rows, only for keys with several
    case_sensitive: bool

    @classmethod
    def build(cls, tokens: Sequence[str], case_sensitive: bool) -> Keys:
        keys = list(tokens) if case_sensitive else [t.upper() for t in tokens]
        first: dict[str, int] = {}
        variants: dict[str, list[int]] = {}
        group: list[int] = []
        for i, k in enumerate(keys):
            f = first.setdefault(k, i)
            group.append(f)
            if f != i:
                variants.setdefault(k, [f]).append(i)
        return cls(keys, first, np.array(group, dtype=np.int64), variants, case_sensitive)

    def key(self, word: str) -> str:
        """The key gensim looks ``word`` up by."""
        return word if self.case_sensitive else word.upper()

    def row(self, word: str) -> int:
        """The row that answers for ``word`` (its key's first row), or -1 when it is unknown."""
        return self.first.get(self.key(word), -1)
