"""The table file format (DESIGN §2): round trips, stdio, atomic writes, validation."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from embtool.errors import BadInput
from embtool.table import EmbeddingTable, dumps, load, loads, save


def _meta(tokens, **over):
    meta = {
        "embtool.format": "1",
        "embtool.tokens": json.dumps(tokens),
        "embtool.source": "test",
        "embtool.text.tokenizer": "whitespace",
        "embtool.history": "[]",
    }
    meta.update(over)
    return {k: v for k, v in meta.items() if v is not None}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_round_trip_file(tmp_path: Path, make_table, dtype) -> None:
    t = make_table(torch.randn(5, 3).to(dtype), source="glove:x.txt", tokenizer="spacy:en+lower", missing=[2])
    t = t.derive(t.vectors, "scale", {"by": 1.0})
    path = tmp_path / "t.safetensors"
    save(t, path)
    back = load(path)
    assert torch.equal(back.vectors, t.vectors) and back.vectors.dtype == dtype
    assert (back.tokens, back.source, back.tokenizer, back.missing) == (t.tokens, t.source, t.tokenizer, [2])
    assert back.history == t.history and back.history[-1]["op"] == "scale"


def test_round_trip_bytes_keeps_unicode_tokens_and_extra_metadata(make_table) -> None:
    t = make_table(torch.ones(3, 2), tokens=["▁über", "##s", "日本"], extra={"user.note": "hi"})
    back = loads(dumps(t))
    assert back.tokens == ["▁über", "##s", "日本"] and back.extra == {"user.note": "hi"}


def test_save_is_atomic_and_keeps_old_file_on_failure(tmp_path: Path, make_table, monkeypatch) -> None:
    path = tmp_path / "t.safetensors"
    save(make_table(torch.zeros(2, 2)), path)
    before = path.read_bytes()

    def boom(out, *a, **k):
        out.write(b"half a header")  # the disk fills up part-way
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("embtool.table._write_safetensors", boom)
    with pytest.raises(Exception, match="could not write"):
        save(make_table(torch.ones(2, 2)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temporary left


CONSTRUCTION_CASES = [
    ("not 2-D", dict(vectors=torch.zeros(3)), "must be 2-D"),
    ("count", dict(vectors=torch.zeros(3, 2), tokens=["a", "b"]), "2 tokens for 3 rows"),
    ("duplicate", dict(vectors=torch.zeros(3, 2), tokens=["a", "b", "a"]), "duplicate token 'a' at rows 0 and 2"),
    ("dtype", dict(vectors=torch.zeros(2, 2, dtype=torch.int64)), "dtype"),
    ("missing index", dict(vectors=torch.zeros(2, 2), missing=[5]), "out of range"),
]


@pytest.mark.parametrize("name,kw,message", CONSTRUCTION_CASES, ids=[c[0] for c in CONSTRUCTION_CASES])
def test_construction_is_validated(name, kw, message) -> None:
    kw.setdefault("tokens", [f"t{i}" for i in range(kw["vectors"].shape[0])] if kw["vectors"].dim() else [])
    with pytest.raises(BadInput, match=message):
        EmbeddingTable(**kw)


def test_nonfinite_values_are_counted_and_named(make_table) -> None:
    v = torch.zeros(4, 3)
    v[2, 1] = float("nan")
    v[3, 0] = float("inf")
    with pytest.raises(BadInput, match=r"2 non-finite value\(s\).*row 2 \(token 't2'\).*--allow-nonfinite"):
        make_table(v)
    assert make_table(v, allow_nonfinite=True).n == 4


def _write_raw(path: Path, tensors: dict, meta: dict) -> Path:
    save_file(tensors, str(path), metadata=meta)
    return path


BAD_FILES = [
    ("wrong tensor name", {"weight": torch.zeros(2, 2)}, _meta(["a", "b"]), "no tensor named 'embeddings'"),
    ("not 2-D", {"embeddings": torch.zeros(2, 2, 2)}, _meta(["a", "b"]), "must be 2-D"),
    ("token count", {"embeddings": torch.zeros(3, 2)}, _meta(["a", "b"]), "2 tokens for 3 rows"),
    ("duplicates", {"embeddings": torch.zeros(2, 2)}, _meta(["a", "a"]), "duplicate token"),
    ("future format", {"embeddings": torch.zeros(2, 2)}, _meta(["a", "b"], **{"embtool.format": "2"}), "format version '2'"),
    ("no format", {"embeddings": torch.zeros(2, 2)}, _meta(["a", "b"], **{"embtool.format": None}), "not an embtool table"),
    ("tokens not json", {"embeddings": torch.zeros(2, 2)}, _meta(["a", "b"], **{"embtool.tokens": "[a"}), "not valid JSON"),
]


@pytest.mark.parametrize("name,tensors,meta,message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_files_are_rejected(tmp_path: Path, name, tensors, meta, message) -> None:
    path = _write_raw(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(BadInput, match=message):
        load(path)
    with pytest.raises(BadInput, match=message):
        loads(path.read_bytes())


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x10\x00\x00\x00\x00\x00\x00\x00{", None])
def test_truncated_or_foreign_bytes(tmp_path: Path, make_table, data) -> None:
    if data is None:  # a real table cut short
        data = dumps(make_table(torch.ones(4, 4)))[:-7]
    path = tmp_path / "x.safetensors"
    path.write_bytes(data)
    with pytest.raises(BadInput, match="x.safetensors: not a readable safetensors"):
        load(path)
    with pytest.raises(BadInput, match="not a readable safetensors"):
        loads(data)


def test_header_parse_matches_safetensors_layout(make_table) -> None:
    data = dumps(make_table(torch.ones(2, 2)))
    (size,) = struct.unpack("<Q", data[:8])
    assert json.loads(data[8 : 8 + size])["__metadata__"]["embtool.format"] == "1"


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        load(tmp_path / "nope.safetensors")
    with pytest.raises(BadInput, match="is a folder"):
        load(tmp_path)


def test_library_exports_resolve() -> None:
    import embtool

    for name in embtool.__all__:
        assert getattr(embtool, name) is not None, name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_streamed_writes_are_safetensors_files(tmp_path: Path, make_table, monkeypatch, dtype, n) -> None:
    """The streaming writer (stdout, map_rows) gives files that safetensors itself reads back."""
    import safetensors.torch

    import embtool.table as table_mod

    monkeypatch.setattr(table_mod, "_BLOCK_BYTES", 256)  # many blocks, a short last one
    t = make_table(torch.randn(n, 5).to(dtype), tokens=[f"w{i}" for i in range(n)])
    plain, mapped = tmp_path / "plain.safetensors", tmp_path / "mapped.safetensors"
    plain.write_bytes(dumps(t))
    save(t, mapped, map_rows=lambda rows: rows.mul_(2))
    assert torch.equal(safetensors.torch.load_file(str(plain))["embeddings"], t.vectors)
    assert torch.equal(load(mapped).vectors, t.vectors * 2) and load(mapped).tokens == t.tokens
