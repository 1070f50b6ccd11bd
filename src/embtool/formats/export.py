"""Tables out to other trainers' files: word2vec (text, binary), GloVe, fairseq, OpenNMT-py, npy, and
a folder for TensorBoard's embedding projector.

Every text format is "token v1 … vD" per line, split on spaces by its readers (gensim's
``load_word2vec_format``, fairseq's ``utils.parse_embedding``, OpenNMT-py's ``read_embeddings``), so a
token holding whitespace cannot be held: it is refused by name, or written with its whitespace
replaced (``space_as``); so is a character that ends a line for ``str.splitlines`` in npy's tokens file
(one token per line). A token that is not UTF-8 text (a lone surrogate, from bytes decoded with
``errors="surrogateescape"``) is refused in every format. Values are written with 9 significant digits,
which read back as the same float32 (``digits`` trades that for size). Rows are written block by block as
the table yields them: a large memory-mapped table is never copied whole.

Text is formatted by numpy, a block at a time (``format_rows``): the same characters as Python's
``"%.9g" % value``, about 3× as fast as Python formats them (``bench/export.py``).

``tensorboard`` writes a folder TensorBoard's projector reads (``tensorboard --logdir DIR``, the Projector
tab): ``tensors.tsv`` (a row of tab-separated values per token), ``metadata.tsv`` (the tokens as labels,
one a line, no header: the projector's rule for one column) and ``projector_config.pbtxt`` naming both;
a token holding a tab or a line break cannot be held.

fairseq's ``--encoder-embed-path`` skips the file's first line, so its file keeps word2vec's ``N D``
header: a header-less GloVe file given to fairseq silently loses its first vector.
"""

from __future__ import annotations

import operator
import os
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from embtool.core.errors import BadInput, UsageError

# numpy is imported inside the writers: the command reads FORMATS and DEFAULT_DIGITS for --help

if TYPE_CHECKING:
    from embtool.tables.table import EmbeddingTable

