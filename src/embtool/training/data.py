"""The text of a task's splits (``Split``, ``TaskData``), the special tokens, and detokenizing.

Task text comes from ``embtool.tasks`` (the hub or a local ``--data-dir``), or from plain local
files for the ``files`` task; ``setup.py`` tokenizes it and builds the vocabularies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embtool.errors import BadInput
from embtool.training.config import TrainConfig

PAD, UNK, BOS, EOS, SEP = "<pad>", "<unk>", "<bos>", "<eos>", "<sep>"
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0..3 on every side; MNLI's encoder adds SEP (id 4)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


@dataclass
class Split:
    """Raw examples of one split: source text, then target text (translation) or labels."""

    src: list[str]
    tgt: list[str] | None = None
    labels: list[int] | None = None
    src2: list[str] | None = None  # MNLI hypotheses (src holds the premises)

    def __len__(self) -> int:
        return len(self.src)

    def head(self, n: int) -> Split:
        if n <= 0 or n >= len(self.src):
            return self

        def cut(x: list | None) -> list | None:
            return x[:n] if x is not None else None

        return Split(self.src[:n], cut(self.tgt), cut(self.labels), cut(self.src2))


@dataclass
class TaskData:
    train: Split
    val: Split
    test: Split
    extra_val: dict[str, Split] = field(default_factory=dict)  # MNLI: {"mismatched": …}
    test_split_name: str = "test"


def load_task(cfg: TrainConfig) -> TaskData:
    """The train/val/test text of ``cfg.task`` (``embtool.tasks``; local files for ``files``)."""
    if cfg.task == "files":
        return _files_task(cfg)
    from embtool import tasks

    def get(split: str) -> Split:
        return _split(tasks.load_task(cfg.task, split, cfg.data_dir))

    train = get("train")
    if cfg.task == "mnli":
        val = get("val_matched")
        return TaskData(train, val, val, {"mismatched": get("val_mismatched")}, "dev_matched")
    if cfg.task == "sst2":
        val = get("val")
        return TaskData(train, val, val, test_split_name="dev")
    test_name = "test_2016_flickr" if cfg.task == "multi30k" else "test"
    return TaskData(train, get("val"), get("test"), test_split_name=test_name)


def _split(data: Any) -> Split:
    from embtool.tasks import TranslationData

    if isinstance(data, TranslationData):
        return Split(list(data.src), list(data.tgt))
    texts = list(data.texts)
    src2 = [t[1] for t in texts] if texts and len(texts[0]) > 1 else None
    return Split([t[0] for t in texts], labels=list(data.labels), src2=src2)


def _files_task(cfg: TrainConfig) -> TaskData:
    from embtool.tasks.local import read_pairs

    assert cfg.src and cfg.tgt
    src, tgt = read_pairs(cfg.src, cfg.tgt)
    if len(src) < 2:
        raise BadInput(f"{cfg.src}: need at least 2 sentence pairs to train and validate")
    if cfg.val_src or cfg.val_tgt:
        if not (cfg.val_src and cfg.val_tgt):
            raise BadInput("give both --val-src and --val-tgt")
        val = Split(*read_pairs(cfg.val_src, cfg.val_tgt))
        train = Split(src, tgt)
    else:  # hold out the last 5% (at least one pair) for validation
        k = max(1, len(src) // 20)
        train, val = Split(src[:-k], tgt[:-k]), Split(src[-k:], tgt[-k:])
    if cfg.test_src or cfg.test_tgt:
        if not (cfg.test_src and cfg.test_tgt):
            raise BadInput("give both --test-src and --test-tgt")
        test = Split(*read_pairs(cfg.test_src, cfg.test_tgt))
        name = Path(cfg.test_src).name
    else:
        test, name = val, "val"
    return TaskData(train, val, test, test_split_name=name)


# ----------------------------------------------------------------------------- detokenizing

_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:%)\]}]|'s\b|'re\b|'ve\b|'ll\b|'d\b|'m\b|n't\b)")
_NO_SPACE_AFTER = re.compile(r"([(\[{]) ")


def detokenizer(spec: str) -> Callable[[list[str]], str]:
    """Token list → text: the Hugging Face tokenizer's own for ``hf:``; else rule-based joining."""
    if spec.startswith("hf:"):
        from embtool.text.tokenizer import load_hf_tokenizer

        hf = load_hf_tokenizer(spec.removeprefix("hf:").removesuffix("+lower"))

        def hf_detok(tokens: list[str]) -> str:
            return str(hf.convert_tokens_to_string(tokens)).strip()

        return hf_detok
    if spec.startswith("whitespace"):
        return " ".join
    return simple_detokenize


def simple_detokenize(tokens: list[str]) -> str:
    """Join word tokens with spaces, then close up punctuation (``a , b .`` → ``a, b.``)."""
    text = " ".join(tokens)
    text = _NO_SPACE_BEFORE.sub(r"\1", text)
    text = _NO_SPACE_AFTER.sub(r"\1", text)
    return text
