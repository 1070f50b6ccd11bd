"""EmbeddingTable: the one data type every subcommand reads and writes (DESIGN §2).

A table is a safetensors file with one tensor ``embeddings`` of shape (N, D) and string
metadata: ``embtool.format``, ``embtool.tokens`` (JSON list, row i is token i),
``embtool.source``, ``embtool.text.tokenizer``, ``embtool.history`` (JSON list of steps) and,
optionally, ``embtool.missing`` (JSON list of row indices filled by a fallback).
Only this module knows those names.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from embtool._version import __version__
from embtool.atomic import atomic_path
from embtool.errors import BadInput, UsageError, WorkFailure

FORMAT_VERSION = "1"
TENSOR_NAME = "embeddings"
KEY_FORMAT = "embtool.format"
KEY_TOKENS = "embtool.tokens"
KEY_SOURCE = "embtool.source"
KEY_TOKENIZER = "embtool.text.tokenizer"
KEY_HISTORY = "embtool.history"
KEY_MISSING = "embtool.missing"
_KNOWN_KEYS = {KEY_FORMAT, KEY_TOKENS, KEY_SOURCE, KEY_TOKENIZER, KEY_HISTORY, KEY_MISSING}
# Allowed element types, by their name in torch and numpy, with their safetensors codes. torch is
# imported only where a tensor is made: `extract` writes its numpy rows without it (start-up time).
DTYPE_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
STDIO = "-"

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass
class EmbeddingTable:
    """Rows of token vectors with their provenance; validated on construction.

    ``vectors`` is (N, D); ``tokens[i]`` names row i. ``allow_nonfinite`` lets NaN/Inf through
    (``--allow-nonfinite``); by default they are an error that counts them.
    """

    vectors: torch.Tensor  # (N, D)
    tokens: list[str]
    source: str = "unknown"
    tokenizer: str = "whitespace"
    history: list[dict[str, Any]] = field(default_factory=list)
    missing: list[int] | None = None  # rows filled by a fallback, not found in the source
    extra: dict[str, str] = field(default_factory=dict)  # other metadata, kept as it came
    allow_nonfinite: bool = field(default=False, repr=False, compare=False)
    origin: str = field(default="table", repr=False, compare=False)  # file name for messages
    _range: tuple[float, float] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        import torch

        v = self.vectors
        if not isinstance(v, torch.Tensor):
            raise BadInput(f"{self.origin}: vectors must be a torch.Tensor, got {type(v).__name__}")
        _check_layout(tuple(v.shape), str(v.dtype).removeprefix("torch."), self.tokens, self.missing, self.origin)
        if not self.allow_nonfinite and v.numel():
            self._range = self.value_range()
            if not (math.isfinite(self._range[0]) and math.isfinite(self._range[1])):
                _raise_nonfinite(v.detach().float().numpy(), self.tokens, self.origin)

    def value_range(self) -> tuple[float, float]:
        """(min, max) of all values; computed once (validation needs it too)."""
        if self._range is None:
            if self.vectors.numel() == 0:
                raise BadInput(f"{self.origin}: the table is empty")
            import torch

            lo, hi = torch.aminmax(self.vectors)  # NaN propagates into both
            self._range = (float(lo), float(hi))
        return self._range

    @property
    def n(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def derive(self, vectors: torch.Tensor, op: str, args: dict[str, Any], **changes: Any) -> EmbeddingTable:
        """A new table with ``vectors`` and one more history entry (op, args, version)."""
        entry = history_entry(op, args)
        history = [*self.history, entry]
        if vectors is not self.vectors:
            return dataclasses.replace(self, vectors=vectors, history=history, **changes)
        # the same tensor has passed the finiteness check already: don't scan it again
        table = dataclasses.replace(self, history=history, allow_nonfinite=True, **changes)
        table.allow_nonfinite, table._range = self.allow_nonfinite, self._range
        return table

    def metadata(self) -> dict[str, str]:
        """The safetensors header metadata of this table (DESIGN §2)."""
        return table_metadata(self.tokens, self.source, self.tokenizer, self.history, self.missing, self.extra)


def table_metadata(
    tokens: list[str],
    source: str,
    tokenizer: str,
    history: list[dict[str, Any]],
    missing: list[int] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The safetensors header metadata of a table with these fields (DESIGN §2)."""
    meta = dict(extra or {})
    meta.update(
        {
            KEY_FORMAT: FORMAT_VERSION,
            KEY_TOKENS: json.dumps(tokens, ensure_ascii=False),
            KEY_SOURCE: source,
            KEY_TOKENIZER: tokenizer,
            KEY_HISTORY: json.dumps(history, ensure_ascii=False),
        }
    )
    if missing is not None:
        meta[KEY_MISSING] = json.dumps(missing)
    return meta


