"""Where tables come from: ``extract`` pulls a vocabulary's rows out of a pretrained source.

A source is an alias (``bert``, ``mbert``, ``t5``, ``mt5``, ``xlmr``), a Hugging Face id or
local checkpoint folder (``hf:`` forces that reading), or a word-vector file (``glove:``,
``word2vec:``, ``fasttext:`` prefixes, or detected from the file).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embtool.core.errors import BadInput
from embtool.formats.sources.archives import split_member
from embtool.text.tokenizer import ALIASES
from embtool.text.vocabfile import Vocabulary

if TYPE_CHECKING:  # the checkpoint and vector-file paths never import torch
    from embtool.formats.alignment import Coverage
    from embtool.formats.sources.archives import Progress
    from embtool.tables.table import EmbeddingTable

VECTOR_PREFIXES = ("glove", "word2vec", "fasttext")
COMPOSE_METHODS = ("mean", "none")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class SourceRef:
    """A resolved SOURCE: ``kind`` hf|vectors, where it is, and the vector format when known."""

    kind: str
    location: str
    fmt: str | None = None


def resolve_source(source: str) -> SourceRef:
    """Tell apart aliases, hub ids, checkpoint folders and vector files."""
    prefix, colon, rest = source.partition(":")
    if colon and prefix in VECTOR_PREFIXES:
        return SourceRef("vectors", rest, prefix)
    if colon and prefix == "hf":
        return SourceRef("hf", ALIASES.get(rest, rest))
    if source in ALIASES:
        return SourceRef("hf", ALIASES[source])
    path = Path(source)
    if path.is_dir():
        return SourceRef("hf", source)
    if split_member(source)[1] is not None:  # ARCHIVE.zip#MEMBER: a vector file, sniffed as a plain one
        return SourceRef("vectors", source, None)
    if path.is_file():
        if path.suffix == ".safetensors":
            raise BadInput(
                f"{source}: a safetensors file is no vector file; for an embtool table use `embtool align "
                f"{source} --vocab V`, for a checkpoint give its folder"
            )
        return SourceRef("vectors", source, None)
    if source in ALIASES.values() or (_HUB_ID.match(source) and not source.startswith(".")):
        return SourceRef("hf", source)
    if os.sep in source or source.startswith("."):
        raise BadInput(f"{source}: no such file or folder")
    raise BadInput(
        f"unknown source {source!r}: not an alias ({', '.join(ALIASES)}), a local folder or file, or a "
        f"Hugging Face id (org/name; use hf:{source} for an id without an organisation)"
    )


def extract(
    source: str,
    vocab: Vocabulary,
    *,
    tensor: str | None = None,
    compose: str = "mean",
    case_fallback: bool = True,
    missing: str = "normal",
    seed: int = 0,
    progress: Progress | None = None,
    allow_nonfinite: bool = False,
) -> tuple[EmbeddingTable, Coverage]:
    """A float32 table (N, D) with one row per vocabulary token from ``source``, and its coverage
    (tokens found, composed from pieces, missing); tokens found nowhere are filled by ``missing``.
    ``progress(done, total)`` hears how many bytes of a large vector file are read.
    """
    from embtool.formats.alignment import MISSING_METHODS

    if compose not in COMPOSE_METHODS:
        raise BadInput(f"--compose {compose!r}: valid choices: {', '.join(COMPOSE_METHODS)}")
    if missing not in MISSING_METHODS:
        raise BadInput(f"--missing {missing!r}: valid choices: {', '.join(MISSING_METHODS)}")
    ref = resolve_source(source)
    if ref.kind == "hf":
        vectors, found, composed, meta = _from_checkpoint(
            ref, vocab, tensor, compose == "mean", case_fallback
        )
    else:
        if tensor is not None:
            raise BadInput("--tensor applies to checkpoints only, not to word-vector files")
        vectors, found, composed, meta = _from_vector_file(
            ref, vocab, compose == "mean", case_fallback, progress
        )
    from embtool.formats.alignment import Coverage, corpus_share, fill_missing
    from embtool.tables.table import EmbeddingTable, history_entry

    have = set(found) | set(composed)
    lost = [i for i in range(len(vocab)) if i not in have]
    if not have:
        raise BadInput(
            f"none of the {len(vocab)} vocabulary tokens was found in {source}; was the vocabulary made "
            f"with a tokenizer that fits it (vocabulary tokenizer: {vocab.tokenizer or 'unknown'})?"
        )
    fill_missing(vectors, lost, missing, seed)
    cov = Coverage(len(found), len(composed), len(lost), corpus_share(vocab, sorted(have)))
    args: dict[str, Any] = {
        "source": source,
        **meta.pop("args"),
        "vocab_size": len(vocab),
        "compose": compose,
        "case_fallback": case_fallback,
        "missing": missing,
        "seed": seed,
        "coverage": cov.as_dict(),
    }
    table = EmbeddingTable(vectors, list(vocab.tokens), source=meta["source"],
                           tokenizer=vocab.tokenizer or meta["tokenizer"], history=[history_entry("extract", args)],
                           missing=lost, origin=source, allow_nonfinite=allow_nonfinite)  # fmt: skip
    return table, cov


def _from_checkpoint(
    ref: SourceRef, vocab: Vocabulary, tensor: str | None, compose: bool, case_fallback: bool
) -> tuple[Any, list[int], list[int], dict[str, Any]]:
    import numpy as np

    from embtool.formats.sources.huggingface import EmbeddingRows, hf_spec, locate_weights, release_memory
    from embtool.formats.sources.pieces import candidate_forms, lookup_pieces, tokenizer_for

    pieces = (vocab.tokenizer or "").startswith("hf:")
    wanted = {f for t in vocab.tokens for f in candidate_forms(t, pieces=pieces, case_fallback=case_fallback)}
    if Path(ref.location).is_dir():  # a local folder: check the cheap things first
        weights = locate_weights(ref.location, tensor)
        tok = tokenizer_for(ref.location, wanted)
    else:  # a hub id: the small tokenizer files before any weights
        tok = tokenizer_for(ref.location, wanted)
        weights = locate_weights(ref.location, tensor)
    specials = {s for s in vocab.info.get("specials", "").split(",") if s}
    lk = lookup_pieces(
        tok, vocab.tokens, pieces=pieces, compose=compose, case_fallback=case_fallback, specials=specials
    )
    del tok, wanted  # free the tokenizer before the rows come in: their memory peaks do not add up
    release_memory()
    table = EmbeddingRows(weights)
    found = [n for n, i in enumerate(lk.ids) if i is not None]
    vectors = np.zeros((len(vocab), table.shape[1]), dtype=np.float32)  # (N, D)
    step = max(1, (4 << 20) // table.shape[1])  # rows per read: 16 MB
    for start in range(0, len(found), step):
        rows = np.asarray(found[start : start + step], dtype=np.int64)
        ids = np.asarray([lk.ids[n] for n in rows], dtype=np.int64)
        order = np.argsort(ids, kind="stable")  # read the file front to back
        vectors[rows[order]] = table.take(ids[order])
    for n, parts in lk.compose.items():
        vectors[n] = table.take(parts).mean(axis=0)  # mean of the pieces' rows
    name = hf_spec(ref.location)
    meta = {
        "source": name,
        "tokenizer": name,
        "args": {"tensor": weights.key, "file": weights.path.name, "source_rows": table.shape[0]},
    }
    return vectors, found, sorted(lk.compose), meta


def _from_vector_file(
    ref: SourceRef, vocab: Vocabulary, compose: bool, case_fallback: bool, progress: Progress | None = None
) -> tuple[Any, list[int], list[int], dict[str, Any]]:
    import numpy as np

    from embtool.formats.sources.vectors import load_vector_file, lookup_words

    vf = load_vector_file(ref.fmt, ref.location, progress)
    rows, composed = lookup_words(vf, vocab.tokens, compose=compose, case_fallback=case_fallback)
    vectors = np.zeros((len(vocab), vf.dim), dtype=np.float32)  # (N, D)
    found = [n for n, r in enumerate(rows) if r is not None]
    if found:
        vectors[found] = vf.kv.vectors[np.asarray([rows[n] for n in found], dtype=np.int64)]
    for n, vec in composed.items():
        vectors[n] = vec
    meta = {
        "source": f"{vf.kind}:{vf.path.name}",
        "tokenizer": "whitespace",
        "args": {"format": vf.kind, "file": vf.path.name, "source_rows": len(vf.kv.key_to_index)},
    }
    return vectors, found, sorted(composed), meta
