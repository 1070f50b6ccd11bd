"""Atomic writes: all or nothing, the old file kept on failure; file digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from embtool import atomic
from embtool.errors import BadInput


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        Path(tmp).write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.txt"]
    atomic.write_text(target, "new")
    assert target.read_text() == "new"


def test_bad_targets_are_named(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        atomic.write_text(tmp_path / "no" / "t.txt", "x")
    with pytest.raises(BadInput, match="is a folder"):
        atomic.write_text(tmp_path, "x")


def test_sha256_file_reads_in_blocks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # more than one 1 MiB block
    (tmp_path / "f").write_bytes(data)
    assert atomic.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