def _check_layout(
    shape: tuple[int, ...], dtype: str, tokens: list[str], missing: list[int] | None, origin: str
) -> None:
    """Shape, element type, one unique token per row and in-range missing rows, or BadInput."""
    if len(shape) != 2:
        raise BadInput(f"{origin}: tensor '{TENSOR_NAME}' must be 2-D (N, D), got shape {shape}")
    if dtype not in DTYPE_CODES:
        raise BadInput(
            f"{origin}: tensor '{TENSOR_NAME}' has dtype {dtype}; allowed: float32, float16, bfloat16"
        )
    if len(tokens) != shape[0]:
        raise BadInput(f"{origin}: {len(tokens)} tokens for {shape[0]} rows; the token list must name every row")
    if len(set(tokens)) != len(tokens):
        seen: dict[str, int] = {}
        for i, tok in enumerate(tokens):
            if tok in seen:
                raise BadInput(f"{origin}: duplicate token {tok!r} at rows {seen[tok]} and {i}")
            seen[tok] = i
    if missing is not None:
        bad = [i for i in missing if not 0 <= i < shape[0]]
        if bad:
            raise BadInput(f"{origin}: missing-row index {bad[0]} is out of range")


def history_entry(op: str, args: dict[str, Any]) -> dict[str, Any]:
    """One provenance step: the operation, its arguments (seeds included) and the version."""
    return {"op": op, "args": args, "embtool": __version__}


def _raise_nonfinite(vectors: np.ndarray, tokens: list[str], origin: str) -> None:
    """Raise BadInput counting NaN/Inf values and naming the first affected row's token."""
    import numpy as np

    bad = ~np.isfinite(vectors)  # (N, D)
    count = int(bad.sum())
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    raise BadInput(
        f"{origin}: {count} non-finite value(s) (NaN/Inf); first in row {row} "
        f"(token {tokens[row]!r}); pass --allow-nonfinite to accept them"
    )


# ----------------------------------------------------------------------------- reading


