"""Sources: resolving a source spec, filling missing rows, writing extracted rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from embtool.core.errors import BadInput
from embtool.formats.sources import extract, resolve_source
from embtool.text.vocabfile import Vocabulary


@pytest.mark.parametrize(
    "source,kind,location",
    [
        ("bert", "hf", "bert-base-uncased"),
        ("mt5", "hf", "google/mt5-base"),
        ("hf:xlmr", "hf", "xlm-roberta-base"),
        ("google/mt5-small", "hf", "google/mt5-small"),
        ("glove:x.txt", "vectors", "x.txt"),
        ("fasttext:a/b.bin", "vectors", "a/b.bin"),
    ],
)
def test_resolve_source(source, kind, location) -> None:
    ref = resolve_source(source)
    assert (ref.kind, ref.location) == (kind, location)


def test_safetensors_file_is_not_a_source(tmp_path) -> None:
    (tmp_path / "t.safetensors").write_bytes(b"x")
    with pytest.raises(BadInput, match="embtool align"):
        resolve_source(str(tmp_path / "t.safetensors"))


def test_unknown_alias() -> None:
    with pytest.raises(BadInput, match="unknown source 'bertt'.*alias"):
        resolve_source("bertt")


@pytest.mark.parametrize("method", ["normal", "mean", "zero", "xavier"])
def test_missing_fill_methods(method) -> None:
    from gensim.test.utils import datapath

    path = datapath("test_glove.txt")
    vocab = Vocabulary(["the", ",", ".", "zzqq1", "zzqq2"])
    table, _ = extract(path, vocab, missing=method, seed=5)
    found, filled = table.tensor()[:3], table.tensor()[3:]
    if method == "zero":
        assert torch.equal(filled, torch.zeros_like(filled))
    elif method == "mean":
        assert torch.allclose(filled[0], found.mean(0)) and torch.equal(filled[0], filled[1])
    elif method == "normal":
        assert abs(filled.std().item() - found.std().item()) < 0.5 * found.std().item()
    else:
        a = (6 / (5 + table.dim)) ** 0.5
        assert filled.abs().max() <= a
    again, _ = extract(path, vocab, missing=method, seed=5)
    assert torch.equal(again.tensor(), table.tensor())


def test_extracted_rows_are_written_as_they_are(tmp_path) -> None:
    """extract builds a table from its numpy rows and saves it: header, then the float32 rows."""
    from embtool.tables.table import EmbeddingTable, save

    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    fields = dict(
        tokens=["a", "b", "c"], source="s", tokenizer="whitespace", history=[{"op": "x"}], missing=[1]
    )
    save(EmbeddingTable(rows, **fields), tmp_path / "a.safetensors")
    data = (tmp_path / "a.safetensors").read_bytes()
    size = int.from_bytes(data[:8], "little")
    assert data[8 + size :] == rows.tobytes() and data[8 + size - 1 : 8 + size] in (b"}", b" ")
    with safe_open(str(tmp_path / "a.safetensors"), "np") as f:
        assert np.array_equal(f.get_tensor("embeddings"), rows) and f.metadata()["embtool.missing"] == "[1]"
    rows[2, 1] = np.nan
    with pytest.raises(BadInput, match=r"1 non-finite value\(s\) \(NaN/Inf\); first in row 2 \(token 'c'\)"):
        EmbeddingTable(rows, **fields)


def test_extract_names_nan_rows_and_accepts_them_with_allow_nonfinite(tmp_path) -> None:
    """Issue 14.5: extract's NaN hint points at an option extract has."""
    from embtool.cli import main

    (tmp_path / "v.txt").write_text("a 1 2\nb nan 3\n", encoding="utf-8")
    vocab = Vocabulary(["a", "b"])
    with pytest.raises(BadInput, match=r"1 non-finite value\(s\).*token 'b'.*pass --allow-nonfinite"):
        extract(f"glove:{tmp_path / 'v.txt'}", vocab)
    table, _ = extract(f"glove:{tmp_path / 'v.txt'}", vocab, allow_nonfinite=True)
    assert np.isnan(table.vectors[1, 0]) and table.vectors[0].tolist() == [1.0, 2.0]
    (tmp_path / "voc.txt").write_text("a\nb\n", encoding="utf-8")
    args = ["extract", f"glove:{tmp_path / 'v.txt'}", "--vocab", str(tmp_path / "voc.txt")]
    assert main([*args, "-o", str(tmp_path / "o.safetensors"), "--allow-nonfinite"]) == 0


def test_an_archive_member_is_a_source_and_the_two_member_message_works_as_written(tmp_path, cli) -> None:
    import re
    import zipfile

    (tmp_path / "v.txt").write_text("#embtool tokenizer=whitespace\nthe\t3\ncat\t2\n", encoding="utf-8")
    archive = tmp_path / "vectors.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("glove.2d.txt", "the 1 2\ncat 3 4\n")  # header-less: GloVe, sniffed
        z.writestr("readme.txt", "not vectors\n")
    r = cli(
        "extract", str(archive), "--vocab", str(tmp_path / "v.txt"), "-o", str(tmp_path / "t.safetensors")
    )
    assert r.code == 2 and "name one: " in r.stderr, r.stderr
    suggested = re.search(r"name one: (\S+)", r.stderr).group(1)  # type: ignore[union-attr]
    assert suggested == f"{archive}#glove.2d.txt"
    r = cli("extract", suggested, "--vocab", str(tmp_path / "v.txt"), "-o", str(tmp_path / "t.safetensors"))
    assert r.code == 0, r.stderr
    from embtool.tables.table import load

    assert load(tmp_path / "t.safetensors").vectors.tolist() == [[1, 2], [3, 4]]
    assert resolve_source(f"{archive}#readme.txt").kind == "vectors"
