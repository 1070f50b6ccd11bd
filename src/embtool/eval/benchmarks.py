"""Benchmark files: where gensim keeps the standard ones, and reading their numbered UTF-8 lines.

Both evaluations read line-oriented text (analogy questions, similarity pairs) and report errors
by file and line; both default to gensim's ``restrict_vocab``. This module is stdlib-only, so the
commands can take their defaults from it without importing numpy at start-up.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

from embtool.core.atomic import note_input
from embtool.core.errors import BadInput

DEFAULT_RESTRICT = 300_000  # gensim's restrict_vocab: only the first rows are candidates and known


def gensim_test_file(name: str) -> Path:
    """A file that gensim ships in ``gensim/test/test_data`` (found without importing gensim)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput(f"gensim is not installed, so its {name} is not available; pass the file instead")
    path = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data" / name
    if not path.is_file():
        raise BadInput(f"{path}: not found in this gensim installation; pass the file instead")
    return path


def read_bytes(path: str | Path, what: str) -> bytes:
    """The bytes of a benchmark file, or BadInput naming it (``what``: "questions", "pairs")."""
    note_input(path)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise BadInput(f"{path}: cannot read the {what} file ({e.strerror or e})") from None


def numbered_lines(data: bytes, origin: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of UTF-8 lines, numbered from 1; a line that is not UTF-8 is an error
    naming ``origin`` and the line."""
    for no, raw in enumerate(data.splitlines(), start=1):
        try:
            yield no, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput(f"{origin}, line {no}: not UTF-8 text") from None
