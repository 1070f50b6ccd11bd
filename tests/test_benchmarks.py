"""benchmarks: reading numbered UTF-8 lines, gensim's files, and the one default both evaluations share."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from embtool.core.errors import BadInput
from embtool.eval.benchmarks import DEFAULT_RESTRICT, gensim_test_file, numbered_lines, read_bytes


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"a\nb\n", [(1, "a"), (2, "b")]),
        (b"a\n\nc", [(1, "a"), (2, ""), (3, "c")]),  # blank lines keep their numbers
        (b"a\r\nb\r\n", [(1, "a"), (2, "b")]),  # CRLF
        ("é\tü\n".encode(), [(1, "é\tü")]),
        (b"", []),
    ],
    ids=["plain", "blank-line", "crlf", "utf8", "empty"],
)
def test_numbered_lines(data: bytes, lines: list[tuple[int, str]]) -> None:
    assert list(numbered_lines(data, "f.txt")) == lines


def test_a_line_that_is_not_utf8_is_named() -> None:
    lines = numbered_lines(b"ok\nfine\n\xff\xfe\nlater\n", "pairs.tsv")
    assert next(lines) == (1, "ok") and next(lines) == (2, "fine")  # read lazily up to the bad line
    with pytest.raises(BadInput, match=r"^pairs.tsv, line 3: not UTF-8 text$"):
        next(lines)


def test_read_bytes(tmp_path: Path) -> None:
    (tmp_path / "q.txt").write_bytes(b"\x00\xff")
    assert read_bytes(tmp_path / "q.txt", "questions") == b"\x00\xff"
    missing = tmp_path / "nope.txt"
    with pytest.raises(BadInput, match=f"^{re.escape(str(missing))}: cannot read the pairs file"):
        read_bytes(missing, "pairs")
    with pytest.raises(BadInput, match=f"^{re.escape(str(tmp_path))}: cannot read the questions file"):
        read_bytes(tmp_path, "questions")  # a folder


def test_gensims_files() -> None:
    pytest.importorskip("gensim")
    path = gensim_test_file("questions-words.txt")
    assert path.name == "questions-words.txt" and path.parent.name == "test_data"
    assert path.read_bytes().startswith(b": capital-common-countries")
    with pytest.raises(
        BadInput, match="no-such-file.txt: not found in this gensim installation; pass the file"
    ):
        gensim_test_file("no-such-file.txt")


def test_restrict_is_gensims_default_everywhere() -> None:
    """One default in one place (STYLE.md 6), and it is gensim's own."""
    models = pytest.importorskip("gensim.models")
    from embtool.commands.analogy import analogy
    from embtool.commands.similarity import similarity
    from embtool.eval.analogy import evaluate_analogies
    from embtool.eval.similarity import evaluate_pairs, evaluate_similarity

    kv = models.KeyedVectors
    for gensim_method in (kv.evaluate_word_analogies, kv.evaluate_word_pairs):
        assert inspect.signature(gensim_method).parameters["restrict_vocab"].default == DEFAULT_RESTRICT
    for function in (evaluate_analogies, evaluate_pairs, evaluate_similarity):
        assert inspect.signature(function).parameters["restrict"].default == DEFAULT_RESTRICT
    for command in (analogy, similarity):  # typer's OptionInfo carries the default
        assert inspect.signature(command).parameters["restrict"].default.default == DEFAULT_RESTRICT
