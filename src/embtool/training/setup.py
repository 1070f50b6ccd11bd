"""From a TrainConfig to what the loop needs: tokenizers, vocabularies, id lists, embedding rows.

Each side's tokenizer comes from its table (DESIGN §2): a language-independent one (``hf:``,
``whitespace``) serves both sides; a spaCy table tokenizes each side with ``spacy:<its language>``
and the table's ``+lower``. ``--tokenizer`` overrides; with no table, the task's (the registry's: lower-cased spaCy
for Multi30k, as the paper's vocabularies), ``spacy:<lang>`` for local files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embtool.core.atomic import sha256_file
from embtool.core.errors import BadInput
from embtool.tables.table import EmbeddingTable
from embtool.tasks import SplitData, TaskText, TranslationData
from embtool.tasks.registry import TRANSLATION
from embtool.training import tokcache
from embtool.training.config import TrainConfig
from embtool.training.data import CLS, EOS_ID, SEP, SPECIALS, UNK
from embtool.training.spec import source_specials

Example = tuple[list[int], Any]  # (source ids, target ids or class label)
Sentences = list[list[str]]  # one split's token lists


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


def load_text(cfg: TrainConfig) -> TaskText:
    """The run's text as ``train`` and ``--dry-run`` read it: the registry's splits (or the ``files``
    task's --src/--tgt …), cut to --max-train-examples / --max-eval-examples."""
    from embtool.tasks import load_files, load_splits

    if cfg.task_info.local_only:
        assert cfg.src and cfg.tgt  # checks.check_config: task files needs both
        data = load_files(cfg.src, cfg.tgt, cfg.val_src, cfg.val_tgt, cfg.test_src, cfg.test_tgt)
    else:
        data = load_splits(cfg.task, cfg.data_dir)
    return data.cut(cfg.max_train_examples, cfg.max_eval_examples)


@dataclass
class SideInput:
    """One side before its vocabulary: the tokenizer spec, and the table its rows come from."""

    tokenizer: str
    table: EmbeddingTable | None = None
    info: dict[str, Any] | None = None  # table_info, for config.json


def side_inputs(cfg: TrainConfig) -> tuple[SideInput, SideInput | None]:
    """The source side's and (translation) the target side's tokenizer and table; one table file
    given for both sides is read once."""
    translation = cfg.kind == TRANSLATION
    src_path, tgt_path = cfg.src_emb or cfg.emb, cfg.tgt_emb or cfg.emb
    src_table = _load_table(src_path) if src_path else None
    tgt_table = (
        (src_table if tgt_path == src_path else _load_table(tgt_path)) if tgt_path and translation else None
    )
    single = cfg.emb is not None
    src_lang = cfg.src_lang if translation else cfg.task_info.src_lang
    src_info = table_info(src_path, src_table) if src_path and src_table is not None else None
    src = SideInput(side_tokenizer(cfg, src_table, src_lang, single), src_table, src_info)
    if not translation:
        return src, None
    tgt_info = None
    if tgt_path and tgt_table is not None:
        tgt_info = src_info if tgt_path == src_path else table_info(tgt_path, tgt_table)
    return src, SideInput(side_tokenizer(cfg, tgt_table, cfg.tgt_lang, single, "tgt"), tgt_table, tgt_info)


def build_side(
    name: str, given: SideInput, sentences: Sentences, specials: tuple[str, ...], cfg: TrainConfig, seed: int
) -> Side:
    """Vocabulary from the training sentences (``--min-freq``); rows from the table by token string
    (align's fill, ``--missing``, drawn with ``seed``)."""
    from embtool.formats.alignment import align
    from embtool.text.vocab import build_vocab, count_tokens

    assert cfg.min_freq, "a resolved config (RunSpec.cfg): --min-freq 0 is the task's, filled in there"
    vocab = build_vocab(
        count_tokens(sentences), min_freq=cfg.min_freq, specials=specials, info={"tokenizer": given.tokenizer}
    )
    side = Side(name, given.tokenizer, list(vocab.tokens), given.table, given.info)
    if given.table is not None:
        aligned, cov = align(given.table, vocab, missing=cfg.missing, seed=seed)
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


Tokenize = Callable[[SplitData, str], tuple[Sentences, Sentences | None]]


def split_tokenizer(cfg: TrainConfig, src_spec: str, tgt_spec: str) -> Tokenize:
    """(source, target) token lists of a split (the target None for classification), through the
    cache (``tokcache``); MNLI's pairs become one source: premise <sep> hypothesis."""

    def tok(spec: str, lines: list[str], where: str) -> Sentences:
        return tokcache.cached(tokenize, spec, lines, cfg.task, where, use=cfg.cache)

    def split(data: SplitData, name: str) -> tuple[Sentences, Sentences | None]:
        if isinstance(data, TranslationData):
            return tok(src_spec, data.src, f"{name}.src"), tok(tgt_spec, data.tgt, f"{name}.tgt")
        fields = [list(column) for column in zip(*data.texts, strict=True)] or [[]]
        s = tok(src_spec, fields[0], f"{name}.src")
        if len(fields) > 1:  # MNLI: premise <sep> hypothesis
            s2 = tok(src_spec, fields[1], f"{name}.src2")
            s = [[*a, SEP, *b] for a, b in zip(s, s2, strict=True)]
        return s, None

    return split


@dataclass
class Encoder:
    """Token lists → id lists: sources end with <eos> (translation) or start with <cls> (``--pool
    first``); a training example longer than --max-len is dropped, an evaluation input cut."""

    src_index: dict[str, int]
    tgt_index: dict[str, int]
    first: list[int]  # put before every classification source: [<cls>] or []
    limit: int  # --max-len less room for <bos>/<eos>

    def ids(self, toks: list[str], index: dict[str, int]) -> list[int]:
        unk = self.src_index[UNK]
        return [index.get(t, unk) for t in toks]

    def encode(
        self, s: Sentences, t: Sentences | None, labels: list[int] | None, train: bool
    ) -> tuple[list[Example], int]:
        """The examples of one split and how many were dropped as too long."""
        out: list[Example] = []
        limit = self.limit
        for i, toks in enumerate(s):
            a = self.ids(toks, self.src_index)
            if t is not None:
                a.append(EOS_ID)  # never empty: an all-padding source has nothing to attend to
                b = self.ids(t[i], self.tgt_index)
                if not (train and (len(a) > limit + 1 or len(b) > limit)):
                    out.append((a[: limit + 1], b[:limit]))
            else:
                assert labels is not None
                a = self.first + a
                if not (train and len(a) > limit + 1):
                    out.append((a[: limit + 1] or [EOS_ID], int(labels[i])))
        return out, len(s) - len(out)


def prepare(cfg: TrainConfig, data: TaskText) -> Prepared:
    """Tokenize, build vocabularies, look up rows, and encode every split as id lists (``cfg``
    resolved: ``RunSpec.of(cfg).cfg``, which has checked the tables' widths from their headers)."""
    src_in, tgt_in = side_inputs(cfg)
    split = split_tokenizer(cfg, src_in.tokenizer, tgt_in.tokenizer if tgt_in else "")
    tr_src, tr_tgt = split(data.train, "train")
    src_specials = source_specials(cfg)
    src = build_side("src", src_in, tr_src, src_specials, cfg, cfg.seed)
    tgt = build_side("tgt", tgt_in, tr_tgt or [], SPECIALS, cfg, cfg.seed + 1) if tgt_in else None
    out = None
    if cfg.out_emb and tgt_in is not None:
        out_table = _load_table(cfg.out_emb)
        out_in = SideInput(tgt_in.tokenizer, out_table, table_info(cfg.out_emb, out_table))
        out = build_side("out", out_in, tr_tgt or [], SPECIALS, cfg, cfg.seed + 2)
    src_index = {t: i for i, t in enumerate(src.vocab)}
    first = [src_index[CLS]] if CLS in src_specials else []  # --pool first: <cls> heads each source
    tgt_index = {t: i for i, t in enumerate(tgt.vocab)} if tgt else {}
    encoder = Encoder(src_index, tgt_index, first, cfg.max_len - 2)

    def encode(part: SplitData, name: str) -> list[Example]:
        return encoder.encode(*split(part, name), _labels(part), train=False)[0]

    train, dropped = encoder.encode(tr_src, tr_tgt, _labels(data.train), train=True)
    if not train:
        raise BadInput(f"no training example is at most --max-len {cfg.max_len} tokens long")
    val = encode(data.val, "val")
    test = encode(data.test, data.test_name) if data.test is not data.val else val
    extra = {k: encode(v, f"val_{k}") for k, v in data.extra_val.items()}
    n_classes = cfg.task_info.n_classes
    if tgt is None:
        n_classes = max(n_classes, max(y for _, y in train if isinstance(y, int)) + 1)
    return Prepared(
        src, tgt, train, val, extra, test, _refs(data.val), _refs(data.test), n_classes, dropped,
        test_name=data.test_name, out=out,
    )  # fmt: skip


def _labels(data: SplitData) -> list[int] | None:
    return None if isinstance(data, TranslationData) else data.labels


def _refs(data: SplitData) -> list[str]:
    """The raw target sentences of a translation split (BLEU's references); [] for classification."""
    return list(data.tgt) if isinstance(data, TranslationData) else []
