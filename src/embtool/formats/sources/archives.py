"""Vector files as they are downloaded: ``.gz`` and ``.zip`` read without unpacking, with progress.

gensim's ``load_word2vec_format`` opens a path (through smart_open, which knows ``.gz`` but not
``.zip``), or an integer file descriptor. An archive, or a large file whose reading should be
heard (``progress``), is therefore streamed into a pipe by a thread and gensim reads the pipe's
descriptor: one pass, no unpacked copy on disk. A header-less (GloVe) file would make gensim read
twice to count its lines; the count is taken here and given to gensim as a word2vec header.

A damaged archive (a bad CRC, compressed data that does not inflate, a file cut short) is a
``BadInput`` naming the file (and member), whichever thread reads it: when the pipe's thread fails,
its error is raised, not gensim's report of the short stream it saw.
"""

from __future__ import annotations

import gzip
import os
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embtool.core.errors import BadInput

Progress = Callable[[int, int], None]  # (bytes done, bytes in all) of the file as stored
PROGRESS_BYTES = 64 << 20  # files at least this large are read with progress reports
_CHUNK = 1 << 20
# what a damaged archive raises while it is read: zipfile's bad CRC, zlib's bad data, gzip's bad CRC or
# header (an OSError), a stream cut short (EOFError)
_DAMAGE = (zipfile.BadZipFile, zlib.error, gzip.BadGzipFile, EOFError)


def split_member(path: str) -> tuple[Path, str | None]:
    """``archive.zip#member`` → (archive, member); any other path → (path, None)."""
    head, sep, member = path.rpartition("#")
    if sep and head.endswith(".zip") and Path(head).is_file():
        return Path(head), member
    return Path(path), None


def _member(z: zipfile.ZipFile, path: Path, member: str | None) -> zipfile.ZipInfo:
    files = [i for i in z.infolist() if not i.is_dir()]
    if member is not None:
        found = [i for i in files if i.filename == member]
        if not found:
            raise BadInput(
                f"{path}: no member {member!r} (members: {', '.join(i.filename for i in files[:8])})"
            )
        return found[0]
    if len(files) != 1:
        names = ", ".join(i.filename for i in files[:8]) or "none"
        raise BadInput(
            f"{path}: holds {len(files)} files ({names}); name one: {path}#{files[0].filename if files else 'FILE'}"
        )
    return files[0]


class _Counted:
    """A binary file that reports the bytes read from it."""

    def __init__(self, f: Any, total: int, progress: Progress | None) -> None:
        self.f, self.total, self.progress, self.done = f, total, progress, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.done += len(data)
        if self.progress is not None:
            self.progress(self.done, self.total)
        return data

    def readline(self, n: int = -1) -> bytes:
        data = self.f.readline(n)
        self.done += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class _Checked:
    """A decompressing reader whose damage is a one-line ``BadInput`` naming ``origin``."""

    def __init__(self, f: Any, origin: str) -> None:
        self.f, self.origin = f, origin

    def read(self, n: int = -1) -> bytes:
        try:
            return self.f.read(n)
        except _DAMAGE as e:
            raise self._damaged(e) from None

    def readline(self, n: int = -1) -> bytes:
        try:
            return self.f.readline(n)
        except _DAMAGE as e:
            raise self._damaged(e) from None

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _damaged(self, e: BaseException) -> BadInput:
        return BadInput(f"{self.origin} ({' '.join(str(e).split()) or type(e).__name__}); download it again")


@contextmanager
def open_stream(path: Path, member: str | None = None, progress: Progress | None = None) -> Iterator[Any]:
    """The file's bytes, decompressed: a ``.zip`` member, a ``.gz`` file, or the file itself."""
    if path.suffix == ".zip":
        try:
            z = zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise BadInput(f"{path}: not a readable .zip archive ({e})") from None
        with z:
            info = _member(z, path, member)
            origin = f"{path}#{info.filename}"
            try:  # a bad local header, an unknown compression method, a password
                f = z.open(info)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as e:
                raise BadInput(f"{origin}: cannot be read from the archive ({e})") from None
            with f:
                yield _Counted(_Checked(f, f"{origin}: damaged in the archive"), info.file_size, progress)
        return
    with open(path, "rb") as raw:
        counted = _Counted(raw, path.stat().st_size, progress)
        if path.suffix == ".gz":
            with gzip.GzipFile(fileobj=counted, mode="rb") as f:  # type: ignore[call-overload]
                yield _Checked(f, f"{path}: damaged")
        else:
            yield counted


def streamed(path: Path, progress: Progress | None) -> bool:
    """Whether ``read_keyed_vectors`` streams this file (an archive, or a large file with progress)."""
    return path.suffix in (".zip", ".gz") or (progress is not None and path.stat().st_size >= PROGRESS_BYTES)


def read_keyed_vectors(
    path: Path, member: str | None, progress: Progress | None, *, binary: bool, no_header: bool
) -> Any:
    """gensim ``KeyedVectors`` of a word2vec/GloVe file, an archive's member, or a ``.gz`` file."""
    from gensim.models import KeyedVectors

    if not streamed(path, progress):
        return KeyedVectors.load_word2vec_format(str(path), binary=binary, no_header=no_header)
    header = b""
    if no_header:  # count the lines here: gensim would read the stream twice
        with open_stream(path, member) as f:
            first = f.readline()
            count = (1 if first.strip() else 0) + sum(1 for line in f if line.strip())
        header = f"{count} {len(first.split()) - 1}\n".encode()
    read_end, write_end = os.pipe()
    failed: list[BaseException] = []

    def pump() -> None:
        try:
            with os.fdopen(write_end, "wb") as out, open_stream(path, member, progress) as f:
                out.write(header)
                while block := f.read(_CHUNK):
                    out.write(block)
        except BrokenPipeError:  # gensim stopped reading (it has the rows the header names, or failed)
            pass
        except BaseException as e:  # noqa: BLE001 - raised in the caller's thread below
            failed.append(e)

    thread = threading.Thread(target=pump, name="embtool-vectors", daemon=True)
    thread.start()
    try:
        try:
            kv = KeyedVectors.load_word2vec_format(read_end, binary=binary)
        finally:
            os.close(read_end)  # a writer still blocked on a full pipe gets EPIPE and ends
            thread.join()
    except Exception:
        if failed:  # the stream broke (it closed the pipe): gensim's error only reports a short file
            raise failed[0] from None
        raise
    if failed:
        raise failed[0]
    return kv
