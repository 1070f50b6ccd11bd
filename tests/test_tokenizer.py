"""Tokenizer specs: parsing, aliases, +lower, and the three kinds on tiny inputs."""

from __future__ import annotations

import pytest

from embtool.core.errors import BadInput
from embtool.text.tokenizer import TokenizerSpec, load_tokenizer, parse_spec


@pytest.mark.parametrize(
    "spec,lower,parsed,text",
    [
        ("whitespace", False, TokenizerSpec("whitespace", "", False), "whitespace"),
        ("whitespace+lower", False, TokenizerSpec("whitespace", "", True), "whitespace+lower"),
        ("spacy:de", True, TokenizerSpec("spacy", "de", True), "spacy:de+lower"),
        ("hf:bert", False, TokenizerSpec("hf", "bert-base-uncased", False), "hf:bert-base-uncased"),
        (
            "hf:mbert",
            False,
            TokenizerSpec("hf", "bert-base-multilingual-cased", False),
            "hf:bert-base-multilingual-cased",
        ),
        ("hf:t5", False, TokenizerSpec("hf", "t5-small", False), "hf:t5-small"),
        ("hf:mt5", False, TokenizerSpec("hf", "google/mt5-base", False), "hf:google/mt5-base"),
        ("hf:xlmr", False, TokenizerSpec("hf", "xlm-roberta-base", False), "hf:xlm-roberta-base"),
        ("hf:./my/ckpt", False, TokenizerSpec("hf", "./my/ckpt", False), "hf:./my/ckpt"),
    ],
)
def test_parse_spec(spec, lower, parsed, text) -> None:
    got = parse_spec(spec, lower)
    assert got == parsed and str(got) == text
    assert parse_spec(str(got)) == got  # the stored string reads back the same


@pytest.mark.parametrize("spec", ["", "spacy", "spacy:", "bpe:x", "whitespace:x", "hf"])
def test_bad_specs(spec) -> None:
    with pytest.raises(BadInput, match="expected spacy:<lang"):
        parse_spec(spec)


@pytest.mark.parametrize(
    "spec,text,tokens",
    [
        ("whitespace", "Ein Hund  läuft.", ["Ein", "Hund", "läuft."]),
        ("whitespace+lower", "Ein Hund", ["ein", "hund"]),
        ("spacy:de", "Ein Hund läuft, schnell.", ["Ein", "Hund", "läuft", ",", "schnell", "."]),
        ("spacy:en", "A dog's  ball.", ["A", "dog", "'s", "ball", "."]),
        ("spacy:en+lower", "A Dog", ["a", "dog"]),
    ],
)
def test_tokenize(spec, text, tokens) -> None:
    tok = load_tokenizer(spec)
    assert tok(text) == tokens
    assert list(tok.tokenize_lines([text, text])) == [tokens, tokens]


def test_hf_tokenizer_from_folder(tmp_path) -> None:
    from transformers import BertTokenizer

    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s"]
    BertTokenizer(vocab={t: i for i, t in enumerate(pieces)}).save_pretrained(tmp_path)
    tok = load_tokenizer(f"hf:{tmp_path}")
    assert tok("The cats") == ["the", "cat", "##s"]
    assert tok.spec.language_independent


def test_unknown_spacy_language() -> None:
    with pytest.raises(BadInput, match="spaCy has no language or installed pipeline"):
        load_tokenizer("spacy:no_such_pipeline_xx")
