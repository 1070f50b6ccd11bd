"""Local copies of the task data: plain or gzipped text files in ../shared/data's layouts.

Translation: ``{split}.{src}[.gz]`` and ``{split}.{tgt}[.gz]``, line i of one translating line i
of the other. Classification: ``{split}.tsv[.gz]`` with a header row naming its columns.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

from embtool.core.atomic import note_input
from embtool.core.errors import BadInput


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of a UTF-8 text file (``.gz`` is decompressed), without their line ends."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{p}: no such file")
    note_input(p)
    try:
        data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    except (OSError, EOFError) as e:
        raise BadInput(f"{p}: could not read ({e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise BadInput(f"{p}:{line}: not valid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_parallel(src: str | os.PathLike[str], tgt: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """Parallel sentences from two files; their line counts must agree."""
    s, t = read_lines(src), read_lines(tgt)
    if len(s) != len(t):
        raise BadInput(
            f"{src} has {len(s)} lines but {tgt} has {len(t)}; line i of one must translate line i "
            "of the other"
        )
    return s, t


def find_file(folder: Path, stems: Sequence[str], ext: str) -> Path | None:
    """The first of ``{stem}.{ext}`` / ``{stem}.{ext}.gz`` that exists in ``folder``."""
    for stem in stems:
        for name in (f"{stem}.{ext}", f"{stem}.{ext}.gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a tab-separated file (no quoting: GLUE sentences hold bare quotes)."""
    lines = read_lines(path)
    if not lines:
        raise BadInput(f"{path}: the file is empty; expected a header row")
    rows = [line.split("\t") for line in lines]
    return rows[0], rows[1:]
