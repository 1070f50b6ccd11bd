"""Reorder tables to a vocabulary, and fill the rows no source has (shared with ``extract``).

Missing rows are filled by default with random values from the found rows' own mean and σ,
so the table keeps one scale (fairseq mixes scales, OpenNMT uses zeros).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embtool.core.errors import BadInput
from embtool.tables.filling import MISSING_METHODS, Coverage, check_method, corpus_share, fill_missing
from embtool.text.vocabfile import Vocabulary

if TYPE_CHECKING:
    from embtool.tables.table import EmbeddingTable

ALIGN_METHODS = (*MISSING_METHODS, "subword")  # subword: the mean of the token's pieces' rows, else normal


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
    from embtool.tables.table import EmbeddingTable, history_entry

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
    from embtool.formats.sources.pieces import tokenizer_for

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
