"""EmbeddingTable: the one data type every subcommand reads and writes (DESIGN §2).

A table is a safetensors file with one tensor ``embeddings`` of shape (N, D) and string
metadata: ``embtool.format``, ``embtool.tokens`` (JSON list, row i is token i),
``embtool.source``, ``embtool.tokenizer``, ``embtool.history`` (JSON list of steps) and,
optionally, ``embtool.missing`` (JSON list of row indices filled by a fallback).
Only this module knows those names. numpy and safetensors' layout only: no torch.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from embtool._version import __version__
from embtool.core import tablefile
from embtool.core.atomic import note_input
from embtool.core.errors import BadInput, NonFinite, UsageError
from embtool.core.tablefile import DTYPE_CODES, STDIO, Affine, Unreadable
from embtool.tables.interop import TableInterop

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = "1"
TENSOR_NAME = "embeddings"
KEY_FORMAT = "embtool.format"
KEY_TOKENS = "embtool.tokens"
KEY_SOURCE = "embtool.source"
KEY_TOKENIZER = "embtool.tokenizer"
KEY_HISTORY = "embtool.history"
KEY_MISSING = "embtool.missing"
_KNOWN_KEYS = {KEY_FORMAT, KEY_TOKENS, KEY_SOURCE, KEY_TOKENIZER, KEY_HISTORY, KEY_MISSING}
# a pending map is computed and written in blocks of rows of about this size (they stay in cache)
_BLOCK_BYTES = 1 << 20
__all__ = ["Affine", "EmbeddingTable", "dumps", "history_entry", "load", "loads", "read_metadata", "save"]


class EmbeddingTable(TableInterop):
    """Rows of token vectors with their provenance; validated on construction.

    ``vectors`` is a numpy array (N, D); ``tokens[i]`` names row i; ``dtype`` is the storage type,
    "float32", "float16" or "bfloat16". numpy has no bfloat16: such a table holds its values widened
    exactly to float32 and is written back as bfloat16. ``vectors`` may be given as a float array
    (rounded to ``dtype`` when that is given), as bfloat16 bit patterns (uint16 with
    ``dtype="bfloat16"``) or as a torch tensor. ``allow_nonfinite`` lets NaN/Inf through
    (``--allow-nonfinite``); by default they are an error that counts them. ``for_vocab`` and
    ``to_embedding`` (from ``interop``) give the rows in another framework's vocabulary order.
    """

    def __init__(
        self,
        vectors: Any,  # (N, D)
        tokens: list[str],
        source: str = "unknown",
        tokenizer: str = "whitespace",
        history: list[dict[str, Any]] | None = None,
        missing: list[int] | None = None,  # rows filled by a fallback, not found in the source
        extra: dict[str, str] | None = None,  # other metadata, kept as it came
        allow_nonfinite: bool = False,
        origin: str = "table",  # file name for messages
        dtype: str | None = None,  # storage type; default: the array's
    ) -> None:
        rows, dtype = tablefile.as_array(vectors, dtype, origin)
        _check_layout(rows.shape, dtype, tokens, missing, origin)
        self._rows = tablefile.hold(rows, dtype)  # (N, D) float32 or float16
        self._map: Affine | None = None  # pending, see Affine
        self._range: tuple[float, float] | None = None
        self.dtype = dtype
        self.tokens = tokens
        self.source = source
        self.tokenizer = tokenizer
        self.history = list(history or [])
        self.missing = [int(i) for i in missing] if missing is not None else None
        self.extra = dict(extra or {})
        self.allow_nonfinite = allow_nonfinite
        self.origin = origin
        if not allow_nonfinite and self._rows.size:
            self._check_finite()

    @property
    def vectors(self) -> np.ndarray:
        """The rows (N, D): float32, or float16 for a float16 table (a pending map is computed now)."""
        if self._map is not None:
            x = self._map(self._rows)  # (N, D) float32
            self._rows = (
                x.astype(np.float16) if self.dtype == "float16" else tablefile.round_to(x, self.dtype)
            )
            self._map = None
        return self._rows

    @property
    def n(self) -> int:
        return int(self._rows.shape[0])

    @property
    def dim(self) -> int:
        return int(self._rows.shape[1])

    @property
    def nbytes(self) -> int:
        """Size of the rows as stored."""
        return self.n * self.dim * (4 if self.dtype == "float32" else 2)

    def value_range(self) -> tuple[float, float]:
        """(min, max) of all values; computed once (validation needs it too)."""
        if self._range is None:
            if self._rows.size == 0:
                raise BadInput(f"{self.origin}: the table is empty")
            lo, hi = math.inf, -math.inf
            for block in self.blocks(1 << 18):  # two cheap passes over each block while it is in cache
                b_lo, b_hi = float(block.min()), float(block.max())  # NaN if the block has one
                if math.isnan(b_lo) or math.isnan(b_hi):
                    lo = hi = math.nan
                    break
                lo, hi = min(lo, b_lo), max(hi, b_hi)
            self._range = (lo, hi)
        return self._range

    def blocks(self, elements: int = 1 << 16) -> Iterator[np.ndarray]:
        """The values as float32 blocks of whole rows (B, D) of about ``elements`` values: one pass
        over a large (memory-mapped, or pending) table without a second (N, D) array. A block is
        valid until the next one is asked for (one buffer is reused)."""
        step = max(1, elements // max(1, self.dim))
        convert = self._map is not None or self._rows.dtype != np.float32
        buffer = np.empty((min(step, self.n), self.dim), np.float32) if convert else None
        for start in range(0, self.n, step):
            block = self._rows[start : start + step]  # (B, D) view
            if buffer is None:
                yield block
            elif self._map is not None:
                yield tablefile.round_to(self._map(block, buffer[: len(block)]), self.dtype)
            else:
                out = buffer[: len(block)]
                np.copyto(out, block)
                yield out

    def derive(self, vectors: Any, op: str, args: dict[str, Any], **changes: Any) -> EmbeddingTable:
        """A new table with ``vectors`` (rounded to this table's dtype unless ``dtype`` is among
        ``changes``) and one more history entry (op, args, version)."""
        history = [*self.history, history_entry(op, args)]
        if vectors is self._rows and self._map is None and changes.keys() <= {"source", "tokenizer", "extra"}:
            # the same rows have passed the checks already: don't scan them again
            new = copy.copy(self)
            new.history = history
            for key, value in changes.items():
                setattr(new, key, value)
            return new
        fields = {"tokens": self.tokens, "source": self.source, "tokenizer": self.tokenizer,
                  "history": history, "missing": self.missing, "extra": self.extra,
                  "allow_nonfinite": self.allow_nonfinite, "origin": self.origin, "dtype": self.dtype}  # fmt: skip
        return EmbeddingTable(vectors, **{**fields, **changes})

    def derive_map(self, op: str, args: dict[str, Any], mapping: Affine) -> EmbeddingTable:
        """This table mapped elementwise by ``mapping`` (in float32, rounded to the table's dtype), with
        one more history entry. The map stays pending (see ``Affine``): nothing is computed here.

        Its range is the map of the input's (min, max): each float32 step and the rounding are
        monotonic, so the bounds map to the bounds exactly, and finiteness is checked without a pass.
        """
        if self._map is not None:
            self.vectors  # noqa: B018 - computes this table's own pending map: one map at a time
        new = copy.copy(self)
        new.history = [*self.history, history_entry(op, args)]
        new._map, new._range = mapping, None
        if self._rows.size:
            ends = np.array(self.value_range(), dtype=self._rows.dtype)  # (2,)
            ends = tablefile.round_to(mapping(ends), self.dtype)
            lo, hi = (math.nan, math.nan) if np.isnan(ends).any() else sorted(float(v) for v in ends)
            new._range = (lo, hi)
            if not self.allow_nonfinite and not (math.isfinite(lo) and math.isfinite(hi)):
                _raise_nonfinite(new.vectors, new.tokens, new.origin)
        return new

    def tensor(self) -> torch.Tensor:
        """The rows as a new float32 torch tensor (N, D), for the trainer (imports torch)."""
        import torch

        return torch.from_numpy(np.array(self.vectors, dtype=np.float32))

    def metadata(self) -> dict[str, str]:
        """The safetensors header metadata of this table (DESIGN §2)."""
        return table_metadata(
            self.tokens, self.source, self.tokenizer, self.history, self.missing, self.extra
        )

    def __repr__(self) -> str:
        steps = " → ".join(str(h.get("op", "?")) for h in self.history) or "-"
        return (
            f"EmbeddingTable({self.n} × {self.dim} {self.dtype}, source={self.source!r}, history={steps!r})"
        )

    def _check_finite(self) -> None:
        lo, hi = self.value_range()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            _raise_nonfinite(self.vectors, self.tokens, self.origin)


def table_metadata(
    tokens: list[str],
    source: str,
    tokenizer: str,
    history: list[dict[str, Any]],
    missing: list[int] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The safetensors header metadata of a table with these fields (DESIGN §2)."""
    meta = {**(extra or {}), KEY_FORMAT: FORMAT_VERSION, KEY_TOKENS: json.dumps(tokens, ensure_ascii=False),
            KEY_SOURCE: source, KEY_TOKENIZER: tokenizer, KEY_HISTORY: json.dumps(history, ensure_ascii=False)}  # fmt: skip
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
        raise BadInput(
            f"{origin}: {len(tokens)} tokens for {shape[0]} rows; the token list must name every row"
        )
    if len(set(tokens)) != len(tokens):
        first: dict[str, int] = {}
        i = next(i for i, t in enumerate(tokens) if first.setdefault(t, i) != i)
        raise BadInput(f"{origin}: duplicate token {tokens[i]!r} at rows {first[tokens[i]]} and {i}")
    if (row := tablefile.first_not_utf8(tokens)) is not None:  # e.g. a surrogateescape'd byte
        raise BadInput(f"{origin}: token {tokens[row]!r} at row {row} is a lone surrogate, not UTF-8 text")
    if missing is not None:
        bad: list[Any] = [i for i in missing if isinstance(i, bool) or not isinstance(i, (int, np.integer))]
        if bad:  # e.g. a hand-edited embtool.missing
            raise BadInput(f"{origin}: missing-row index {bad[0]!r} is not a row number")
        bad = [i for i in missing if not 0 <= i < shape[0]]
        if bad:
            raise BadInput(f"{origin}: missing-row index {bad[0]} is out of range")


def history_entry(op: str, args: dict[str, Any]) -> dict[str, Any]:
    """One provenance step: the operation, its arguments (seeds included) and the version."""
    return {"op": op, "args": args, "embtool": __version__}


def _raise_nonfinite(vectors: np.ndarray, tokens: list[str], origin: str) -> None:
    """Raise NonFinite counting NaN/Inf values and naming the first affected row's token."""
    bad = ~np.isfinite(vectors)  # (N, D)
    count = int(bad.sum())
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    raise NonFinite(
        f"{origin}: {count} non-finite value(s) (NaN/Inf); first in row {row} (token {tokens[row]!r})"
    )


# ----------------------------------------------------------------------------- reading


def load(path: str | os.PathLike[str], *, allow_nonfinite: bool = False) -> EmbeddingTable:
    """Read a table from a file (memory-mapped, copy-on-write), or from stdin when ``path`` is ``-``."""
    name = str(path)
    if name == STDIO:
        stdin = sys.stdin.buffer
        if stdin.isatty():
            raise UsageError("no table on stdin: give a TABLE path or pipe a table in")
        return _read(
            "<stdin>", lambda check: tablefile.read_stream(stdin, TENSOR_NAME, check), allow_nonfinite
        )
    p = Path(name)
    if not p.exists():
        raise BadInput(f"{name}: no such file")
    if p.is_dir():
        raise BadInput(f"{name}: is a folder, not a table file")
    note_input(p, table=True)
    return _read(name, lambda check: tablefile.read_file(p, TENSOR_NAME, check), allow_nonfinite)


def loads(data: bytes, *, origin: str = "<bytes>", allow_nonfinite: bool = False) -> EmbeddingTable:
    """Read a table from the bytes of a safetensors file (its rows are a read-only view of them)."""
    return _read(origin, lambda check: tablefile.read_bytes(data, TENSOR_NAME, check), allow_nonfinite)


def _read(
    origin: str, read: Callable[[tablefile.Check], tablefile.Tensor], allow_nonfinite: bool
) -> EmbeddingTable:
    try:
        got = read(lambda meta, keys: _check_header(meta, keys, origin))
    except (Unreadable, OSError, ValueError) as e:
        raise BadInput(f"{origin}: not a readable safetensors file ({e})") from None
    return _from_parts(got, origin, allow_nonfinite)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The header metadata of a table file, without reading its tensor."""
    try:
        return tablefile.read_file_header(Path(path)).meta
    except (Unreadable, OSError) as e:
        raise BadInput(f"{path}: not a readable safetensors file ({e})") from None


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
        raise BadInput(f"{origin}: no tensor named '{TENSOR_NAME}' (found: {', '.join(keys) or 'none'})")
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


def _from_parts(got: tablefile.Tensor, origin: str, allow_nonfinite: bool) -> EmbeddingTable:
    meta = got.meta
    tokens = _json_field(meta, KEY_TOKENS, origin, list)
    if not all(isinstance(t, str) for t in tokens):
        raise BadInput(f"{origin}: metadata '{KEY_TOKENS}' must be a list of strings")
    history = _json_field(meta, KEY_HISTORY, origin, list) if KEY_HISTORY in meta else []
    for i, step in enumerate(history):
        if not (isinstance(step, dict) and isinstance(step.get("op"), str)):
            raise BadInput(
                f"{origin}: metadata '{KEY_HISTORY}' entry {i} must be an object with a string \"op\", "
                f"got {json.dumps(step)[:60]}"
            )
    missing = _json_field(meta, KEY_MISSING, origin, list) if KEY_MISSING in meta else None
    extra = {k: v for k, v in meta.items() if k not in _KNOWN_KEYS}
    dtype = tablefile.CODE_NAMES.get(got.code, got.code)
    if got.rows is None:  # not read: a dtype no table has, which _check_layout names
        _check_layout(got.shape, dtype, tokens, missing, origin)
    return EmbeddingTable(got.rows, tokens, meta.get(KEY_SOURCE, "unknown"), meta.get(KEY_TOKENIZER, "whitespace"),
                          history, missing, extra, allow_nonfinite, origin, dtype)  # fmt: skip


# ----------------------------------------------------------------------------- writing


def save(table: EmbeddingTable, path: str | os.PathLike[str]) -> None:
    """Write ``table`` to a file atomically, or to stdout when ``path`` is ``-``.

    A table is never written to a terminal. A file is written to a temporary name in the
    same folder and renamed into place, so an interrupted write leaves no half-written table
    and never clobbers the old file. A pending map (``Affine``) is computed block by block as the
    rows are written, so a transform streams from the memory-mapped input to the output.
    """
    tablefile.emit(path, lambda out: _write(table, out))


def dumps(table: EmbeddingTable) -> bytes:
    """The bytes of the safetensors file for ``table``."""
    import io

    buf = io.BytesIO()
    _write(table, buf)
    return buf.getvalue()


def _write(table: EmbeddingTable, out: BinaryIO) -> None:
    rows, mapping, dtype = table._rows, table._map, table.dtype  # (N, D)

    def blocks() -> Iterable[np.ndarray]:
        if mapping is None and dtype != "bfloat16":
            yield rows  # the whole array in one write: from the memory map, no copy
            return
        step = max(1, _BLOCK_BYTES // max(1, table.dim * 4))
        buffer = np.empty((min(step, table.n), table.dim), np.float32) if mapping else None  # reused
        for start in range(0, table.n, step):
            block = rows[start : start + step]  # (B, D)
            if mapping is not None and buffer is not None:
                block = mapping(block, buffer[: len(block)])
            yield tablefile.stored(block, dtype)

    tablefile.write(out, table.metadata(), DTYPE_CODES[dtype], (table.n, table.dim), TENSOR_NAME, blocks())
