"""Initialisation names of the paper's Tables 1 and 7, derived from a table's source and history.

The paper names an initialisation after the table it starts from and the steps applied to it
(§3.4): ``GloVe``, ``GloVe_Xavier`` (Eq. 1, standardized to Xavier), ``GloVe_Shuffled``,
``Xavier_BERT`` (Eq. 4, Xavier standardized to BERT's mean and σ), and ``Xavier`` for the
random baseline (no table at all). ``table_name`` reads those names back out of a table's
provenance, so a run folder says by itself what it was initialised with.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any, Mapping, Sequence

XAVIER = "Xavier"

# (pattern on the lower-cased model id or file name, paper name); first match wins, so the
# multilingual and specific names come before the families they contain.
_MODEL_NAMES: tuple[tuple[str, str], ...] = (
    (r"mt5", "mT5"),
    (r"(^|[^a-z])t5|flan-t5|^t5", "T5"),
    (r"xlm-?r|xlm-roberta", "XLM-R"),
    (r"roberta", "RoBERTa"),
    (r"multilingual.*bert|mbert|bert.*multilingual", "mBERT"),
    (r"distilbert", "DistilBERT"),
    (r"bert", "BERT"),
    (r"glove", "GloVe"),
    (r"word2vec|w2v", "word2vec"),
    (r"fasttext|cc\.[a-z]{2}\.300|wiki\.[a-z]{2}", "fastText"),
)
_PREFIX_NAMES = {"glove": "GloVe", "word2vec": "word2vec", "fasttext": "fastText"}
_SUFFIXES = (".safetensors", ".txt", ".vec", ".bin", ".gz", ".zip", ".model")


def source_name(source: str | None) -> str:
    """The paper's name for where a table's rows came from.

    ``hf:google/mt5-base`` → ``mT5``, ``hf:bert-base-multilingual-cased`` → ``mBERT``,
    ``glove:glove.6B.300d.txt`` → ``GloVe``, ``word2vec:de.bin`` → ``word2vec``, ``xavier`` →
    ``Xavier``; anything else → the last part of its id or file name.
    """
    if not source or source == "unknown":
        return "table"
    text = source.strip()
    lower = text.lower()
    if lower in ("xavier", "init:xavier"):
        return XAVIER
    kind, colon, rest = text.partition(":")
    if colon and kind.lower() in _PREFIX_NAMES:
        return _PREFIX_NAMES[kind.lower()]
    ident = rest if colon and kind.lower() in ("hf", "local", "file") else text
    stem = _stem(ident)
    for pattern, name in _MODEL_NAMES:
        if re.search(pattern, stem.lower()):
            return name
    return stem or text


def _stem(ident: str) -> str:
    base = PurePosixPath(ident.rstrip("/")).name or ident
    for suffix in _SUFFIXES:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    return base


def table_name(source: str | None, history: Sequence[Mapping[str, Any]] | None) -> str:
    """The initialisation name of a table from its source and history (oldest step first).

    ``init xavier`` starts ``Xavier``; ``extract``/``align`` keep the name; ``standardize --to
    xavier`` appends ``_Xavier``; ``standardize --to TABLE`` appends that table's name (so a
    Xavier table standardized to BERT is ``Xavier_BERT``); ``shuffle`` appends ``_Shuffled``;
    ``scale`` ``_Scaled``; ``posenc`` ``_PosEnc``; an unknown step appends its op name.
    """
    name = source_name(source)
    for h in history or []:
        op, args = _op(h), h.get("args") or {}
        if op == "init":
            method = str(args.get("method", "xavier"))
            name = XAVIER if method.lower() == "xavier" else method
        elif op not in ("extract", "align", "convert", ""):
            name = f"{name}_{_step_suffix(op, args)}"
    return name


def _op(entry: Mapping[str, Any]) -> str:
    return str(entry.get("op", ""))


def _step_suffix(op: str, args: Mapping[str, Any]) -> str:
    if op == "standardize":
        to = str(args.get("to", "xavier"))
        if to == "xavier":
            return XAVIER
        if to.startswith("normal:"):
            return f"Normal({to.removeprefix('normal:')})"
        return source_name(args.get("to_source") or to)
    if op == "shuffle":
        axis = str(args.get("axis", "both"))
        return "Shuffled" if axis == "both" else f"Shuffled({axis})"
    if op == "scale":
        by = args.get("by", "sqrt-dim")
        return (
            "Scaled" if by == "sqrt-dim" else f"Scaled({by:g})" if isinstance(by, float) else f"Scaled({by})"
        )
    if op == "posenc":
        return "PosEnc"
    return op


def run_name(tables: Mapping[str, Mapping[str, Any] | None] | None) -> str:
    """The initialisation name of a run from its config's ``tables`` (``src``/``tgt`` or one side).

    No table is the paper's Xavier baseline. Both sides with the same name give that name
    (the paper's GloVe runs use a German and an English GloVe); different names give
    ``SRC/TGT``.
    """
    tables = tables or {}
    sides = [s for s in ("src", "tgt") if s in tables] + sorted(k for k in tables if k not in ("src", "tgt"))
    names: list[str] = []
    for side in sides:
        info = tables[side]
        names.append(XAVIER if not info else table_name(info.get("source"), info.get("history")))
    if not names:
        return XAVIER
    unique = list(dict.fromkeys(names))
    return unique[0] if len(unique) == 1 else "/".join(names)


def sort_key(name: str) -> tuple[int, str, int, str]:
    """The paper's row order: Xavier, then each pretrained name, its _Xavier, _Shuffled, others,
    then Xavier_<pretrained> (Table 7)."""
    base, _, suffix = name.partition("_")
    if name == XAVIER:
        return (0, "", 0, "")
    if base == XAVIER:
        return (2, suffix.lower(), 0, name)
    order = {"": 0, XAVIER: 1, "Shuffled": 2}
    return (1, base.lower(), order.get(suffix, 3), name)
