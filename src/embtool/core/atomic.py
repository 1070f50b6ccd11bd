"""Atomic file writes: write to a temporary file in the target's folder, then rename.

An interrupted or failed write leaves neither a half-written file nor a stray temporary,
and never touches what was already at the target path.

Every output passes through ``atomic_path``, so it is also the one place that refuses to write over
a file the command reads: readers ``note_input`` what they open (the file's device and inode, so a
hard link or a symlink to it is the same file), and ``atomic_path`` compares its target against them.
Only a table may replace a table it was read from (``standardize x -o x``): the rename leaves the old
file's pages to the memory map still reading them.
"""

from __future__ import annotations

import glob
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from embtool.core.errors import BadInput, UsageError, WorkFailure

# (st_dev, st_ino) of each file the running command read → (its absolute path, read only as a table
# so far); None outside ``command_inputs``
_INPUTS: dict[tuple[int, int], tuple[str, bool]] | None = None


@contextmanager
def command_inputs() -> Iterator[None]:
    """The files read inside the block are inputs that no write inside it may replace. The CLI
    enters it for each command: a long-lived process (a grid trained in-process, a notebook) does
    not carry one call's reads into the next."""
    global _INPUTS
    outer, _INPUTS = _INPUTS, {}
    try:
        yield
    finally:
        _INPUTS = outer


def note_input(path: str | os.PathLike[str], *, table: bool = False) -> None:
    """Record that ``path`` is read, so that no output of the command is written over it.
    ``table``: it was read as an embedding table (a table may replace it in place)."""
    if _INPUTS is None:
        return
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # nothing there (the reader says so), or no path
        return
    if not stat.S_ISREG(st.st_mode):
        return
    key = (st.st_dev, st.st_ino)
    _, was_table = _INPUTS.get(key, ("", True))
    _INPUTS[key] = (os.path.abspath(path), table and was_table)


def check_not_input(target: str | os.PathLike[str], *, table: bool = False) -> None:
    """UsageError when ``target`` is (a link to) a file this process read; a ``table`` output may
    replace a file read only as a table."""
    if not _INPUTS:
        return
    try:
        st = os.stat(target)
    except (OSError, ValueError):
        return
    key = (st.st_dev, st.st_ino)
    found = _INPUTS.get(key)
    if found is None:
        return
    path, was_table = found
    try:
        still = os.stat(path)
        if (still.st_dev, still.st_ino) != key:  # gone, and its inode number reused by another file
            return
    except OSError:
        return
    if table and was_table:
        return
    same = "" if os.path.abspath(target) == path else f" (the same file as {path})"
    raise UsageError(f"{target}: is an input of this command{same}; write the output to another file")


@contextmanager
def atomic_path(target: str | os.PathLike[str], *, table: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` when the block succeeds.
    UsageError, before anything is written, when ``target`` is a file this process reads (``table``:
    the output is a table, which may replace a table input)."""
    dest = Path(target)
    folder = dest.parent
    if not folder.is_dir():
        raise BadInput(f"{dest}: folder {folder} does not exist")
    if dest.is_dir():
        raise BadInput(f"{dest}: is a folder; give a file name")
    check_not_input(dest, table=table)
    remove_stale_temporaries(folder, dest.name)
    # the writer's pid is in the name, so a later writer can tell a leftover of a killed one
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        _copy_mode(dest, tmp)
        os.replace(tmp, dest)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WorkFailure(f"{dest}: could not write ({e.strerror or e})") from None
        raise


def remove_stale_temporaries(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove the temporaries (of target ``name``, or of any) whose writing process is gone.

    A writer killed by SIGKILL cannot clean up; the next writer of the same target does. Returns
    what was removed. Temporaries of live processes (and of this one) are left alone.
    """
    removed = []
    pattern = f".{glob.escape(name)}.*.tmp" if name else ".*.tmp"
    for path in Path(folder).glob(pattern):
        pid = _writer_pid(path.name, name)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _writer_pid(filename: str, name: str | None) -> int | None:
    """The pid in ``.NAME.PID.XXXXXXXX.tmp`` (None when the name has none)."""
    parts = filename[:-4].rsplit(".", 2)  # [".NAME", "PID", "XXXXXXXX"]
    if len(parts) != 3 or not parts[1].isdigit() or (name is not None and parts[0] != f".{name}"):
        return None
    return int(parts[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def _copy_mode(dest: Path, tmp: str) -> None:
    # mkstemp creates 0600; give the file the old file's mode, or what open() would give
    if dest.exists():
        os.chmod(tmp, stat.S_IMODE(dest.stat().st_mode))
    else:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks (run folders record their inputs' digests)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
