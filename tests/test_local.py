"""Local task files: UTF-8 lines (gzip or not), parallel files, TSV with a header."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from embtool.core.errors import BadInput
from embtool.tasks.local import find_file, read_lines, read_parallel, read_tsv


def test_read_parallel_and_bad_utf8(tmp_path: Path) -> None:
    (tmp_path / "a.de").write_text("x\ny\n")
    (tmp_path / "a.en").write_text("u\r\nv")
    assert read_parallel(tmp_path / "a.de", tmp_path / "a.en") == (["x", "y"], ["u", "v"])
    (tmp_path / "b.de").write_bytes(b"ok\n\xff\n")
    with pytest.raises(BadInput, match=r"b.de:2: not valid UTF-8"):
        read_parallel(tmp_path / "b.de", tmp_path / "a.en")
    (tmp_path / "c.de").write_text("only one\n")
    with pytest.raises(BadInput, match="has 1 lines but .* has 2"):
        read_parallel(tmp_path / "c.de", tmp_path / "a.en")


def test_gzip_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "train.de.gz").write_bytes(gzip.compress(b"a\nb\n"))
    assert read_lines(tmp_path / "train.de.gz") == ["a", "b"]
    assert find_file(tmp_path, ("val", "train"), "de") == tmp_path / "train.de.gz"
    assert find_file(tmp_path, ("val",), "de") is None
    with pytest.raises(BadInput, match="no such file"):
        read_lines(tmp_path / "nope.txt")


def test_tsv_header_and_rows(tmp_path: Path) -> None:
    (tmp_path / "dev.tsv").write_text('sentence\tlabel\nit "works"\t1\n')
    assert read_tsv(tmp_path / "dev.tsv") == (["sentence", "label"], [['it "works"', "1"]])
