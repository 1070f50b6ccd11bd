"""Word-vector files read with gensim: GloVe (no header), word2vec (text or binary), fastText.

A fastText ``.bin`` model also builds vectors for unseen words from its sub-word n-grams; those
count as composed. Lookups try the exact token, then its lower-cased form.

Files are read as they are downloaded: ``.gz``, and ``.zip`` (one member, or ``archive.zip#member``),
streamed to gensim through a pipe (``archives``); ``progress(done, total)`` hears how far a large file is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embtool.core.errors import BadInput

if TYPE_CHECKING:
    from embtool.formats.sources.archives import Progress

FORMATS = ("glove", "word2vec", "fasttext")
_FASTTEXT_MAGIC = (793712314).to_bytes(4, "little")  # first int32 of a Facebook fastText .bin


@dataclass
class VectorFile:
    """A loaded vector file: gensim KeyedVectors and whether it has sub-word n-grams."""

    kind: str
    path: Path
    kv: Any  # gensim KeyedVectors (FastTextKeyedVectors for fastText .bin)
    ngrams: bool

    @property
    def dim(self) -> int:
        return int(self.kv.vector_size)


def _head(path: Path, n: int = 65536, member: str | None = None) -> bytes:
    from embtool.formats.sources.archives import open_stream

    try:
        with open_stream(path, member) as f:
            return bytes(f.read(n))
    except (OSError, EOFError) as e:
        raise BadInput(f"{path}: could not read ({e})") from None


def detect_format(path: Path, member: str | None = None) -> tuple[str, bool]:
    """(format, binary) from the file's first bytes: fastText magic, a word2vec "N D" header, or GloVe."""
    head = _head(path, member=member)
    if head[:4] == _FASTTEXT_MAGIC:
        return "fasttext", True
    first, _, rest = head.partition(b"\n")
    parts = first.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        try:
            rest[:4096].decode("utf-8")
        except UnicodeDecodeError as e:
            if e.start < len(rest[:4096]) - 4:  # not just a character cut at the block's end
                return "word2vec", True
        return "word2vec", False
    return "glove", False


def load_vector_file(kind: str | None, path: str, progress: Progress | None = None) -> VectorFile:
    """Read a vector file; ``kind`` None detects it. Errors name the file and the expected format."""
    from embtool.core.atomic import note_input
    from embtool.formats.sources.archives import read_keyed_vectors, split_member

    p, member = split_member(path)
    if not p.is_file():
        raise BadInput(f"{path}: no such vector file")
    note_input(p)
    detected, binary = detect_format(p, member)
    _check_not_empty(p, detected, member)
    kind = kind or detected
    if kind not in FORMATS:
        raise BadInput(f"unknown vector format {kind!r}; valid choices: {', '.join(FORMATS)}")
    try:
        if kind == "fasttext" and detected == "fasttext":
            if member is not None:
                raise BadInput(
                    f"{path}: a fastText .bin model is read from a file; unpack it from the .zip first"
                )
            from gensim.models.fasttext import load_facebook_vectors

            return VectorFile(kind, p, load_facebook_vectors(str(p)), ngrams=True)
        if kind == "fasttext" and binary:
            raise BadInput(
                f"{path}: not a fastText .bin model (no fastText magic number) nor a .vec text file"
            )
        if kind == "glove":
            if detected == "word2vec":
                raise BadInput(f"{path}: starts with a word2vec 'count dim' header; use word2vec:{path}")
            kv = read_keyed_vectors(p, member, progress, binary=False, no_header=True)
        else:  # word2vec, or a fastText .vec (word2vec text format)
            if detected == "fasttext":
                raise BadInput(f"{path}: is a fastText .bin model; use fasttext:{path}")
            if detected != "word2vec":
                raise BadInput(
                    f"{path}: no 'count dim' header line, so not word2vec/.vec format; use glove:{path} "
                    "for a file without a header"
                )
            kv = read_keyed_vectors(p, member, progress, binary=binary, no_header=False)
    except BadInput:
        raise
    except (ValueError, UnicodeDecodeError, EOFError, OSError, IndexError, AssertionError) as e:
        raise BadInput(
            f"{path}: not a readable {kind} vector file ({' '.join(str(e).split())[:200]})"
        ) from None
    return VectorFile(kind, p, kv, ngrams=False)


def _check_not_empty(path: Path, detected: str, member: str | None = None) -> None:
    """BadInput for a file with no vectors: empty, blank, or a word2vec header alone."""
    head = _head(path, 4096, member)
    if not head.strip():
        raise BadInput(f"{path}: the vector file is empty")
    if detected == "word2vec" and not head.partition(b"\n")[2].strip():
        raise BadInput(f"{path}: has a 'count dim' header line but no vectors")


def lookup_words(
    vf: VectorFile, tokens: list[str], *, compose: bool, case_fallback: bool
) -> tuple[list[int | None], dict[int, Any]]:
    """Per token its row in ``vf.kv`` (exact, then lower-cased); and, with ``compose`` on a
    fastText model, the vectors its sub-word n-grams build for tokens found nowhere."""
    index: dict[str, int] = vf.kv.key_to_index
    rows: list[int | None] = []
    composed: dict[int, Any] = {}
    for n, token in enumerate(tokens):
        i = index.get(token)
        if i is None and case_fallback:
            i = index.get(token.lower())
        rows.append(i)
        if i is None and compose and vf.ngrams:
            try:
                composed[n] = vf.kv.get_vector(token)  # (D,) mean of the n-grams' bucket rows
            except KeyError:  # too short to have any n-gram
                pass
    return rows, composed
