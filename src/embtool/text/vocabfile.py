"""Vocabulary files (DESIGN §2): UTF-8, one token per line in row order, ``token[<TAB>count]``.

An optional first line ``#embtool tokenizer=SPEC key=value …`` records how the tokens were
made; ``extract``, ``align`` and ``init`` copy its tokenizer into the table they write.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from embtool.core import atomic
from embtool.core.errors import BadInput

HEADER_PREFIX = "#embtool"
STDIO = "-"


@dataclass
class Vocabulary:
    """Tokens in row order, their corpus counts when known, and the header's key=value pairs."""

    tokens: list[str]
    counts: list[int] | None = None
    info: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.counts is not None and len(self.counts) != len(self.tokens):
            raise BadInput(f"{len(self.counts)} counts for {len(self.tokens)} tokens")
        seen: set[str] = set()
        for tok in self.tokens:
            if not tok or "\t" in tok or "\n" in tok or "\r" in tok:
                raise BadInput(f"vocabulary token {tok!r} is empty or holds a tab or newline")
            if tok in seen:
                raise BadInput(f"duplicate vocabulary token {tok!r}")
            seen.add(tok)

    @property
    def tokenizer(self) -> str | None:
        return self.info.get("tokenizer")

    def __len__(self) -> int:
        return len(self.tokens)


def read_vocab(path: str | os.PathLike[str]) -> Vocabulary:
    """Parse a vocabulary file (``-`` for stdin); errors name the file and line."""
    name = str(path)
    if name == STDIO:
        data = sys.stdin.buffer.read()
        name = "<stdin>"
    else:
        p = Path(name)
        if not p.is_file():
            raise BadInput(f"{name}: no such vocabulary file")
        atomic.note_input(p)
        data = p.read_bytes()
    return parse_vocab(data, name)


def parse_vocab(data: bytes, name: str = "<vocab>") -> Vocabulary:
    tokens: list[str] = []
    counts: list[int | None] = []
    info: dict[str, str] = {}
    first_line: dict[str, int] = {}
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM (Windows editors write one) is no token
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    for lineno, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"{name}:{lineno}: not valid UTF-8 (byte {e.start + 1})") from None
        line = line.removesuffix("\r")
        if lineno == 1 and line.startswith(HEADER_PREFIX):
            info = _parse_header(line, name)
            continue
        token, tab, count_text = line.partition("\t")
        if not token:
            raise BadInput(f"{name}:{lineno}: empty token (empty lines are not allowed)")
        count: int | None = None
        if tab:
            try:
                count = int(count_text)
            except ValueError:
                raise BadInput(
                    f"{name}:{lineno}: count {count_text!r} after the tab is not an integer"
                ) from None
        if token in first_line:
            raise BadInput(f"{name}:{lineno}: duplicate token {token!r} (first on line {first_line[token]})")
        first_line[token] = lineno
        tokens.append(token)
        counts.append(count)
    if not tokens:
        raise BadInput(f"{name}: the vocabulary is empty")
    known = [c for c in counts if c is not None]
    if known and len(known) != len(counts):
        raise BadInput(f"{name}: some lines have a count and some do not; give all or none")
    return Vocabulary(tokens, [int(c) for c in known] if known else None, info)


def _parse_header(line: str, name: str) -> dict[str, str]:
    info: dict[str, str] = {}
    for item in line[len(HEADER_PREFIX) :].split():
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise BadInput(f"{name}:1: header item {item!r} is not key=value")
        info[key] = value
    return info


def format_vocab(vocab: Vocabulary) -> str:
    lines = []
    if vocab.info:
        items = " ".join(f"{k}={v}" for k, v in vocab.info.items())
        lines.append(f"{HEADER_PREFIX} {items}")
    if vocab.counts is None:
        lines.extend(vocab.tokens)
    else:
        lines.extend(f"{t}\t{c}" for t, c in zip(vocab.tokens, vocab.counts, strict=True))
    return "\n".join(lines) + "\n"


def write_vocab(vocab: Vocabulary, path: str | os.PathLike[str]) -> None:
    """Write a vocabulary file atomically, or to stdout for ``-``."""
    text = format_vocab(vocab)
    if str(path) == STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic.write_text(path, text)
