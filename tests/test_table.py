"""The table file format (DESIGN §2): round trips, bfloat16, stdio, atomic writes, validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from embtool.core.errors import BadInput
from embtool.tables.table import Affine, EmbeddingTable, dumps, load, loads, save

DTYPES = ["float32", "float16", "bfloat16"]


def _meta(tokens, **over):
    meta = {
        "embtool.format": "1",
        "embtool.tokens": json.dumps(tokens),
        "embtool.source": "test",
        "embtool.tokenizer": "whitespace",
        "embtool.history": "[]",
    }
    meta.update(over)
    return {k: v for k, v in meta.items() if v is not None}


def _randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_file(tmp_path: Path, make_table, dtype) -> None:
    t = make_table(_randn(5, 3), source="glove:x.txt", tokenizer="spacy:en+lower", missing=[2], dtype=dtype)
    t = t.derive(t.vectors, "scale", {"by": 1.0})
    path = tmp_path / "t.safetensors"
    save(t, path)
    back = load(path)
    assert back.dtype == dtype and np.array_equal(back.vectors, t.vectors)
    assert back.vectors.dtype == (np.float16 if dtype == "float16" else np.float32)
    assert (back.tokens, back.source, back.tokenizer, back.missing) == (t.tokens, t.source, t.tokenizer, [2])
    assert back.history == t.history and back.history[-1]["op"] == "scale"


def test_round_trip_bytes_keeps_unicode_tokens_and_extra_metadata(make_table) -> None:
    t = make_table(np.ones((3, 2), np.float32), tokens=["▁über", "##s", "日本"], extra={"user.note": "hi"})
    back = loads(dumps(t))
    assert back.tokens == ["▁über", "##s", "日本"] and back.extra == {"user.note": "hi"}


def test_load_maps_the_file_copy_on_write(tmp_path: Path, make_table) -> None:
    path = tmp_path / "t.safetensors"
    save(make_table(_randn(6, 4)), path)
    before = path.read_bytes()
    t = load(path)
    base = t.vectors
    while base.base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)  # not read into memory
    t.vectors[0, 0] = 123.0  # changes stay in memory
    assert path.read_bytes() == before


CONSTRUCTION_CASES = [
    ("not 2-D", dict(vectors=np.zeros(3, np.float32)), "must be 2-D"),
    ("count", dict(vectors=np.zeros((3, 2), np.float32), tokens=["a", "b"]), "2 tokens for 3 rows"),
    (
        "duplicate",
        dict(vectors=np.zeros((3, 2), np.float32), tokens=["a", "b", "a"]),
        "duplicate token 'a' at rows 0 and 2",
    ),
    (
        "lone surrogate",
        dict(vectors=np.zeros((2, 2), np.float32), tokens=["a", "b\udc80"]),
        r"token 'b\\udc80' at row 1 is a lone surrogate, not UTF-8 text",
    ),
    ("dtype", dict(vectors=np.zeros((2, 2), np.int64)), "dtype int64; allowed"),
    ("float64", dict(vectors=np.zeros((2, 2))), "dtype float64; allowed"),
    ("missing index", dict(vectors=np.zeros((2, 2), np.float32), missing=[5]), "out of range"),
    ("missing type", dict(vectors=np.zeros((2, 2), np.float32), missing=["x"]), "'x' is not a row number"),
    ("not an array", dict(vectors=[[1.0, 2.0]]), "must be a numpy array"),
]


@pytest.mark.parametrize("name,kw,message", CONSTRUCTION_CASES, ids=[c[0] for c in CONSTRUCTION_CASES])
def test_construction_is_validated(name, kw, message) -> None:
    kw.setdefault("tokens", [f"t{i}" for i in range(len(kw["vectors"]))] if np.ndim(kw["vectors"]) else [])
    with pytest.raises(BadInput, match=message):
        EmbeddingTable(**kw)


def test_nonfinite_values_are_counted_and_named(make_table) -> None:
    v = np.zeros((4, 3), np.float32)
    v[2, 1] = np.nan
    v[3, 0] = np.inf
    with pytest.raises(BadInput, match=r"2 non-finite value\(s\).*row 2 \(token 't2'\).*--allow-nonfinite"):
        make_table(v)
    assert make_table(v, allow_nonfinite=True).n == 4


def test_a_pending_map_that_overflows_is_an_error_naming_the_row(make_table) -> None:
    t = make_table(np.array([[1.0, -2.0], [3e38, 0.5]], np.float32))
    with pytest.raises(BadInput, match=r"1 non-finite value\(s\).*row 1 \(token 't1'\)"):
        t.derive_map("scale", {}, Affine(10.0))
    flipped = t.derive_map("scale", {}, Affine(-0.5))  # the bounds swap, and stay exact
    assert flipped.value_range() == (float(np.float32(3e38) * np.float32(-0.5)), 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mapping", [Affine(-3.5, shift=0.25, add=7.0), Affine(2.0), Affine(0.0, add=1.0)])
def test_a_pending_map_equals_its_computed_rows(make_table, monkeypatch, dtype, mapping) -> None:
    """vectors, value_range, blocks and the written file all see the same values, bit for bit."""
    import embtool.tables.table as table_mod

    monkeypatch.setattr(table_mod, "_BLOCK_BYTES", 64)  # many blocks, a short last one
    t = make_table(_randn(37, 5) * 4, dtype=dtype)
    lazy, eager = t.derive_map("m", {}, mapping), t.derive_map("m", {}, mapping)
    data = dumps(lazy)  # streamed from the pending map
    rows = eager.vectors  # computed whole
    assert np.array_equal(loads(data).vectors, rows) and loads(data).dtype == dtype
    assert lazy.value_range() == (float(rows.min()), float(rows.max()))
    assert np.array_equal(np.concatenate([b.copy() for b in lazy.blocks(7)]), rows.astype(np.float32))
    expected = (t.vectors.astype(np.float32) - np.float32(mapping.shift)) * np.float32(mapping.scale)
    expected = expected + np.float32(mapping.add) if mapping.add else expected
    assert np.array_equal(rows, EmbeddingTable(expected, t.tokens, dtype=dtype).vectors)


def _write_raw(path: Path, tensors: dict, meta: dict) -> Path:
    save_file(tensors, str(path), metadata=meta)
    return path


Z = np.zeros((2, 2), np.float32)
BAD_FILES = [
    ("wrong tensor name", {"weight": Z}, _meta(["a", "b"]), "no tensor named 'embeddings'"),
    ("not 2-D", {"embeddings": np.zeros((2, 2, 2), np.float32)}, _meta(["a", "b"]), "must be 2-D"),
    ("float64", {"embeddings": np.zeros((2, 2))}, _meta(["a", "b"]), "dtype float64; allowed"),
    ("token count", {"embeddings": np.zeros((3, 2), np.float32)}, _meta(["a", "b"]), "2 tokens for 3 rows"),
    ("duplicates", {"embeddings": Z}, _meta(["a", "a"]), "duplicate token"),
    ("future format", {"embeddings": Z}, _meta(["a", "b"], **{"embtool.format": "2"}), "format version '2'"),
    ("no format", {"embeddings": Z}, _meta(["a", "b"], **{"embtool.format": None}), "not an embtool table"),
    ("tokens not json", {"embeddings": Z}, _meta(["a", "b"], **{"embtool.tokens": "[a"}), "not valid JSON"),
    ("missing str", {"embeddings": Z}, _meta(["a", "b"], **{"embtool.missing": '["x", 1]'}), "'x' is not a row number"),
    ("missing float", {"embeddings": Z}, _meta(["a", "b"], **{"embtool.missing": "[1.5]"}), "1.5 is not a row number"),
    ("missing range", {"embeddings": Z}, _meta(["a", "b"], **{"embtool.missing": "[0, 2]"}), "index 2 is out of range"),
    ("missing object", {"embeddings": Z}, _meta(["a", "b"], **{"embtool.missing": "{}"}), "must be a JSON list"),
    ("history items", {"embeddings": Z}, _meta(["a", "b"], **{"embtool.history": '[1, "x", null]'}),
     "'embtool.history' entry 0 must be an object with a string \"op\", got 1"),
    ("history op", {"embeddings": Z}, _meta(["a", "b"], **{"embtool.history": '[{"op": "init"}, {"args": {}}]'}),
     "entry 1 must be an object"),
]  # fmt: skip


@pytest.mark.parametrize("name,tensors,meta,message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_files_are_rejected(tmp_path: Path, name, tensors, meta, message) -> None:
    path = _write_raw(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(BadInput, match=f"^{tmp_path / 'bad.safetensors'}: .*" + _esc(message)):
        load(path)
    with pytest.raises(BadInput, match=f"^<bytes>: .*{_esc(message)}"):
        loads(path.read_bytes())


def _esc(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize("case", ["missing str", "missing range", "history items"])
def test_bad_metadata_through_the_cli_is_one_line_exit_2(tmp_path: Path, cli, case) -> None:
    _, tensors, meta, message = next(c for c in BAD_FILES if c[0] == case)
    path = _write_raw(tmp_path / "bad.safetensors", tensors, meta)
    for args, stdin in ((["stats", str(path)], None), (["stats", "-"], path.read_bytes())):
        r = cli(*args, stdin=stdin)
        lines = r.stderr.strip().splitlines()
        assert r.code == 2 and len(lines) == 1 and message in lines[0], r.stderr
        assert (str(path) if stdin is None else "<stdin>") in lines[0]


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        load(tmp_path / "nope.safetensors")
    with pytest.raises(BadInput, match="is a folder"):
        load(tmp_path)
