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


_WRITER = """
import sys, time
from embtool import atomic, cli
with cli._signals_stop():
    with atomic.atomic_path(sys.argv[1]) as tmp:
        open(tmp, "w").write("half")
        print(tmp, flush=True)
        time.sleep(60)
"""


def _start_writer(target: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(atomic.__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.is_file() and tmp.name.startswith(f".{target.name}.{proc.pid}.")
    return proc, tmp


def test_sigterm_during_a_write_removes_the_temporary(tmp_path: Path) -> None:
    """Issue 14.13: SIGTERM is handled like SIGINT: the writer cleans up on the way out."""
    import signal

    atomic.write_text(tmp_path / "t.txt", "old")
    proc, tmp = _start_writer(tmp_path / "t.txt")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert not tmp.exists() and (tmp_path / "t.txt").read_text() == "old"


def test_a_later_writer_removes_temporaries_of_its_target_whose_writer_was_killed(tmp_path: Path) -> None:
    """Issue 14.13: kill -9 cannot be handled; the next write of the same target removes the leftover,
    and leaves a live writer's temporary and other targets' leftovers alone."""
    import signal

    live, live_tmp = _start_writer(tmp_path / "t.txt")
    dead, dead_tmp = _start_writer(tmp_path / "t.txt")
    other, other_tmp = _start_writer(tmp_path / "u.txt")
    for proc in (dead, other):
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    try:
        assert dead_tmp.exists()  # kill -9 leaves it: nobody ran
        atomic.write_text(tmp_path / "t.txt", "new")
        assert not dead_tmp.exists() and live_tmp.exists() and other_tmp.exists()
        assert (tmp_path / "t.txt").read_text() == "new"
    finally:
        live.kill()
        live.wait(timeout=30)
