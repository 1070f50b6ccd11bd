"""From a TrainConfig to what the loop needs: tokenizers, vocabularies, id lists, embedding rows.

Each side's tokenizer comes from its table (DESIGN §2): a language-independent one (``hf:``,
``whitespace``) serves both sides; a spaCy table tokenizes each side with ``spacy:<its language>``
and the table's ``+lower``. ``--tokenizer`` overrides; with no table, the task's (the registry's: lower-cased spaCy
for Multi30k, as the paper's vocabularies), ``spacy:<lang>`` for local files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embtool.core.atomic import sha256_file
from embtool.core.errors import BadInput
from embtool.tables.table import EmbeddingTable
from embtool.tasks import TaskText, TextSplit
from embtool.training import tokcache
from embtool.training.config import TrainConfig
from embtool.training.data import BOS, CLS, EOS, EOS_ID, PAD, SEP, UNK

SPECIALS = (PAD, UNK, BOS, EOS)
Example = tuple[list[int], Any]  # (source ids, target ids or class label)


@dataclass
class Side:
    """One side (src or tgt) of the model's input: how it is tokenized, its vocabulary and rows."""

    name: str  # "src" or "tgt"
    tokenizer: str  # spec
    vocab: list[str]
    table: EmbeddingTable | None = None
    table_info: dict[str, Any] | None = None  # for config.json
    rows: torch.Tensor | None = None  # (N, D) from the table, or None for Xavier
    missing: int = 0  # vocabulary tokens the table lacked (specials included)

    @property
    def lower(self) -> bool:
        return self.tokenizer.endswith("+lower")


def table_info(path: str, table: EmbeddingTable) -> dict[str, Any]:
    return {
        "path": str(Path(path).resolve()),
        "sha256": sha256_file(path),
        "source": table.source,
        "tokenizer": table.tokenizer,
        "history": table.history,
        "n": table.n,
        "dim": table.dim,
    }


def _load_table(path: str) -> EmbeddingTable:
    from embtool.core.errors import NonFinite
    from embtool.tables.table import load

    try:
        return load(path)
    except NonFinite as e:  # train has no --allow-nonfinite: a model cannot learn from NaN rows
        raise BadInput(f"{e.found}; training needs finite rows: fix the table or make it again") from None


def side_tokenizer(
    cfg: TrainConfig, table: EmbeddingTable | None, lang: str, single: bool, side: str = "src"
) -> str:
    """The spec one side is tokenized with (see the module docstring)."""
    from embtool.text.tokenizer import parse_spec

    if cfg.tokenizer:
        return str(parse_spec(cfg.tokenizer))
    if table is None:
        return f"spacy:{lang}" if cfg.task_info.local_only else cfg.task_info.tokenizer(side)
    spec = parse_spec(table.tokenizer)
    if spec.language_independent or not single:
        return str(spec)
    return f"spacy:{lang}" + ("+lower" if spec.lower else "")


def tokenize(spec: str, lines: list[str]) -> list[list[str]]:
    from embtool.text.tokenizer import load_tokenizer

    return list(load_tokenizer(spec).tokenize_lines(lines))


def build_side(
    name: str,
    spec: str,
    sentences: list[list[str]],
    min_freq: int,
    specials: tuple[str, ...],
    table: EmbeddingTable | None,
    info: dict[str, Any] | None,
    missing: str,
    seed: int,
) -> Side:
    """Vocabulary from the training sentences; rows from the table by token string (align's fill)."""
    from embtool.formats.alignment import align
    from embtool.text.vocab import build_vocab, count_tokens

    vocab = build_vocab(
        count_tokens(sentences), min_freq=min_freq, specials=specials, info={"tokenizer": spec}
    )
    side = Side(name, spec, list(vocab.tokens), table, info)
    if table is not None:
        aligned, cov = align(table, vocab, missing=missing, seed=seed)
        side.rows = aligned.tensor()
        side.missing = cov.missing
    return side


@dataclass
class Prepared:
    src: Side
    tgt: Side | None
    train: list[Example]  # (src ids, tgt ids or label)
    val: list[Example]
    extra_val: dict[str, list[Example]]
    test: list[Example]
    val_refs: list[str]  # raw target sentences (translation)
    test_refs: list[str]
    n_classes: int
    dropped: int  # training examples longer than max_len
    test_name: str = "test"  # the test split's name, recorded in test.json
    out: Side | None = None  # --out-emb: the output embedding's rows over the target vocabulary


def source_specials(cfg: TrainConfig) -> tuple[str, ...]:
    """The encoder vocabulary's first tokens: SPECIALS, then ``<sep>`` for a pair task (MNLI:
    premise <sep> hypothesis) and ``<cls>`` for ``--pool first`` (put first in every source)."""
    pair = cfg.kind == "classification" and len(cfg.task_info.fields) > 1
    first = cfg.kind == "classification" and cfg.pool == "first"
    return SPECIALS + ((SEP,) if pair else ()) + ((CLS,) if first else ())


