"""Tokenizer specs (DESIGN §2): how text is split into a table's tokens.

A spec is ``spacy:<lang>`` (spaCy's rule-based tokenizer ``spacy.blank(lang)``, or an installed
pipeline by name such as ``de_core_news_sm``), ``hf:<id-or-path>`` (any Hugging Face tokenizer;
aliases ``bert``, ``mbert``, ``t5``, ``mt5``, ``xlmr``) or ``whitespace``; a ``+lower`` suffix
lower-cases. The spec string is stored in ``embtool.tokenizer`` and in vocabulary headers, so
``train`` splits text exactly as the table's tokens were made.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embtool.core import hub
from embtool.core.errors import BadInput, WorkFailure

# Short names for the checkpoints of the paper (and their tokenizers); `extract` uses them too.
ALIASES = {
    "bert": "bert-base-uncased",
    "mbert": "bert-base-multilingual-cased",
    "t5": "t5-small",
    "mt5": "google/mt5-base",
    "xlmr": "xlm-roberta-base",
}
KINDS = ("spacy", "hf", "whitespace")
LOWER_SUFFIX = "+lower"
_SPACY_LANG = re.compile(r"^[a-z]{2,3}$")  # a language code for spacy.blank; else a pipeline name


@dataclass(frozen=True)
class TokenizerSpec:
    """A parsed spec: ``kind`` is spacy|hf|whitespace, ``name`` the language or model, ``lower``."""

    kind: str
    name: str = ""
    lower: bool = False

    def __str__(self) -> str:
        base = self.kind if self.kind == "whitespace" else f"{self.kind}:{self.name}"
        return base + (LOWER_SUFFIX if self.lower else "")

    @property
    def language_independent(self) -> bool:
        """True when one tokenizer serves every language (``hf:``, ``whitespace``)."""
        return self.kind != "spacy"


def resolve_alias(name: str) -> str:
    """``bert`` → ``bert-base-uncased`` etc.; other names are returned as they are."""
    return ALIASES.get(name, name)


def parse_spec(spec: str, lower: bool = False) -> TokenizerSpec:
    """Parse ``spacy:de``, ``hf:bert``, ``whitespace+lower``…; ``lower`` adds ``+lower``."""
    text = spec.strip()
    if text.endswith(LOWER_SUFFIX):
        text, lower = text[: -len(LOWER_SUFFIX)], True
    kind, colon, name = text.partition(":")
    if kind == "whitespace" and not colon:
        return TokenizerSpec("whitespace", "", lower)
    if kind not in KINDS or not colon or not name or kind == "whitespace":
        raise BadInput(
            f"--tokenizer {spec!r}: expected spacy:<lang or pipeline>, hf:<id, path or alias> or "
            f"whitespace, optionally with {LOWER_SUFFIX} (e.g. spacy:de, hf:bert, whitespace+lower)"
        )
    if kind == "hf":
        name = resolve_alias(name)
    return TokenizerSpec(kind, name, lower)


class Tokenizer:
    """Splits lines of text into token strings as a spec says; ``tokenize_lines`` is the fast path."""

    def __init__(self, spec: TokenizerSpec, split: Callable[[Iterable[str]], Iterator[list[str]]]):
        self.spec = spec
        self._split = split

    def __call__(self, text: str) -> list[str]:
        return next(self.tokenize_lines([text]))

    def tokenize_lines(self, lines: Iterable[str]) -> Iterator[list[str]]:
        """Tokens of each line, in order (batched for spaCy and Hugging Face tokenizers)."""
        if self.spec.lower and self.spec.kind == "hf":
            # lower the text, not the pieces: pieces must stay pieces of the model's vocabulary
            return self._split(line.lower() for line in lines)
        if self.spec.lower:
            return ([t.lower() for t in toks] for toks in self._split(lines))
        return self._split(lines)


def load_tokenizer(spec: str | TokenizerSpec, lower: bool = False) -> Tokenizer:
    """The tokenizer a spec names; fails with a message that says how to get it."""
    parsed = parse_spec(spec, lower) if isinstance(spec, str) else spec
    if lower and not parsed.lower:
        parsed = TokenizerSpec(parsed.kind, parsed.name, True)
    if parsed.kind == "whitespace":
        return Tokenizer(parsed, _whitespace_split)
    if parsed.kind == "spacy":
        return Tokenizer(parsed, _spacy_split(parsed.name))
    hf = load_hf_tokenizer(parsed.name)
    return Tokenizer(parsed, _hf_split(hf))


def _whitespace_split(lines: Iterable[str]) -> Iterator[list[str]]:
    return (line.split() for line in lines)


def _spacy_split(name: str) -> Callable[[Iterable[str]], Iterator[list[str]]]:
    import spacy

    try:
        if _SPACY_LANG.match(name):
            nlp = spacy.blank(name)
        else:
            nlp = spacy.load(name, exclude=["parser", "ner", "lemmatizer", "tagger", "senter"])
    except (ImportError, OSError) as e:
        raise BadInput(
            f"--tokenizer spacy:{name}: spaCy has no language or installed pipeline {name!r} ({e}); "
            "give a language code such as spacy:de or spacy:en"
        ) from None
    tokenizer: Any = nlp.tokenizer

    def split(lines: Iterable[str]) -> Iterator[list[str]]:
        # the tokenizer alone (no pipeline components); whitespace runs become tokens in spaCy
        for doc in tokenizer.pipe(line.strip() for line in lines):
            yield [t.text for t in doc if not t.is_space]

    return split


def _hf_split(hf: Any) -> Callable[[Iterable[str]], Iterator[list[str]]]:
    def split(lines: Iterable[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        for line in lines:
            batch.append(line.strip())
            if len(batch) == 1000:
                yield from _hf_batch(hf, batch)
                batch = []
        if batch:
            yield from _hf_batch(hf, batch)

    return split


def _hf_batch(hf: Any, batch: list[str]) -> Iterator[list[str]]:
    if getattr(hf, "is_fast", False):
        enc = hf(batch, add_special_tokens=False)
        for i in range(len(batch)):
            yield enc.tokens(i)  # the pieces, as `tokenize` gives them, in one Rust call
    else:
        for line in batch:
            yield hf.tokenize(line)


def load_hf_tokenizer(name: str) -> Any:
    """``AutoTokenizer.from_pretrained`` for a hub id or local folder; never runs remote code."""
    name = resolve_alias(name)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    missing = hub.unreachable(
        f"tokenizer {name!r}", "give a local folder that holds its tokenizer files (hf:/path/to/folder)"
    )
    if not os.path.isdir(name) and hub.offline() and not hub.cached(name):
        raise missing  # before importing transformers (seconds)
    if os.path.isdir(name) and _ships_tokenizer_code(name):
        raise _shipped_code(name)
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        local = os.path.isdir(name) or hub.offline()  # offline: the cache only, no minute of retries
        # trust_remote_code=False, never None: None asks on stdout whether to run the folder's code
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=False, local_files_only=local)
    except (OSError, ValueError) as e:
        if "trust_remote_code" in str(e) or "custom code" in str(e):
            raise _shipped_code(name) from None
        if not os.path.isdir(name) and hub.offline():
            raise missing from None
        if os.path.isdir(name):
            raise BadInput(
                f"{name}: could not load a tokenizer from this folder ({_first_line(e)}); it needs the "
                "tokenizer files that save_pretrained writes (tokenizer.json, vocab.txt or spiece.model)"
            ) from None
        raise WorkFailure(
            f"could not load the tokenizer of {name!r} from the Hugging Face hub ({_first_line(e)}); "
            "without network, give a local checkpoint folder that holds its tokenizer files"
        ) from None
    if len(tok.get_vocab()) <= len(set(tok.all_special_tokens)):
        # transformers ≥ 5 builds a tokenizer of special tokens alone from a folder with config.json only
        raise BadInput(
            f"{name}: holds no tokenizer vocabulary, only special tokens; give a folder with the tokenizer "
            "files that save_pretrained writes (tokenizer.json, vocab.txt or spiece.model)"
        )
    return tok


def _ships_tokenizer_code(folder: str) -> bool:
    """Whether a checkpoint folder names tokenizer code of its own (``auto_map``): transformers would
    run it, or ignore it and tokenize otherwise than its authors meant."""
    import json

    for name, key in (("tokenizer_config.json", None), ("config.json", "AutoTokenizer")):
        try:
            found = json.loads(Path(folder, name).read_text(encoding="utf-8")).get("auto_map")
        except (OSError, ValueError, AttributeError):
            continue
        if found and (key is None or (isinstance(found, dict) and key in found)):
            return True
    return False


def _shipped_code(name: str) -> BadInput:
    return BadInput(
        f"{name}: its tokenizer is code shipped with the checkpoint (auto_map), and embtool never runs a "
        "checkpoint's own code; give a folder whose tokenizer transformers itself provides (tokenizer.json, "
        "vocab.txt or spiece.model, without auto_map)"
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