FORMATS = ("word2vec", "word2vec-binary", "glove", "fairseq", "opennmt", "npy", "tensorboard")
BINARY_FORMATS = ("word2vec-binary", "npy")
DEFAULT_DIGITS = 9  # float32 → 9 significant digits → the same float32 (IEEE 754's round-trip bound)
_WHITESPACE = re.compile(r"\s")  # text formats' readers split on it; it holds every line break below
_LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # what str.splitlines() ends a line at
_TSV_BREAK = re.compile("[\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # a tab, or a line break
_SURROGATE = re.compile("[\ud800-\udfff]")  # not encodable as UTF-8
_BLOCK = 1 << 18  # values per block of rows
# the projector's folder (``tensorboard``): the rows, the tokens as labels, the config naming both
PROJECTOR_TENSORS, PROJECTOR_METADATA, PROJECTOR_CONFIG = (
    "tensors.tsv",
    "metadata.tsv",
    "projector_config.pbtxt",
)


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
        if self.format == "tensorboard":
            return [
                f"tensorboard --logdir {Path(path).parent}   (the Projector tab; the tokens label the points)"
            ]
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
    split = {"npy": _LINE_BREAK, "tensorboard": _TSV_BREAK}.get(fmt, _WHITESPACE)
    what = {"npy": "line breaks", "tensorboard": "tabs and line breaks"}.get(fmt, "whitespace")
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


def _same_file(a: str, b: str) -> bool:
    """Whether two output paths name one file (the same path, or links to one existing file)."""
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet: they differ
        return False


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
    OUT with the suffix ``.tokens.txt``); tensorboard writes the folder ``out`` (the module docstring).
    Everything is checked before the first byte is written, and files are replaced atomically."""
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
        if out != "-" and _same_file(out, tokens_out):
            raise UsageError(
                f"--tokens {tokens_out} is the output file -o {out}; give the token list another name"
            )
        files.append(tokens_out)
    if fmt == "tensorboard":
        return Exported(fmt, table.n, table.dim, _write_projector(table, tokens, out, digits), changed)
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


def _write_projector(table: EmbeddingTable, tokens: list[str], out: str, digits: int) -> list[str]:
    """The projector's three files in the folder ``out`` (made if missing), renamed into place together."""
    if out == "-":
        raise UsageError("--format tensorboard writes a folder of three files: give -o DIR")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise BadInput(
            f"-o {out}: is a file; --format tensorboard writes a folder (tensors.tsv, metadata.tsv …)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in (PROJECTOR_TENSORS, PROJECTOR_METADATA, PROJECTOR_CONFIG)]
    with ExitStack() as files_open:
        rows, labels, config = (files_open.enter_context(_output(str(p), binary=False)) for p in paths)
        for block in table.blocks(_BLOCK):  # (B, D) float32 → "v1\tv2…\tvD" lines
            lines = [line[1:].replace(b" ", b"\t") for line in format_rows(block, digits)]
            rows.write(b"\n".join(lines) + b"\n")
        labels.write("".join(t + "\n" for t in tokens).encode("utf-8"))
        config.write(_projector_config(_tensor_name(table), table.n, table.dim).encode("utf-8"))
    return [str(p) for p in paths]


def _tensor_name(table: EmbeddingTable) -> str:
    """The name the projector lists the table by: its file's stem, else its source."""
    name = Path(table.origin).name.removesuffix(".safetensors")
    return name if name and not name.startswith("<") and table.origin not in ("-", "table") else table.source


def _projector_config(name: str, rows: int, dim: int) -> str:
    """projector_config.pbtxt (a ``ProjectorConfig`` in protobuf's text format) naming the two TSV files."""
    quoted = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return (
        "embeddings {\n"
        f'  tensor_name: "{quoted}"\n'
        f"  tensor_shape: {rows}\n  tensor_shape: {dim}\n"
        f'  tensor_path: "{PROJECTOR_TENSORS}"\n'
        f'  metadata_path: "{PROJECTOR_METADATA}"\n'
        "}\n"
    )


def _write_text(table: EmbeddingTable, tokens: list[str], f: BinaryIO, *, header: bool, digits: int) -> None:
    if header:
        f.write(f"{table.n} {table.dim}\n".encode())
    start = 0
    for block in table.blocks(_BLOCK):  # (B, D) float32
        names = [t.encode("utf-8") for t in tokens[start : start + len(block)]]
        f.write(b"\n".join(map(operator.add, names, format_rows(block, digits))))  # "token v1 … vD" lines
        f.write(b"\n")
        start += len(block)


def format_rows(block: Any, digits: int = DEFAULT_DIGITS) -> list[bytes]:
    """Each row of ``block`` (B, D) float32 as b" v1 … vD": every value as ``"%.{digits}g" % v`` prints it.

    Python formats about 4M values/s; this builds the characters with numpy, a column of characters
    at a time, then drops the unused places. Blocks holding NaN/Inf, and more than 9 digits (beyond
    what float64 arithmetic below holds exactly), go through Python's formatting.
    """
    import numpy as np

    if digits > 9 or not np.isfinite(block).all():
        row_format = f" %.{digits}g" * block.shape[1]
        return [(row_format % tuple(row)).encode() for row in block.tolist()]
    rows, dim = block.shape
    slots = _format_values(block.reshape(-1), digits)  # (S, B·D) characters, 0 where unused
    text = np.empty((rows, dim * len(slots) + 1), np.uint8)  # (B, D·S + 1): the values, then "\n"
    text[:, :-1].reshape(rows, dim, len(slots))[...] = slots.reshape(len(slots), rows, dim).transpose(1, 2, 0)
    text[:, -1] = ord("\n")
    return text.tobytes().translate(None, b"\0").split(b"\n")[:-1]


def _format_values(v: Any, p: int) -> Any:
    """The characters of ``" %.{p}g" % x`` for each x of ``v`` (M,) finite float32, as an (S, M) uint8
    array with S = p + 12 places a value, 0 in a place it does not use.

    %g writes the p significant digits d₀…d₍p₋₁₎ of x = ±n·10^(X−p+1) (10^(p−1) ≤ n < 10^p) without
    trailing zeros, in positional notation ("123.45", "0.00012345") when −4 ≤ X < p, else as "1.2345e-07".
    The places: " ", "-", "0", "." (for X < 0), three zeros (X ≤ −2, −3, −4), p + 1 places for the digits and
    the point (after d_X, or after d₀ in e-notation), then "e", the exponent's sign and its two digits.
    """
    import numpy as np

    zero_char, point, sign = ord("0"), ord("."), ord("-")
    lo, hi = 10 ** (p - 1), 10**p
    magnitude = np.abs(v)  # (M,) float32
    zero = magnitude == 0
    magnitude[zero] = 1
    x = np.floor(np.log10(magnitude)).astype(np.int64)  # the decimal exponent X, up to one off
    a = magnitude.astype(np.float64)
    for _ in range(3):
        y = a * _powers_of_ten()[p - 1 - x + _POWER_SPAN]  # |v|·10^(p−1−X), relative error ≤ 2⁻⁵²
        up, down = y >= hi, y < lo
        if not (up.any() or down.any()):
            break
        x += up
        x -= down
    else:
        raise AssertionError("the decimal exponent did not settle")
    n = np.rint(y)
    # y is within 2.2e-7 of the exact product (y < 10⁹): its rounding is certain unless y is that close
    # to a half; those few values take their digits from Python's correctly rounded formatting
    y -= n
    unsure = np.flatnonzero(np.abs(y, out=y) > 0.5 - 1e-6)  # never a zero: its y is 10^(p−1) exactly
    carry = n >= hi  # 99999999.7 → 10⁸ and one more in the exponent
    n[carry] = lo
    x += carry
    n = n.astype(np.uint32)
    x = x.astype(np.int8)  # float32: |X| ≤ 45
    for i in unsure:
        mantissa, exponent = (f"%.{p - 1}e" % float(a[i])).split("e")
        n[i], x[i] = int(mantissa.replace(".", "")), int(exponent)
    n[zero], x[zero] = 0, 0

    m = len(v)
    d = np.empty((p + 1, m), np.uint8)  # (p + 1, M): the characters of d₀…d₍p₋₁₎, then an unused place
    d[p] = 0
    q = n
    for k in range(p - 1, -1, -1):
        q, r = q // np.uint32(10), q
        d[k] = r - q * np.uint32(10)
    shown = np.ones(m, np.int8)  # significant digits without trailing zeros (at least one)
    for k in range(1, p):
        np.maximum(shown, (d[k] != 0) * np.int8(k + 1), out=shown)
    d[:p] += np.uint8(zero_char)
    e_form = (x < -4) | (x >= p)
    small = ~e_form & (x < 0)  # 0.000ddd
    whole = ~e_form & (x >= 0)  # ddd.ddd: the integer digits are shown even when zero
    before = np.where(e_form, np.int8(0), np.where(whole, x, np.int8(p)))  # the point follows d_before
    at_point = ((e_form | whole) & (shown > before + 1)) * np.uint8(point)
    np.maximum(shown, np.where(whole, x + np.int8(1), np.int8(0)), out=shown)

    out = np.empty((p + 12, m), np.uint8)  # (S, M)
    out[0] = ord(" ")
    np.multiply(np.signbit(v), np.uint8(sign), out=out[1])
    np.multiply(small, np.uint8(zero_char), out=out[2])
    np.multiply(small, np.uint8(point), out=out[3])
    for j in (1, 2, 3):
        np.multiply(small & (x < -j), np.uint8(zero_char), out=out[3 + j])
    for k in range(p):  # d: the shown digits' characters, 0 for the rest
        np.multiply(d[k], shown > k, out=d[k])
    for j in range(p + 1):  # place j holds digit j before the point, the point, or digit j − 1 after it
        after = np.where(before == j - 1, at_point, d[j - 1]) if j else d[0]
        out[7 + j] = np.where(before >= j, d[j], after)
    e = 8 + p
    exponent = np.abs(x).view(np.uint8)
    np.multiply(e_form, np.uint8(ord("e")), out=out[e])
    np.multiply(e_form, np.where(x < 0, np.uint8(sign), np.uint8(ord("+"))), out=out[e + 1])
    np.multiply(e_form, exponent // np.uint8(10) + np.uint8(zero_char), out=out[e + 2])
    np.multiply(e_form, exponent % np.uint8(10) + np.uint8(zero_char), out=out[e + 3])
    return out


_POWER_SPAN = 64  # float32's decimal exponents lie in [−45, 38]


@cache
def _powers_of_ten() -> Any:
    """10^k for k in [−64, 64] as float64, each correctly rounded (parsed, not multiplied)."""
    import numpy as np

    return np.array([float(f"1e{k}") for k in range(-_POWER_SPAN, _POWER_SPAN + 1)])


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
    from embtool.core.atomic import atomic_path

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