def load(path: str | os.PathLike[str], *, allow_nonfinite: bool = False) -> EmbeddingTable:
    """Read a table from a file, or from stdin when ``path`` is ``-``."""
    name = str(path)
    if name == STDIO:
        stdin = sys.stdin.buffer
        if stdin.isatty():
            raise UsageError("no table on stdin: give a TABLE path or pipe a table in")
        return loads(stdin.read(), origin="<stdin>", allow_nonfinite=allow_nonfinite)
    p = Path(name)
    if not p.exists():
        raise BadInput(f"{name}: no such file")
    if p.is_dir():
        raise BadInput(f"{name}: is a folder, not a table file")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(name, framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
            _check_header(meta, keys, name)
            vectors = f.get_tensor(TENSOR_NAME)
    except SafetensorError as e:
        raise BadInput(f"{name}: not a readable safetensors file ({e})") from None
    except (OSError, ValueError) as e:  # e.g. a zero-length file
        raise BadInput(f"{name}: not a readable safetensors file ({e})") from None
    return _from_parts(vectors, meta, name, allow_nonfinite)


def loads(data: bytes, *, origin: str = "<bytes>", allow_nonfinite: bool = False) -> EmbeddingTable:
    """Read a table from the bytes of a safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError) as e:
        raise BadInput(f"{origin}: not a readable safetensors table ({e})") from None
    meta = _header_metadata(data)
    _check_header(meta, list(tensors), origin)
    return _from_parts(tensors[TENSOR_NAME], meta, origin, allow_nonfinite)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The header metadata of a table file, without reading its tensor."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise BadInput(f"{path}: not a readable safetensors file ({e})") from None


def _header_metadata(data: bytes) -> dict[str, str]:
    # safetensors layout: u64 little-endian header length, then a JSON header whose
    # "__metadata__" holds the string map. safetensors.torch.load has validated it already.
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    return dict(header.get("__metadata__") or {})


def _check_header(meta: dict[str, str], keys: list[str], origin: str) -> None:
    version = meta.get(KEY_FORMAT)
    if version is None:
        raise BadInput(
            f"{origin}: not an embtool table (no '{KEY_FORMAT}' metadata); "
            "use `embtool extract` to make one from a checkpoint or vector file"
        )
    if version != FORMAT_VERSION:
        raise BadInput(
            f"{origin}: table format version {version!r} is not supported "
            f"(this embtool {__version__} reads version {FORMAT_VERSION})"
        )
    if TENSOR_NAME not in keys:
        raise BadInput(
            f"{origin}: no tensor named '{TENSOR_NAME}' (found: {', '.join(keys) or 'none'})"
        )
    if KEY_TOKENS not in meta:
        raise BadInput(f"{origin}: metadata '{KEY_TOKENS}' is missing")


def _json_field(meta: dict[str, str], key: str, origin: str, kind: type) -> Any:
    try:
        value = json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise BadInput(f"{origin}: metadata '{key}' is not valid JSON ({e})") from None
    if not isinstance(value, kind):
        raise BadInput(f"{origin}: metadata '{key}' must be a JSON {kind.__name__}")
    return value


def _from_parts(
    vectors: torch.Tensor, meta: dict[str, str], origin: str, allow_nonfinite: bool
) -> EmbeddingTable:
    tokens = _json_field(meta, KEY_TOKENS, origin, list)
    if not all(isinstance(t, str) for t in tokens):
        raise BadInput(f"{origin}: metadata '{KEY_TOKENS}' must be a list of strings")
    history = _json_field(meta, KEY_HISTORY, origin, list) if KEY_HISTORY in meta else []
    missing = _json_field(meta, KEY_MISSING, origin, list) if KEY_MISSING in meta else None
    extra = {k: v for k, v in meta.items() if k not in _KNOWN_KEYS}
    return EmbeddingTable(
        vectors=vectors,
        tokens=tokens,
        source=meta.get(KEY_SOURCE, "unknown"),
        tokenizer=meta.get(KEY_TOKENIZER, "whitespace"),
        history=history,
        missing=missing,
        extra=extra,
        allow_nonfinite=allow_nonfinite,
        origin=origin,
    )


# ----------------------------------------------------------------------------- writing


RowMap = Callable[["torch.Tensor"], "torch.Tensor"]  # a block of rows (B, D) → the rows to write (B, D)
_BLOCK_BYTES = 16 << 20  # rows are streamed in blocks of about this size


def save(table: EmbeddingTable, path: str | os.PathLike[str], map_rows: RowMap | None = None) -> None:
    """Write ``table`` to a file atomically, or to stdout when ``path`` is ``-``.

    A table is never written to a terminal. A file is written to a temporary name in the
    same folder and renamed into place, so an interrupted write leaves no half-written table
    and never clobbers the old file. ``map_rows``, when given, is applied to each block of rows
    as it is written (to a reused buffer, which it may change in place): a transform of the whole
    table then streams from the memory-mapped input to the output without a second (N, D) tensor.
    """
    _emit(path, lambda out: _write_streamed(table, out, map_rows))


def save_array(
    vectors: np.ndarray,
    path: str | os.PathLike[str],
    *,
    tokens: list[str],
    source: str,
    tokenizer: str,
    history: list[dict[str, Any]],
    missing: list[int] | None = None,
    origin: str = "table",
) -> None:
    """Write a table whose rows are a numpy array (N, D), checked as ``EmbeddingTable`` checks them.

    The bytes are those ``save`` writes for the same table, but torch is never imported: ``extract``
    answers in a fraction of a second this way.
    """
    import numpy as np

    _check_layout(vectors.shape, vectors.dtype.name, tokens, missing, origin)
    if vectors.size and not (np.isfinite(vectors.min()) and np.isfinite(vectors.max())):
        _raise_nonfinite(vectors, tokens, origin)
    meta = table_metadata(tokens, source, tokenizer, history, missing)
    rows = np.ascontiguousarray(vectors)
    step = max(1, _BLOCK_BYTES // max(1, rows.strides[0]))
    blocks = (rows[i : i + step].data.cast("B") for i in range(0, max(len(rows), 1), step))
    _emit(path, lambda out: _write_safetensors(out, meta, DTYPE_CODES[rows.dtype.name], rows.shape, blocks))


def _emit(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Run ``write`` on stdout (``-``, never a terminal) or on an atomically replaced file."""
    name = str(path)
    if name == STDIO:
        out = sys.stdout.buffer
        if out.isatty():
            raise UsageError(
                "refusing to write a binary table to a terminal: use -o FILE or redirect stdout"
            )
        try:
            write(out)
            out.flush()
        except BrokenPipeError:
            # the reader went away (e.g. `| head`); nothing useful left to do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise WorkFailure("stdout closed before the table was written") from None
        return
    with atomic_path(name) as tmp, open(tmp, "wb") as f:
        write(f)


def _write_safetensors(
    out: BinaryIO, metadata: dict[str, str], dtype: str, shape: tuple[int, ...], blocks: Iterable[Any]
) -> None:
    # The safetensors layout: u64 little-endian header size, a JSON header (padded with spaces to
    # a multiple of 8 bytes) naming dtype, shape and byte offsets, then the raw little-endian data,
    # here written block by block (``blocks``: buffers of consecutive rows).
    nbytes = math.prod(shape) * (2 if dtype in ("F16", "BF16") else 4)
    header = {
        "__metadata__": metadata,
        TENSOR_NAME: {"dtype": dtype, "shape": list(shape), "data_offsets": [0, nbytes]},
    }
    raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    out.write(struct.pack("<Q", len(raw)))
    out.write(raw)
    for block in blocks:
        out.write(block)


def _write_streamed(table: EmbeddingTable, out: BinaryIO, map_rows: RowMap | None) -> None:
    import torch

    v = table.vectors.contiguous()  # (N, D)
    rows = max(1, _BLOCK_BYTES // max(1, table.dim * v.element_size()))
    buffer = torch.empty(min(rows, max(table.n, 1)), table.dim, dtype=v.dtype) if map_rows else None

    def blocks() -> Iterator[memoryview]:
        for block in v.split(rows):  # (B, D) views
            if map_rows is not None and buffer is not None:
                part = buffer[: block.shape[0]]
                part.copy_(block)
                block = map_rows(part).to(v.dtype).contiguous()
            yield block.view(torch.uint8).numpy().data

    dtype = DTYPE_CODES[str(v.dtype).removeprefix("torch.")]
    _write_safetensors(out, table.metadata(), dtype, tuple(v.shape), blocks())


def dumps(table: EmbeddingTable) -> bytes:
    """The bytes of the safetensors file for ``table``."""
    import io

    buf = io.BytesIO()
    _write_streamed(table, buf, None)
    return buf.getvalue()
