"""What ``table.py`` stands on (its only user): the safetensors container read and written without
torch (header checked, one tensor memory-mapped or viewed, data written block by block), bfloat16 in
numpy, rows given as numpy or torch, a table's pending elementwise map, and output to stdout or an
atomically replaced file.

Layout: u64 little-endian header size n, n bytes of JSON (``__metadata__``: string → string; per
tensor ``dtype``, ``shape``, ``data_offsets`` relative to the data), then the raw little-endian data.
safetensors' numpy API cannot hold bfloat16 and copies what it reads, hence this module; its checks
are the library's: header size, JSON, offsets inside the data, the data's exact length.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from embtool.core.atomic import atomic_path
from embtool.core.errors import BadInput, UsageError, WorkFailure

STDIO = "-"
DTYPE_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}  # storage types a table may have
_NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}  # bfloat16 read as its bit patterns
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
             "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip
CODE_NAMES = {"F64": "float64", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
              "BOOL": "bool", **{c: n for n, c in DTYPE_CODES.items()}}  # fmt: skip
_MAX_HEADER = 100_000_000  # safetensors' own limit


class Unreadable(Exception):
    """Not a safetensors file; the message says why (the caller names the file)."""


@dataclass(frozen=True)
class Affine:
    """An elementwise map x ↦ (x − shift)·scale + add, computed in float32: Eq. 1, Eq. 4 and scaling.

    A table may carry one, pending: ``save`` then streams it block by block from the (memory-mapped)
    input, and ``vectors`` computes it on first access, both with ``__call__``, so that the two agree
    bit for bit.
    """

    scale: float
    shift: float = 0.0
    add: float = 0.0

    def __call__(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The map of ``rows`` (B, D), in float32, before rounding to the table's dtype."""
        x = rows.astype(np.float32) if out is None else out  # (B, D)
        if out is not None:
            np.copyto(x, rows)
        with np.errstate(all="ignore"):  # an overflow is found in the range and reported by row
            if self.shift:
                x -= np.float32(self.shift)
            x *= np.float32(self.scale)
            if self.add:  # skipped when 0: −0.0 + 0.0 would be +0.0, and a plain scaling keeps the sign
                x += np.float32(self.add)
        return x


# ----------------------------------------------------------------------------- bfloat16


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 values → bfloat16 bit patterns (uint16), rounded to nearest even; NaN → 0x7FC0.

    The scalar rule of torch's ``c10::BFloat16``: add 0x7FFF plus the lowest kept bit, keep the high half.
    """
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bits = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    bits[np.isnan(x)] = 0x7FC0
    return bits


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) → the same values as float32, exactly (the high half)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float32 ``x`` in place to the nearest values of ``dtype``; returns ``x``."""
    if dtype == "float16":
        with np.errstate(over="ignore"):  # beyond float16's range is ±inf, reported by row
            np.copyto(x, x.astype(np.float16))
    elif dtype == "bfloat16":
        nan = np.isnan(x)
        u = x.view(np.uint32)
        u += 0x7FFF + ((u >> 16) & 1)
        u &= 0xFFFF0000
        x[nan] = np.nan  # bit pattern 0x7FC00000, as bf16_bits gives
    return x


def hold(rows: np.ndarray, dtype: str) -> np.ndarray:
    """``rows`` as a table of storage type ``dtype`` holds them: float32 or float16, C-contiguous,
    bfloat16 widened to float32 (from bit patterns exactly, from floats rounded)."""
    if dtype == "bfloat16":
        if rows.dtype == np.uint16:
            return from_bf16_bits(rows)
        return round_to(np.array(rows, dtype=np.float32), dtype)
    with np.errstate(over="ignore"):  # beyond float16's range is ±inf, reported by row
        return np.ascontiguousarray(rows, dtype=np.dtype(dtype).newbyteorder("<"))


def stored(block: np.ndarray, dtype: str) -> np.ndarray:
    """Float values (B, D) as their ``dtype`` storage (rounded if they are not such values yet)."""
    if dtype == "bfloat16":
        return bf16_bits(block)
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(block, dtype=np.dtype(dtype).newbyteorder("<"))


