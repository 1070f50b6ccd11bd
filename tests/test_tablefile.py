"""The container under the tables (tablefile): bfloat16 in numpy, the safetensors header and data
as the library reads and writes them, rows given as torch tensors, atomic and streamed writes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.core.tablefile import bf16_bits, from_bf16_bits
from embtool.tables.table import Affine, EmbeddingTable, dumps, load, loads, save

DTYPES = ["float32", "float16", "bfloat16"]


def _randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def test_bfloat16_bits_round_trip_exactly(make_table) -> None:
    """Every finite bfloat16 bit pattern comes back as it went: held widened, written narrowed."""
    bits = np.arange(0, 1 << 16, dtype=np.uint32).astype(np.uint16)
    bits = bits[np.isfinite(from_bf16_bits(bits))].reshape(-1, 2)  # (N, 2)
    t = make_table(bits, dtype="bfloat16")
    assert t.vectors.dtype == np.float32 and np.array_equal(t.vectors.view(np.uint32) >> 16, bits)
    data = dumps(t)
    assert data[-bits.nbytes :] == bits.tobytes()  # the data region is the bit patterns themselves
    back = loads(data)
    assert back.dtype == "bfloat16" and np.array_equal(
        back.vectors.view(np.uint32), t.vectors.view(np.uint32)
    )


def test_bfloat16_rounding_equals_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 2**32, 20_000, dtype=np.uint64).astype(
        np.uint32
    )  # any float32, subnormals too
    ties = (rng.integers(0, 2**16, 2000, dtype=np.uint32) << 16) | 0x8000  # exactly halfway: to even
    special = np.array([0.0, -0.0, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45, 1.17e-38], np.float32)
    x = np.concatenate([patterns.view(np.float32), ties.astype(np.uint32).view(np.float32), special])
    x = x[~np.isnan(x)]  # NaN: torch's scalar and vector paths differ; ours is the scalar one (0x7FC0)
    ours = bf16_bits(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours, theirs)
    assert np.isnan(from_bf16_bits(bf16_bits(np.array([np.nan], np.float32)))).all()
    # a table saved as bfloat16 from float32 values is what torch's cast and safetensors write
    from safetensors.torch import save_file as torch_save

    finite = x[np.isfinite(x) & (np.abs(x) < 3e38)][:4000].reshape(-1, 4)
    t = EmbeddingTable(finite, [f"t{i}" for i in range(len(finite))], dtype="bfloat16")
    torch_save({"embeddings": torch.from_numpy(finite).to(torch.bfloat16)}, str(tmp_path / "ref.safetensors"),
               metadata=t.metadata())  # fmt: skip
    ref = load(tmp_path / "ref.safetensors")
    assert ref.dtype == "bfloat16" and np.array_equal(ref.vectors, t.vectors)


def test_torch_tensors_are_accepted(make_table) -> None:
    torch = pytest.importorskip("torch")
    w = torch.randn(4, 3, requires_grad=True)
    t = make_table(w)
    assert isinstance(t.vectors, np.ndarray) and np.array_equal(t.vectors, w.detach().numpy())
    b = make_table(w.detach().to(torch.bfloat16))
    assert b.dtype == "bfloat16" and torch.equal(b.tensor(), w.detach().to(torch.bfloat16).float())
    assert b.tensor().dtype == torch.float32 and make_table(w.detach().half()).dtype == "float16"
    widened = make_table(w.detach().to(torch.bfloat16), dtype="float32")  # values kept, stored as float32
    assert widened.dtype == "float32" and np.array_equal(widened.vectors, b.vectors)


def test_save_is_atomic_and_keeps_old_file_on_failure(tmp_path: Path, make_table, monkeypatch) -> None:
    path = tmp_path / "t.safetensors"
    save(make_table(np.zeros((2, 2), np.float32)), path)
    before = path.read_bytes()

    def boom(out, *a, **k):
        out.write(b"half a header")  # the disk fills up part-way
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("embtool.core.tablefile.write", boom)
    with pytest.raises(Exception, match="could not write"):
        save(make_table(np.ones((2, 2), np.float32)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temporary left


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage", b"\x10\x00\x00\x00\x00\x00\x00\x00{", b"\x02\x00\x00\x00\x00\x00\x00\x00[]", None],
)
def test_truncated_or_foreign_bytes(tmp_path: Path, make_table, data) -> None:
    if data is None:  # a real table cut short
        data = dumps(make_table(np.ones((4, 4), np.float32)))[:-7]
    path = tmp_path / "x.safetensors"
    path.write_bytes(data)
    with pytest.raises(BadInput, match="x.safetensors: not a readable safetensors"):
        load(path)
    with pytest.raises(BadInput, match="not a readable safetensors"):
        loads(data)


def test_trailing_bytes_are_rejected(make_table) -> None:
    with pytest.raises(BadInput, match="not a readable safetensors"):
        loads(dumps(make_table(np.ones((2, 2), np.float32))) + b"\0" * 8)


def test_header_parse_matches_safetensors_layout(make_table) -> None:
    data = dumps(make_table(np.ones((2, 2), np.float32)))
    (size,) = struct.unpack("<Q", data[:8])
    assert json.loads(data[8 : 8 + size])["__metadata__"]["embtool.format"] == "1"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_streamed_writes_are_safetensors_files(tmp_path: Path, make_table, monkeypatch, dtype, n) -> None:
    """The block writer (stdout, a pending map) gives files that safetensors itself reads back."""
    import safetensors.numpy

    import embtool.tables.table as table_mod

    monkeypatch.setattr(table_mod, "_BLOCK_BYTES", 256)  # many blocks, a short last one
    t = make_table(_randn(n, 5), tokens=[f"w{i}" for i in range(n)], dtype=dtype)
    plain, mapped = tmp_path / "plain.safetensors", tmp_path / "mapped.safetensors"
    plain.write_bytes(dumps(t))
    save(t.derive_map("double", {}, Affine(2.0)), mapped)
    if dtype != "bfloat16":  # numpy has no bfloat16
        assert np.array_equal(safetensors.numpy.load_file(str(plain))["embeddings"], t.vectors)
    assert np.array_equal(load(mapped).vectors, t.vectors * 2) and load(mapped).tokens == t.tokens


def test_read_shape_reads_the_header_alone(tmp_path: Path, make_table) -> None:
    """The one header reader behind a run's widths: shape and metadata, the rows never read."""
    from embtool.core import tablefile

    path = tmp_path / "t.safetensors"
    save(make_table(np.ones((3, 5), np.float32)), path)
    shape, meta = tablefile.read_shape(path, "embeddings")
    assert shape == (3, 5) and "embtool.tokens" in meta
    path.write_bytes(path.read_bytes()[:-4])  # the data cut short: the header still reads
    assert tablefile.read_shape(path, "embeddings")[0] == (3, 5)
    assert tablefile.read_shape(path, "rows")[0] is None
    path.write_bytes(b"\x05" + bytes(7))
    with pytest.raises(tablefile.Unreadable, match="past the end"):
        tablefile.read_shape(path, "embeddings")