def prepare(cfg: TrainConfig, data: TaskText) -> Prepared:
    """Tokenize, build vocabularies, look up rows, and encode every split as id lists."""
    translation = cfg.kind == "translation"
    src_path = cfg.src_emb or cfg.emb
    tgt_path = cfg.tgt_emb or cfg.emb
    src_table = _load_table(src_path) if src_path else None
    tgt_table = (
        (src_table if tgt_path == src_path else _load_table(tgt_path)) if tgt_path and translation else None
    )
    single = cfg.emb is not None
    src_lang = cfg.src_lang if translation else cfg.task_info.src_lang
    src_spec = side_tokenizer(cfg, src_table, src_lang, single)
    tgt_spec = side_tokenizer(cfg, tgt_table, cfg.tgt_lang, single, "tgt") if translation else ""
    min_freq = cfg.min_freq or cfg.task_info.min_freq

    def tok(spec: str, lines: list[str], where: str) -> list[list[str]]:
        return tokcache.cached(tokenize, spec, lines, cfg.task, where, use=cfg.cache)

    def tok_split(split: TextSplit, name: str) -> tuple[list[list[str]], list[list[str]] | None]:
        s = tok(src_spec, split.src, f"{name}.src")
        if split.src2 is not None:  # MNLI: premise <sep> hypothesis
            s2 = tok(src_spec, split.src2, f"{name}.src2")
            s = [[*a, SEP, *b] for a, b in zip(s, s2, strict=True)]
        t = tok(tgt_spec, split.tgt, f"{name}.tgt") if translation and split.tgt is not None else None
        return s, t

    tr_src, tr_tgt = tok_split(data.train, "train")
    src_specials = source_specials(cfg)
    src_info = table_info(src_path, src_table) if src_path and src_table is not None else None
    src = build_side(
        "src", src_spec, tr_src, min_freq, src_specials, src_table, src_info, cfg.missing, cfg.seed
    )
    tgt = None
    if translation:
        assert tr_tgt is not None
        tgt_info = (
            (src_info if tgt_path == src_path else table_info(tgt_path, tgt_table))
            if tgt_path and tgt_table is not None
            else None
        )
        tgt = build_side(
            "tgt", tgt_spec, tr_tgt, min_freq, SPECIALS, tgt_table, tgt_info, cfg.missing, cfg.seed + 1
        )
    if (
        src.rows is not None
        and tgt is not None
        and tgt.rows is not None
        and src.rows.shape[1] != tgt.rows.shape[1]
    ):
        raise BadInput(
            f"--src-emb has D={src.rows.shape[1]} but --tgt-emb has D={tgt.rows.shape[1]}; both sides need one D"
        )

    out = None
    if cfg.out_emb and tgt is not None:
        out_table = _load_table(cfg.out_emb)
        info = table_info(cfg.out_emb, out_table)
        out = build_side(
            "out", tgt_spec, tr_tgt or [], min_freq, SPECIALS, out_table, info, cfg.missing, cfg.seed + 2
        )

    src_index = {t: i for i, t in enumerate(src.vocab)}
    first = [src_index[CLS]] if CLS in src_specials else []  # --pool first: <cls> heads each source
    tgt_index = {t: i for i, t in enumerate(tgt.vocab)} if tgt else {}
    unk = src_index[UNK]
    limit = cfg.max_len - 2  # room for <bos>/<eos>

    def ids(toks: list[str], index: dict[str, int]) -> list[int]:
        return [index.get(t, unk) for t in toks]

    def encode(split: TextSplit, train: bool, name: str = "train") -> tuple[list[Example], int]:
        s, t = (tr_src, tr_tgt) if train else tok_split(split, name)
        out: list[Example] = []
        dropped = 0
        for i, toks in enumerate(s):
            a = ids(toks, src_index)
            if translation:
                a.append(EOS_ID)  # never empty: an all-padding source has nothing to attend to
                assert t is not None
                b = ids(t[i], tgt_index)
                if train and (len(a) > limit + 1 or len(b) > limit):
                    dropped += 1
                    continue
                out.append((a[: limit + 1], b[:limit]))
            else:
                assert split.labels is not None
                a = first + a
                if train and len(a) > limit + 1:
                    dropped += 1
                    continue
                out.append((a[: limit + 1] or [EOS_ID], int(split.labels[i])))
        return out, dropped

    train, dropped = encode(data.train, True)
    if not train:
        raise BadInput(f"no training example is at most --max-len {cfg.max_len} tokens long")
    val, _ = encode(data.val, False, "val")
    test, _ = encode(data.test, False, data.test_name) if data.test is not data.val else (val, 0)
    extra = {k: encode(v, False, f"val_{k}")[0] for k, v in data.extra_val.items()}
    n_classes = cfg.task_info.n_classes
    if not translation:
        labels = [y for _, y in train if isinstance(y, int)]
        n_classes = max(n_classes, max(labels) + 1)
    return Prepared(
        src,
        tgt,
        train,
        val,
        extra,
        test,
        val_refs=list(data.val.tgt or []),
        test_refs=list(data.test.tgt or []),
        n_classes=n_classes,
        dropped=dropped,
        out=out,
    )