def as_array(vectors: Any, dtype: str | None, origin: str) -> tuple[np.ndarray, str]:
    """``vectors`` as a numpy array and the storage dtype's name (not checked yet)."""
    if type(vectors).__module__.split(".")[0] == "torch":  # converted without importing torch here
        t = vectors.detach().cpu()
        if str(t.dtype) != "torch.bfloat16":
            vectors = t.numpy()
        else:  # numpy has no bfloat16: its bit patterns
            import torch

            bits = t.contiguous().view(torch.int16).numpy().view(np.uint16)
            if dtype in (None, "bfloat16"):
                return bits, "bfloat16"
            vectors = from_bf16_bits(bits)
    if not isinstance(vectors, np.ndarray):
        raise BadInput(
            f"{origin}: vectors must be a numpy array (or a torch tensor), got {type(vectors).__name__}"
        )
    if dtype is None:
        return vectors, vectors.dtype.name
    if vectors.dtype.kind != "f" and not (dtype == "bfloat16" and vectors.dtype == np.uint16):
        return vectors, vectors.dtype.name  # not numbers this table can hold: _check_layout says so
    return vectors, dtype


# ----------------------------------------------------------------------------- reading


@dataclass
class Header:
    meta: dict[str, str]
    tensors: dict[str, dict[str, Any]]
    size: int  # bytes of the header JSON (the data starts at 8 + size)
    data_len: int  # bytes of data the tensors span


@dataclass
class Tensor:
    """One tensor's description, and its rows where its type is one a table may have."""

    meta: dict[str, str]
    code: str
    shape: tuple[int, ...]
    rows: np.ndarray | None  # None: another dtype (the caller rejects it by name)


Check = Callable[[dict[str, str], list[str]], None]  # the caller's checks of the metadata and tensor names


def parse_header(raw: bytes) -> Header:
    """Header of the JSON bytes ``raw``; Unreadable if it is not safetensors' layout."""
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise Unreadable(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise Unreadable("header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise Unreadable("__metadata__ must map strings to strings")
    data_len = 0
    for name, info in header.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        shape = info.get("shape") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)
                and isinstance(shape, list) and all(_count(s) for s in shape)):  # fmt: skip
            raise Unreadable(f"tensor {name!r}: needs dtype, shape and data_offsets")
        begin, end = offsets
        size = _ITEMSIZE.get(info.get("dtype"))  # type: ignore[arg-type]
        if size is None:
            raise Unreadable(f"tensor {name!r}: unknown dtype {info.get('dtype')!r}")
        if end - begin != math.prod(shape) * size:
            raise Unreadable(f"tensor {name!r}: data_offsets do not match its shape and dtype")
        data_len = max(data_len, end)
    return Header(meta, header, len(raw), data_len)


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _header_size(head: bytes, total: int | None) -> int:
    if len(head) < 8:
        raise Unreadable("too short for a header")
    (n,) = struct.unpack("<Q", head[:8])
    if n > _MAX_HEADER or (total is not None and 8 + n > total):
        raise Unreadable(f"header size {n} is past the end of the data")
    return int(n)


def _select(header: Header, name: str, total: int | None) -> tuple[str, tuple[int, ...], int]:
    """(dtype code, shape, data offset) of tensor ``name``, which the caller's check has found."""
    if total is not None and 8 + header.size + header.data_len != total:
        raise Unreadable(
            f"the data is {total - 8 - header.size} bytes, the header describes {header.data_len}"
        )
    info = header.tensors[name]
    return info["dtype"], tuple(info["shape"]), info["data_offsets"][0]


def read_file_header(path: Path) -> Header:
    with open(path, "rb") as f:
        total = path.stat().st_size
        n = _header_size(f.read(8), total)
        return parse_header(f.read(n))


def read_shape(path: Path, name: str) -> tuple[tuple[int, ...] | None, dict[str, str]]:
    """Tensor ``name``'s shape (None: the file has no such tensor) and the file's metadata, from the
    header alone (the data is not read: a run's widths are checked from a few kB); Unreadable when
    the header is broken."""
    header = read_file_header(path)
    info = header.tensors.get(name)
    return (tuple(info["shape"]) if info is not None else None), header.meta


def read_file(path: Path, name: str, check: Check) -> Tensor:
    """Tensor ``name`` of the file, memory-mapped copy-on-write: pages are read as they are used and
    changes stay in memory; a file → file transform never copies its input."""
    header = read_file_header(path)
    check(header.meta, list(header.tensors))
    code, shape, begin = _select(header, name, path.stat().st_size)
    if code not in _NUMPY:
        return Tensor(header.meta, code, shape, None)
    dtype = _NUMPY[code]
    if math.prod(shape) == 0:
        return Tensor(header.meta, code, shape, np.zeros(shape, dtype))
    rows = np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="c", offset=8 + header.size + begin,
                     shape=shape)  # fmt: skip
    return Tensor(header.meta, code, shape, rows.view(np.ndarray))


