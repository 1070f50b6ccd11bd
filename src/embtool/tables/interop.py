"""A table in another framework's vocabulary order: ``EmbeddingTable.for_vocab`` and ``.to_embedding``.

A vocabulary is given as a list of tokens, an embtool ``Vocabulary``, a Hugging Face tokenizer (its
``get_vocab()``: pieces, special and added tokens, by id), or a file: ``fairseq:dict.txt`` (fairseq's
``Dictionary``: <s> <pad> </s> <unk> first, then one "token count" per line), ``opennmt:vocab.txt``
(OpenNMT-py ≥ 3: <unk> <blank> <s> </s> first, then one "token[TAB count]" per line), ``hf:FOLDER`` (a
saved tokenizer) or a path to an embtool vocabulary file. Row v of the result is the table's row of
token v (exact, then lower-cased), and ids no token of the table has are filled as ``missing`` says
(``filling.fill_missing``), so the rows keep one scale.

This module is the mixin ``EmbeddingTable`` inherits those two methods from; it imports neither the
table module nor torch at import time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from embtool.core.atomic import note_input
from embtool.core.errors import BadInput

if TYPE_CHECKING:
    import torch

    from embtool.tables.filling import Coverage
    from embtool.tables.table import EmbeddingTable

FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq.data.Dictionary: bos, pad, eos, unk
OPENNMT_SPECIALS = ("<unk>", "<blank>", "<s>", "</s>")  # OpenNMT-py ≥ 3 --default_specials


@dataclass
class TargetVocab:
    """A framework's vocabulary: ``tokens[id]`` (None for an id no token has), corpus counts if known."""

    tokens: list[str | None]
    counts: list[int] | None
    name: str
    tokenizer: str | None  # the tokenizer spec the tokens come from, when known (hf:…)


class TableInterop:
    """``for_vocab`` and ``to_embedding``, inherited by ``EmbeddingTable``."""

    def for_vocab(
        self,
        vocab: Any,
        *,
        missing: str = "normal",
        rows: int | None = None,
        case_fallback: bool = True,
        seed: int = 0,
    ) -> tuple[torch.Tensor, Coverage]:
        """A float32 tensor [V, D]: row v is this table's row for token v of ``vocab`` (see the
        module doc for what ``vocab`` may be); ids without one are filled by ``missing`` (normal,
        mean, zero, xavier). ``rows``: V at least this (a model with more rows than its tokenizer,
        as T5). Returns the tensor and the coverage (found/missing, share of corpus counts)."""
        import torch

        vectors, cov = rows_for(
            cast("EmbeddingTable", self), read_target(vocab), missing, rows, case_fallback, seed
        )
        return torch.from_numpy(vectors), cov

    def to_embedding(
        self,
        vocab: Any = None,
        *,
        freeze: bool = False,
        padding_idx: int | None = None,
        missing: str = "normal",
        rows: int | None = None,
        seed: int = 0,
    ) -> torch.nn.Embedding:
        """A ``torch.nn.Embedding`` holding this table's rows, in ``vocab``'s order when given."""
        import torch

        if vocab is None:
            weight = cast("EmbeddingTable", self).tensor()
        else:
            weight, _ = self.for_vocab(vocab, missing=missing, rows=rows, seed=seed)
        return torch.nn.Embedding.from_pretrained(weight, freeze=freeze, padding_idx=padding_idx)


def read_target(vocab: Any) -> TargetVocab:
    """The ``TargetVocab`` of anything ``for_vocab`` accepts."""
    from embtool.text.vocabfile import Vocabulary, read_vocab

    if isinstance(vocab, TargetVocab):
        return vocab
    if isinstance(vocab, Vocabulary):
        return TargetVocab(list(vocab.tokens), vocab.counts, "vocabulary", vocab.tokenizer)
    if hasattr(vocab, "get_vocab"):  # a Hugging Face tokenizer
        return from_tokenizer(vocab, getattr(vocab, "name_or_path", "tokenizer"))
    if isinstance(vocab, (str, os.PathLike)):
        spec = str(vocab)
        kind, colon, rest = spec.partition(":")
        if colon and kind == "fairseq":
            return _read_dict_file(rest, FAIRSEQ_SPECIALS, " ")
        if colon and kind == "opennmt":
            return _read_dict_file(rest, OPENNMT_SPECIALS, "\t")
        if colon and kind == "hf":
            return from_tokenizer(load_tokenizer(rest), rest)
        v = read_vocab(spec)
        return TargetVocab(list(v.tokens), v.counts, spec, v.tokenizer)
    if isinstance(vocab, Sequence) and all(isinstance(t, str) for t in vocab):
        return TargetVocab(list(vocab), None, "tokens", None)
    raise BadInput(
        f"for_vocab: cannot read a vocabulary from {type(vocab).__name__}; give a token list, a Hugging Face "
        "tokenizer, a Vocabulary, or a file (fairseq:dict.txt, opennmt:vocab.txt, hf:FOLDER, vocab.txt)"
    )


