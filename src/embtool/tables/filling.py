"""Rows a source lacks, filled; and how much of a vocabulary a source covered.

Shared by ``extract``, ``align`` and the framework API (``EmbeddingTable.for_vocab``). Missing rows
are filled by default with random values from the found rows' own mean and σ, so the table keeps one
scale (fairseq mixes scales, OpenNMT uses zeros). numpy only: no table, no torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embtool.core.errors import BadInput
from embtool.tables.stats import block_moments, xavier_bound

if TYPE_CHECKING:
    from embtool.text.vocabfile import Vocabulary

MISSING_METHODS = ("normal", "mean", "zero", "xavier")


@dataclass
class Coverage:
    """How many vocabulary tokens a source had: found as they are, composed from pieces, missing."""

    found: int
    composed: int
    missing: int
    share: float | None = None  # of corpus tokens (vocabulary counts) that found+composed cover

    @property
    def total(self) -> int:
        return self.found + self.composed + self.missing

    def line(self) -> str:
        text = f"{self.found} found, {self.composed} composed, {self.missing} missing of {self.total} tokens"
        if self.share is not None:
            text += f"; covers {100 * self.share:.2f}% of corpus tokens"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"found": self.found, "composed": self.composed, "missing": self.missing, "share": self.share}


def check_method(missing: str, methods: Sequence[str] = MISSING_METHODS) -> str:
    if missing not in methods:
        raise BadInput(f"--missing {missing!r}: valid choices: {', '.join(methods)}")
    return missing


def fill_missing(
    vectors: np.ndarray, missing: Sequence[int], method: str = "normal", seed: int = 0
) -> np.ndarray:
    """Fill rows ``missing`` of ``vectors`` (N, D) in place from the other rows' statistics, computed
    block by block (no copy of the found rows); returns ``vectors``.

    normal: N(μ, σ²) with the found values' mean and σ; mean: the found rows' mean vector;
    zero: zeros; xavier: U(−a, a), a = √(6/(N+D)). Random values come from numpy's generator
    seeded with ``seed``.
    """
    check_method(method)
    if not missing:
        return vectors
    n, d = vectors.shape
    index = np.asarray(sorted(set(missing)), dtype=np.int64)
    found = np.setdiff1d(np.arange(n), index)
    if method in ("normal", "mean") and not len(found):
        raise BadInput(f"--missing {method} needs found rows to take statistics from, and none was found")
    rng = np.random.default_rng(seed)
    if method == "normal":
        if len(found) * d > 1:
            mean, std = block_moments(block.reshape(-1) for block in _row_blocks(vectors, found))
        else:
            mean, std = float(next(_row_blocks(vectors, found)).mean()), 0.0
        fill = rng.standard_normal((len(index), d), dtype=np.float32) * np.float32(std) + np.float32(mean)
    elif method == "mean":
        total = sum(block.sum(axis=0, dtype=np.float64) for block in _row_blocks(vectors, found))
        fill = np.broadcast_to((total / len(found)).astype(np.float32), (len(index), d))
    elif method == "zero":
        fill = np.zeros((len(index), d), dtype=np.float32)
    else:
        a = xavier_bound(n, d)
        fill = rng.uniform(-a, a, (len(index), d)).astype(np.float32)
    vectors[index] = fill
    return vectors


def _row_blocks(vectors: np.ndarray, rows: np.ndarray) -> Iterator[np.ndarray]:
    """The rows ``rows`` of ``vectors``, one float32 block of at most 16 MB at a time."""
    step = max(1, (4 << 20) // max(1, vectors.shape[1]))
    for start in range(0, len(rows), step):
        yield vectors[rows[start : start + step]].astype(np.float32, copy=False)


def corpus_share(vocab: Vocabulary, covered: Sequence[int]) -> float | None:
    """The share of the vocabulary's corpus counts that the rows ``covered`` account for."""
    if vocab.counts is None:
        return None
    total = sum(vocab.counts)
    return sum(vocab.counts[i] for i in covered) / total if total else None
