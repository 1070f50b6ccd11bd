"""Special tokens and detokenizing model output."""

from __future__ import annotations

import pytest

from embtool.training.data import EOS_ID, PAD_ID, SPECIALS, detokenizer, simple_detokenize


def test_specials_come_first_in_a_fixed_order() -> None:
    assert SPECIALS == ("<pad>", "<unk>", "<bos>", "<eos>") and (PAD_ID, EOS_ID) == (0, 3)


@pytest.mark.parametrize(
    ("tokens", "text"),
    [
        (["A", "dog", ",", "a", "cat", "."], "A dog, a cat."),
        (["it", "is", "n't", "(", "really", ")", "!"], "it isn't (really)!"),
        (["the", "dog", "'s", "toy"], "the dog's toy"),
    ],
)
def test_simple_detokenize_closes_up_punctuation(tokens, text) -> None:
    assert simple_detokenize(tokens) == text
    assert detokenizer("spacy:en")(tokens) == text


def test_whitespace_tables_join_with_spaces() -> None:
    assert detokenizer("whitespace")(["a", ",", "b"]) == "a , b"
