"""Reorder tables to a vocabulary, and fill the rows no source has (shared with ``extract``).

Missing rows are filled by default with random values from the found rows' own mean and σ,
so the table keeps one scale (fairseq mixes scales, OpenNMT uses zeros).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from embtool.errors import BadInput
from embtool.stats import block_moments, xavier_bound
from embtool.text.vocabfile import Vocabulary

if TYPE_CHECKING:
    from embtool.table import EmbeddingTable

MISSING_METHODS = ("normal", "mean", "zero", "xavier")
ALIGN_METHODS = (*MISSING_METHODS, "subword")  # subword: the mean of the token's pieces' rows, else normal


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


def align(
    tables: EmbeddingTable | Sequence[EmbeddingTable],
    vocab: Vocabulary,
    missing: str = "normal",
    seed: int = 0,
    case_fallback: bool = True,
) -> tuple[EmbeddingTable, Coverage]:
    """A table with one row per vocabulary token, in the vocabulary's order.

    A token's row comes from the first table that has it (exact, then lower-cased with
    ``case_fallback``); tokens no table has are filled by ``missing`` and listed in
    ``embtool.missing``. ``subword`` first composes such a token as the mean of the rows of the
    pieces that the first table's sub-word tokenizer (``hf:…``) splits it into, when the tables
    have them all, and fills the rest by ``normal``. History is the first table's, plus this step.
    """
    from embtool.table import EmbeddingTable, history_entry

    check_method(missing, ALIGN_METHODS)
    group = [tables] if isinstance(tables, EmbeddingTable) else list(tables)
    if not group:
        raise BadInput("align needs at least one table")
    first = group[0]
    for other in group[1:]:
        if other.dim != first.dim:
            raise BadInput(
                f"{other.origin}: dimension {other.dim} does not match {first.origin}'s {first.dim}; "
                "tables aligned together must have the same D"
            )
    indexes = [{t: i for i, t in enumerate(t.tokens)} for t in group]
    filled_before = [set(t.missing or ()) for t in group]
    # float32, or float16 for float16 tables (a bfloat16 table's rows are float32 already)
    vectors = np.zeros((len(vocab), first.dim), dtype=first.vectors.dtype)  # (N, D)
    picks: list[tuple[list[int], list[int]]] = [([], []) for _ in group]  # per table: (our rows, its rows)
    lost: list[int] = []  # rows no table has: filled here
    inherited: list[int] = []  # rows a table has, but filled by a fallback when it was made
    for n, token in enumerate(vocab.tokens):
        for k, (index, before) in enumerate(zip(indexes, filled_before, strict=True)):
            i = index.get(token)
            if i is None and case_fallback:
                i = index.get(token.lower())
            if i is not None:
                picks[k][0].append(n)
                picks[k][1].append(i)
                if i in before:
                    inherited.append(n)
                break
        else:
            lost.append(n)
    for table, (ours, theirs) in zip(group, picks):
        vectors[ours] = table.vectors[theirs]  # (K, D), one gather per table
    composed: list[int] = []
    if missing == "subword":
        composed = _compose_from_pieces(
            first.tokenizer, [vocab.tokens[n] for n in lost], group, indexes, vectors, lost
        )
        done = set(composed)
        lost = [n for n in lost if n not in done]
    if len(lost) == len(vocab):
        raise BadInput(
            f"none of the {len(vocab)} vocabulary tokens is in {first.origin}; is the vocabulary made with "
            f"the table's tokenizer ({first.tokenizer})?"
        )
    fill_missing(vectors, lost, "normal" if missing == "subword" else missing, seed)
    not_found = set(lost) | set(inherited)
    covered = [i for i in range(len(vocab)) if i not in not_found]
    cov = Coverage(len(covered) - len(composed), len(composed), len(not_found), corpus_share(vocab, covered))
    args: dict[str, Any] = {
        "tables": [t.origin for t in group],
        "vocab_size": len(vocab),
        "missing": missing,
        "seed": seed,
        "case_fallback": case_fallback,
        "coverage": cov.as_dict(),
    }
    table = EmbeddingTable(
        vectors,
        list(vocab.tokens),
        source=first.source if len(group) == 1 else "+".join(t.source for t in group),
        tokenizer=vocab.tokenizer or first.tokenizer,
        history=[*first.history, history_entry("align", args)],
        missing=sorted(not_found),
        extra=dict(first.extra),
        allow_nonfinite=any(t.allow_nonfinite for t in group),
        origin="aligned",
        dtype=first.dtype,
    )
    return table, cov


def _compose_from_pieces(
    tokenizer: str,
    words: list[str],
    group: list[EmbeddingTable],
    indexes: list[dict[str, int]],
    vectors: np.ndarray,
    rows: list[int],
) -> list[int]:
    """Fill ``vectors[rows[k]]`` with the mean of the rows of ``words[k]``'s pieces where the tables
    have every piece; the rows so filled. The pieces are the tokenizer's (``hf:…``) split."""
    from embtool.sources.pieces import tokenizer_for

    if not tokenizer.startswith("hf:"):
        raise BadInput(
            f"--missing subword splits tokens with the table's sub-word tokenizer, and this table's is "
            f"{tokenizer!r}, not hf:…; choose normal, mean, zero or xavier"
        )
    pieces = tokenizer_for(tokenizer.removeprefix("hf:"))
    done = []
    for n, word in zip(rows, words):
        picked = []
        for part in pieces.split(word):
            where = next(((t, i[part]) for t, i in zip(group, indexes) if part in i), None)
            if where is None:
                break
            picked.append(where[0].vectors[where[1]])
        else:
            if picked:
                vectors[n] = np.asarray(picked, dtype=np.float32).mean(axis=0)  # (D,) as extract composes
                done.append(n)
    return done
