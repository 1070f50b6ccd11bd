"""Vocabulary files (DESIGN §2): header, counts, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from embtool.core.errors import BadInput
from embtool.text.vocabfile import Vocabulary, parse_vocab, read_vocab, write_vocab


def test_round_trip_with_header_and_counts(tmp_path: Path) -> None:
    v = Vocabulary(["<pad>", "the", "Haus"], [0, 9, 2], {"tokenizer": "spacy:de", "min_freq": "2"})
    path = tmp_path / "v.txt"
    write_vocab(v, path)
    assert path.read_text(encoding="utf-8").splitlines()[0] == "#embtool tokenizer=spacy:de min_freq=2"
    back = read_vocab(path)
    assert back == v and back.tokenizer == "spacy:de"


@pytest.mark.parametrize(
    "data,tokens,counts,tokenizer",
    [
        (b"a\nb\n", ["a", "b"], None, None),
        (b"a\nb", ["a", "b"], None, None),  # no final newline
        (b"a\t3\nb\t1\r\n", ["a", "b"], [3, 1], None),  # CRLF
        (b"#embtool tokenizer=hf:bert\n##s\n[CLS]\n", ["##s", "[CLS]"], None, "hf:bert"),
        ("▁der\nüber\n".encode(), ["▁der", "über"], None, None),
        (b"a b\n", ["a b"], None, None),  # a token is the line up to the tab
    ],
)
def test_parse_cases(data, tokens, counts, tokenizer) -> None:
    v = parse_vocab(data, "v.txt")
    assert (v.tokens, v.counts, v.tokenizer) == (tokens, counts, tokenizer)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"a\n\nb\n", r"v.txt:2: empty token"),
        (b"a\nb\na\n", r"v.txt:3: duplicate token 'a' \(first on line 1\)"),
        (b"a\n\xff\xfe\n", r"v.txt:2: not valid UTF-8"),
        (b"a\tx\n", r"v.txt:1: count 'x'"),
        (b"a\t1\nb\n", r"some lines have a count"),
        (b"", r"v.txt: the vocabulary is empty"),
        (b"#embtool tokenizer\n", r"v.txt:1: header item"),
    ],
)
def test_errors_name_the_line(data, message) -> None:
    with pytest.raises(BadInput, match=message):
        parse_vocab(data, "v.txt")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such vocabulary file"):
        read_vocab(tmp_path / "none.txt")


@pytest.mark.parametrize(
    "data,tokens,tokenizer",
    [(b"\xef\xbb\xbfa\nb\n", ["a", "b"], None),
     (b"\xef\xbb\xbf#embtool tokenizer=whitespace\na\t3\nb\t2\n", ["a", "b"], "whitespace")],
    ids=["plain", "header-and-counts"],
)  # fmt: skip
def test_a_utf8_bom_is_accepted(data, tokens, tokenizer) -> None:
    """Issue 14.14: a BOM is not part of the first token (or of the header line)."""
    vocab = parse_vocab(data, "v.txt")
    assert vocab.tokens == tokens and vocab.tokenizer == tokenizer