def load_tokenizer(location: str) -> Any:
    """A saved Hugging Face tokenizer from a local folder or the hub (never the checkpoint's own code)."""
    from embtool.text.tokenizer import load_hf_tokenizer

    return load_hf_tokenizer(location)


def from_tokenizer(tok: Any, name: str) -> TargetVocab:
    """A Hugging Face tokenizer's vocabulary by id: its pieces, special and added tokens."""
    by_id = {int(i): t for t, i in tok.get_vocab().items()}
    size = max(len(tok), max(by_id, default=-1) + 1)
    tokens: list[str | None] = [by_id.get(i) for i in range(size)]
    return TargetVocab(tokens, None, str(name), f"hf:{name}")


def _read_dict_file(path: str, specials: Sequence[str], sep: str) -> TargetVocab:
    """fairseq's dict.txt ("token count [#fairseq:overwrite]") or OpenNMT-py's vocab ("token\\tcount"),
    after the specials the framework puts first."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{path}: no such dictionary file")
    note_input(p)
    tokens: list[str | None] = list(specials)
    counts: list[int] = [0] * len(specials)
    seen = set(specials)
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if sep == " " and line.endswith(" #fairseq:overwrite"):
            line = line.removesuffix(" #fairseq:overwrite")
        token, found, count = line.rpartition(sep) if sep in line else (line, "", "")
        if found and not count.strip().lstrip("-").isdigit():
            raise BadInput(f"{path}:{lineno}: count {count!r} is not an integer")
        if token in seen:
            continue
        seen.add(token)
        tokens.append(token)
        counts.append(int(count) if found else 0)
    return TargetVocab(tokens, counts, path, None)


def rows_for(
    table: EmbeddingTable,
    target: TargetVocab,
    missing: str = "normal",
    rows: int | None = None,
    case_fallback: bool = True,
    seed: int = 0,
) -> tuple[Any, Coverage]:
    """float32 rows (V, D) in ``target``'s order and the coverage (rows the table filled when it was
    made count as missing: they hold no pretrained values)."""
    import numpy as np

    from embtool.tables.filling import Coverage, check_method, fill_missing

    check_method(missing)
    size = max(len(target.tokens), rows or 0)
    index = {t: i for i, t in enumerate(table.tokens)}
    filled_before = set(table.missing or ())
    ours: list[int] = []
    theirs: list[int] = []
    for v, token in enumerate(target.tokens):
        if token is None:
            continue
        i = index.get(token)
        if i is None and case_fallback:
            i = index.get(token.lower())
        if i is not None and i not in filled_before:
            ours.append(v)
            theirs.append(i)
    if not ours:
        raise BadInput(
            f"none of the {len(target.tokens)} tokens of {target.name} is in {table.origin} (table tokenizer: "
            f"{table.tokenizer}); build the table from that vocabulary with `embtool extract SOURCE --vocab V`"
        )
    vectors = np.zeros((size, table.dim), np.float32)  # (V, D)
    vectors[ours] = table.vectors[theirs]
    got = set(ours)
    lost = [v for v in range(size) if v not in got]
    fill_missing(vectors, lost, missing, seed)
    counts = target.counts or []
    total = int(np.sum(counts)) if counts else 0
    share = float(np.sum([counts[v] for v in ours if v < len(counts)])) / total if total else None
    return vectors, Coverage(len(ours), 0, len(lost), share)
