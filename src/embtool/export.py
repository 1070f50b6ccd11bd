"""Tables out to other trainers' files: word2vec (text, binary), GloVe, fairseq, OpenNMT-py, npy.

Every text format is "token v1 … vD" per line, split on spaces by its readers (gensim's
``load_word2vec_format``, fairseq's ``utils.parse_embedding``, OpenNMT-py's ``read_embeddings``), so a
token holding whitespace cannot be held: it is refused by name, or written with its whitespace
replaced (``space_as``); so is a character that ends a line for ``str.splitlines`` in npy's tokens file
(one token per line). A token that is not UTF-8 text (a lone surrogate, from bytes decoded with
``errors="surrogateescape"``) is refused in every format. Values are written with 9 significant digits,
which read back as the same float32 (``digits`` trades that for size). Rows are written block by block as
the table yields them: a large memory-mapped table is never copied whole.

fairseq's ``--encoder-embed-path`` skips the file's first line, so its file keeps word2vec's ``N D``
header: a header-less GloVe file given to fairseq silently loses its first vector.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from embtool.errors import BadInput, UsageError

# numpy is imported inside the writers: the command reads FORMATS and DEFAULT_DIGITS for --help

if TYPE_CHECKING:
    from embtool.table import EmbeddingTable

FORMATS = ("word2vec", "word2vec-binary", "glove", "fairseq", "opennmt", "npy")
BINARY_FORMATS = ("word2vec-binary", "npy")
DEFAULT_DIGITS = 9  # float32 → 9 significant digits → the same float32 (IEEE 754's round-trip bound)
_WHITESPACE = re.compile(r"\s")  # text formats' readers split on it; it holds every line break below
_LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # what str.splitlines() ends a line at
_SURROGATE = re.compile("[\ud800-\udfff]")  # not encodable as UTF-8
_BLOCK = 1 << 18  # values per block of rows


@dataclass
class Exported:
    """What ``export`` wrote: rows, width, the files, and for OpenNMT-py the settings to pass."""

    format: str
    rows: int
    dim: int
    files: list[str]
    renamed: int  # tokens whose whitespace was replaced by ``space_as``

    def flags(self) -> list[str]:
        """The other trainer's settings that read this file (printed by the command)."""
        path, d = self.files[0], self.dim
        if self.format == "fairseq":
            return [f"--encoder-embed-path {path} --encoder-embed-dim {d}   (decoder: --decoder-embed-path)"]
        if self.format == "opennmt":
            return [
                f"OpenNMT-py ≥ 2 (YAML config): src_embeddings: {path}   (or tgt_embeddings / both_embeddings)",
                f'  embeddings_type: "GloVe"   word_vec_size: {d}',
                f"OpenNMT-py 1.x: tools/embeddings_to_torch.py -emb_file_enc {path} -dict_file DATA.vocab.pt "
                f"-output_file DATA.emb, then train -pre_word_vecs_enc DATA.emb.enc.pt -word_vec_size {d}",
            ]
        if self.format == "npy":
            return [f"numpy.load({path!r}) → ({self.rows}, {d}); row i is line i of {self.files[1]}"]
        return []


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BadInput(f"--format {fmt!r} is not known; valid choices: {', '.join(FORMATS)}")
    return fmt


def tokens_for(table: EmbeddingTable, fmt: str, space_as: str | None = None) -> tuple[list[str], int]:
    """The tokens as ``fmt`` will hold them, and how many were changed; BadInput naming the first
    token the format cannot hold (whitespace in a text format, a line break in npy's tokens file, a
    lone surrogate in any)."""
    check_format(fmt)
    if space_as is not None and (space_as == "" or _WHITESPACE.search(space_as)):
        raise BadInput(f"--space-as {space_as!r}: give a non-empty replacement without whitespace")
    split = _LINE_BREAK if fmt == "npy" else _WHITESPACE
    what = "line breaks" if fmt == "npy" else "whitespace"
    out, changed = [], 0
    for i, tok in enumerate(table.tokens):
        surrogate = _SURROGATE.search(tok)
        if surrogate:
            raise BadInput(
                f"{table.origin}: row {i} token {tok!r} is not UTF-8 text: it holds the lone surrogate "
                f"{surrogate.group()!r} (what errors='surrogateescape' leaves for a byte that is not UTF-8); "
                "rebuild the table from its source read with the source's encoding"
            )
        bad = tok == "" or split.search(tok)
        if bad and space_as is not None and tok:
            tok, changed = split.sub(space_as, tok), changed + 1
        elif bad:
            raise BadInput(
                f"{table.origin}: row {i} token {tok!r} cannot be written as {fmt}: its readers split on "
                f"{what}" + ("" if tok == "" else "; pass --space-as CHAR (e.g. --space-as ▁) to replace it")
            )
        out.append(tok)
    if changed and len(set(out)) != len(out):
        dup = next(t for t in out if out.count(t) > 1)
        raise BadInput(f"--space-as {space_as!r} makes two tokens the same: {dup!r}; choose another")
    return out, changed