def read_bytes(data: bytes | bytearray | memoryview, name: str, check: Check) -> Tensor:
    """Tensor ``name`` of a whole file's bytes, as a view of them (read-only for ``bytes``)."""
    n = _header_size(bytes(data[:8]), len(data))
    header = parse_header(bytes(data[8 : 8 + n]))
    check(header.meta, list(header.tensors))
    return _view(header, data, 8 + n, name, len(data))


def read_stream(stream: BinaryIO, name: str, check: Check) -> Tensor:
    """Tensor ``name`` of a file arriving on ``stream`` (stdin): the data is read into one buffer of
    the size the header gives, which the rows then view."""
    widen_pipe(stream)
    n = _header_size(_read_bytes(stream, 8), None)
    raw = _read_bytes(stream, n)
    if len(raw) < n:
        raise Unreadable(f"the input ends inside the {n}-byte header")
    header = parse_header(raw)
    check(header.meta, list(header.tensors))
    data = np.empty(header.data_len, np.uint8)
    got = _read_into(stream, data.data)
    if got < header.data_len:
        raise Unreadable(f"the input ends after {got} of {header.data_len} bytes of data")
    if stream.read(1):
        raise Unreadable("the input goes on after the tensors' data")
    return _view(header, data, 0, name, None)


def _view(header: Header, data: Any, start: int, name: str, total: int | None) -> Tensor:
    code, shape, begin = _select(header, name, total)
    if code not in _NUMPY:
        return Tensor(header.meta, code, shape, None)
    dtype = np.dtype(_NUMPY[code]).newbyteorder("<")
    rows = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=start + begin).reshape(shape)
    return Tensor(header.meta, code, shape, rows)


def _read_bytes(stream: BinaryIO, n: int) -> bytes:
    """``n`` bytes of ``stream``, or fewer where it ends."""
    parts, got = [], 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _read_into(stream: Any, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``stream`` (a pipe gives a little at a time); the bytes read."""
    got = 0
    while got < len(buffer):
        k = stream.readinto(buffer[got:])
        if not k:
            break
        got += k
    return got


def first_not_utf8(texts: list[str]) -> int | None:
    """The index of the first text UTF-8 cannot encode (a lone surrogate), or None: the header is UTF-8."""
    try:
        "".join(texts).encode("utf-8")  # one pass in C for the usual case
        return None
    except UnicodeEncodeError:
        return next(i for i, t in enumerate(texts) if any("\ud800" <= c <= "\udfff" for c in t))


# ----------------------------------------------------------------------------- writing


def emit(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Run ``write`` on stdout (``-``, never a terminal) or on an atomically replaced file."""
    name = str(path)
    if name == STDIO:
        out = sys.stdout.buffer
        if out.isatty():
            raise UsageError("refusing to write a binary table to a terminal: use -o FILE or redirect stdout")
        widen_pipe(out)
        try:
            write(out)
            out.flush()
        except BrokenPipeError:
            # the reader went away (e.g. `| head`); nothing useful left to do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise WorkFailure("stdout closed before the table was written") from None
        return
    with atomic_path(name, table=True) as tmp, open(tmp, "wb") as f:
        write(f)


def widen_pipe(stream: Any) -> None:
    """Let a pipe on ``stream`` hold 1 MiB (Linux's most without privileges): with the default 64 KiB
    a 60 MB table crosses each `|` in ~900 round trips between the two processes."""
    import stat

    try:
        import fcntl
    except ImportError:  # not a POSIX system
        return
    size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    try:
        if size is not None and stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode):
            fcntl.fcntl(stream.fileno(), size, 1 << 20)
    except (OSError, ValueError):  # not a real file, or a lower limit: the default size then
        pass


def write(out: BinaryIO, metadata: dict[str, str], code: str, shape: tuple[int, ...], name: str,
          blocks: Iterable[np.ndarray]) -> None:  # fmt: skip
    """The file: header (JSON padded with spaces to a multiple of 8 bytes), then ``blocks`` of
    consecutive rows in storage form, as they come."""
    nbytes = math.prod(shape) * _ITEMSIZE[code]
    header = {
        "__metadata__": metadata,
        name: {"dtype": code, "shape": list(shape), "data_offsets": [0, nbytes]},
    }
    raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    out.write(struct.pack("<Q", len(raw)))
    out.write(raw)
    for block in blocks:
        out.write(block.reshape(-1).view(np.uint8).data)
