"""Atomic writes: all or nothing, the old file kept on failure; file digests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from conftest import write_run
from embtool.core import atomic
from embtool.core.errors import BadInput, UsageError


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
from embtool.core import atomic
from embtool import cli
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


# ----------------------------------------------------------------------------- never over an input


def test_a_file_read_is_refused_as_a_target_by_path_link_and_hard_link(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("keep")
    (tmp_path / "sym").symlink_to(src)
    os.link(src, tmp_path / "hard")
    with atomic.command_inputs():
        atomic.note_input(src)
        for target in (src, tmp_path / "sym", tmp_path / "hard"):
            with pytest.raises(UsageError, match="is an input of this command"):
                atomic.write_text(target, "lost")
        assert src.read_text() == "keep"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["hard", "in.txt", "sym"]
        atomic.write_text(tmp_path / "other.txt", "fine")
    atomic.write_text(src, "after the command, or in a library call outside one")
    with atomic.command_inputs():  # a later command: what the last one read is no input of it
        atomic.write_text(src, "a later command may")
    assert src.read_text() == "a later command may"


def test_a_table_may_replace_a_table_it_read_but_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("x")
    with atomic.command_inputs():
        atomic.note_input(path, table=True)
        with pytest.raises(UsageError):
            atomic.write_text(path, "z")
        atomic.note_input(path)  # read as text too: no longer only a table
        with pytest.raises(UsageError), atomic.atomic_path(path, table=True):
            pass
    assert path.read_text() == "x"
    with atomic.command_inputs():
        atomic.note_input(path, table=True)
        with atomic.atomic_path(path, table=True) as tmp:
            Path(tmp).write_text("y")
    assert path.read_text() == "y"


def test_a_reused_inode_of_a_deleted_input_is_no_input(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.write_text("x")
    with atomic.command_inputs():
        atomic.note_input(gone)
        st = gone.stat()
        gone.unlink()
        assert atomic._INPUTS is not None
        atomic._INPUTS[(st.st_dev, st.st_ino)] = (str(tmp_path / "elsewhere"), False)  # a stale entry
        atomic.write_text(tmp_path / "new", "fine")  # whatever inode it takes


def _out_equals_in_cases(tmp: Path) -> list[tuple[str, list[str], Path]]:
    """(name, command, the input it must not write over)."""
    vocab, text, table, vec = tmp / "v.txt", tmp / "c.txt", tmp / "t.safetensors", tmp / "w2v.txt"
    return [
        ("vocab --text C -o C", ["vocab", "--text", str(text), "-o", str(text)], text),
        ("init --vocab V -o V", ["init", "xavier", "--vocab", str(vocab), "--dim", "4", "-o", str(vocab)], vocab),
        ("extract --vocab V -o V", ["extract", f"word2vec:{vec}", "--vocab", str(vocab), "-o", str(vocab)], vocab),
        ("extract -o SOURCE", ["extract", f"word2vec:{vec}", "--vocab", str(vocab), "-o", str(vec)], vec),
        ("export -f word2vec -o TABLE", ["export", str(table), "-f", "word2vec", "-o", str(table)], table),
        ("export -f npy -o TABLE", ["export", str(table), "-f", "npy", "-o", str(table)], table),
        ("export --tokens TABLE", ["export", str(table), "-f", "npy", "-o", str(tmp / "o.npy"), "--tokens", str(table)], table),
        ("a symlink to the input", ["init", "xavier", "--vocab", str(vocab), "--dim", "4", "-o", str(tmp / "link")], vocab),
        ("a hard link to the input", ["vocab", "--text", str(text), "-o", str(tmp / "hard")], text),
        ("report RUN -o RUN/test.json", ["report", str(tmp / "run"), "-o", str(tmp / "run" / "test.json")], tmp / "run" / "test.json"),
    ]  # fmt: skip


OUT_EQUALS_IN = ["vocab --text C -o C", "init --vocab V -o V", "extract --vocab V -o V", "extract -o SOURCE", "export -f word2vec -o TABLE", "export -f npy -o TABLE", "export --tokens TABLE", "a symlink to the input", "a hard link to the input", "report RUN -o RUN/test.json"]  # fmt: skip


@pytest.mark.parametrize("case", OUT_EQUALS_IN)
def test_no_command_writes_over_a_file_it_reads(tmp_path: Path, cli, case: str) -> None:
    (tmp_path / "v.txt").write_text("#embtool tokenizer=whitespace\nthe\t3\ncat\t2\n", encoding="utf-8")
    (tmp_path / "c.txt").write_text("the cat\nthe mat\n", encoding="utf-8")
    (tmp_path / "w2v.txt").write_text("2 3\nthe 1 2 3\ncat 4 5 6\n", encoding="utf-8")
    assert cli("init", "xavier", "--vocab", str(tmp_path / "v.txt"), "--dim", "4", "-o", str(tmp_path / "t.safetensors")).code == 0  # fmt: skip
    (tmp_path / "link").symlink_to(tmp_path / "v.txt")
    os.link(tmp_path / "c.txt", tmp_path / "hard")
    write_run(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    cases = {c[0]: c for c in _out_equals_in_cases(tmp_path)}
    assert sorted(cases) == sorted(OUT_EQUALS_IN)
    _, args, victim = cases[case]
    r = cli(*args)
    lines = r.stderr.strip().splitlines()
    assert r.code == 2 and len(lines) == 1 and "is an input of this command" in lines[0], r.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before, f"{victim} changed"


def test_a_table_command_may_still_rewrite_its_table_in_place(tmp_path: Path, cli) -> None:
    (tmp_path / "v.txt").write_text("#embtool tokenizer=whitespace\nthe\t3\ncat\t2\n", encoding="utf-8")
    table = tmp_path / "t.safetensors"
    assert cli("init", "xavier", "--vocab", str(tmp_path / "v.txt"), "--dim", "4", "-o", str(table)).code == 0
    r = cli("scale", str(table), "--by", "2", "-o", str(table))
    assert r.code == 0, r.stderr
    from embtool.tables.table import load

    assert load(table).history[-1]["op"] == "scale"
