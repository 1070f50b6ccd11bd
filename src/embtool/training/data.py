"""The special tokens every vocabulary starts with, and detokenizing model output to text.

Task text itself comes from ``embtool.tasks`` (``load_splits``, ``load_files``); ``setup.py``
tokenizes it and builds the vocabularies.
"""

from __future__ import annotations

import re
from collections.abc import Callable

PAD, UNK, BOS, EOS, SEP, CLS = "<pad>", "<unk>", "<bos>", "<eos>", "<sep>", "<cls>"
SPECIALS = (PAD, UNK, BOS, EOS)  # ids 0..3 on every side; a classifier's encoder adds SEP, CLS
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


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