def export(
    table: EmbeddingTable,
    fmt: str,
    out: str,
    *,
    tokens_out: str | None = None,
    space_as: str | None = None,
    digits: int = DEFAULT_DIGITS,
) -> Exported:
    """Write ``table`` as ``fmt`` to ``out`` (``-``: stdout); npy also writes ``tokens_out`` (default:
    OUT with the suffix ``.tokens.txt``). Everything is checked before the first byte is written, and
    files are replaced atomically."""
    tokens, changed = tokens_for(table, fmt, space_as)
    if not 1 <= digits <= 17:
        raise BadInput(f"--digits must be between 1 and 17, got {digits}")
    files = [out]
    if tokens_out is not None and fmt != "npy":
        raise UsageError(f"--tokens applies to --format npy only, not {fmt}")
    if fmt == "npy":
        if tokens_out is None:
            if out == "-":
                raise UsageError("npy to stdout needs --tokens FILE for the token list")
            tokens_out = str(Path(out).with_suffix("")) + ".tokens.txt"
        files.append(tokens_out)
    with ExitStack() as files_open:  # both files are renamed into place only when both are written
        if tokens_out is not None:
            files_open.enter_context(_output(tokens_out, binary=False)).write(
                "".join(t + "\n" for t in tokens).encode("utf-8")
            )
        f = files_open.enter_context(_output(out, binary=fmt in BINARY_FORMATS))
        if fmt == "npy":
            _write_npy(table, f)
        elif fmt == "word2vec-binary":
            _write_binary(table, tokens, f)
        else:
            _write_text(table, tokens, f, header=fmt in ("word2vec", "fairseq"), digits=digits)
    return Exported(fmt, table.n, table.dim, files, changed)


def _write_text(table: EmbeddingTable, tokens: list[str], f: BinaryIO, *, header: bool, digits: int) -> None:
    if header:
        f.write(f"{table.n} {table.dim}\n".encode())
    row_format = "%s" + f" %.{digits}g" * table.dim + "\n"
    start = 0
    for block in table.blocks(_BLOCK):  # (B, D) float32
        values = block.tolist()  # Python floats: the float32 values exactly
        lines = [row_format % (tok, *row) for tok, row in zip(tokens[start : start + len(values)], values)]
        f.write("".join(lines).encode("utf-8"))
        start += len(values)


def _write_binary(table: EmbeddingTable, tokens: list[str], f: BinaryIO) -> None:
    """word2vec.c's layout: "N D\\n", then per row the token, a space, D little-endian float32 and
    "\\n" (gensim skips that newline before the next token)."""
    import numpy as np

    f.write(f"{table.n} {table.dim}\n".encode())
    start = 0
    for block in table.blocks(_BLOCK):
        raw = np.ascontiguousarray(block, dtype="<f4")  # (B, D)
        parts = []
        for k, tok in enumerate(tokens[start : start + len(raw)]):
            parts += [tok.encode("utf-8"), b" ", raw[k].tobytes(), b"\n"]
        f.write(b"".join(parts))
        start += len(raw)


def _write_npy(table: EmbeddingTable, f: BinaryIO) -> None:
    """numpy's .npy: its header, then the rows (float16 tables stay float16; bfloat16 widens to float32)."""
    import numpy as np

    dtype = np.dtype("<f2" if table.dtype == "float16" else "<f4")
    header = {"descr": dtype.str, "fortran_order": False, "shape": (table.n, table.dim)}
    np.lib.format.write_array_header_1_0(f, header)
    for block in table.blocks(_BLOCK):  # float32; a float16 table's values narrow back exactly
        f.write(np.ascontiguousarray(block, dtype=dtype).tobytes())


@contextmanager
def _output(path: str, *, binary: bool) -> Iterator[BinaryIO]:
    """stdout (``-``; a binary format never to a terminal) or an atomically replaced file."""
    from embtool.atomic import atomic_path

    if path == "-":
        stdout = sys.stdout.buffer
        if binary and stdout.isatty():
            raise UsageError("refusing to write a binary file to a terminal: use -o FILE or redirect stdout")
        try:
            yield stdout
            stdout.flush()
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as text tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise
        return
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f
