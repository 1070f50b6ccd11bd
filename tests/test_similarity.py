"""similarity: Spearman's ρ as gensim's evaluate_word_pairs computes it; pairs files; the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.eval.similarity import default_pairs, evaluate_pairs, evaluate_similarity, parse_pairs
from embtool.tables.table import EmbeddingTable, save

gensim_models = pytest.importorskip("gensim.models")
SETTINGS = {  # name → (our keyword arguments, gensim's)
    "defaults": ({}, {}),
    "case-sensitive": ({"case_sensitive": True}, {"case_insensitive": False}),
    "restrict": ({"restrict": 400}, {"restrict_vocab": 400}),
    "count-oov": ({"count_oov": True}, {"dummy4unknown": True}),
}


def gensim_file(name: str) -> tuple[list[str], np.ndarray]:
    from gensim.test.utils import datapath

    kv = gensim_models.KeyedVectors.load_word2vec_format(datapath(name))
    return list(kv.index_to_key), np.array(kv.vectors, dtype=np.float32)


@pytest.fixture(scope="module")
def cased_table() -> tuple[list[str], np.ndarray]:
    """Every word of both pair sets, some in two cases, random vectors; first rows known only."""
    rng = np.random.default_rng(0)
    words = []
    for path in default_pairs():
        for p in parse_pairs(path.read_bytes()):
            words += [p.a, p.b]
    words = list(dict.fromkeys(words))
    tokens = list(dict.fromkeys([w.capitalize() for w in words[::7]] + words))
    tokens = [tokens[i] for i in rng.permutation(len(tokens))]
    vectors = rng.standard_normal((len(tokens), 12)).astype(np.float32)
    vectors[5] = 0.0  # a zero row: its cosine is 0 in gensim's unitvec
    return tokens, vectors


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("pairs", ["wordsim353.tsv", "simlex999.txt"])
@pytest.mark.parametrize("source", ["lee_fasttext.vec", "cased"])
def test_agrees_with_gensim_evaluate_word_pairs(cased_table, source: str, pairs: str, setting: str) -> None:
    from gensim.test.utils import datapath

    tokens, vectors = cased_table if source == "cased" else gensim_file(source)
    ours, gensims = SETTINGS[setting]
    kv = gensim_models.KeyedVectors(vectors.shape[1])
    kv.add_vectors(tokens, vectors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pearson, spearman, oov_ratio = kv.evaluate_word_pairs(datapath(pairs), **gensims)
    r = evaluate_pairs(EmbeddingTable(vectors.copy(), tokens), datapath(pairs), **ours)
    assert r.spearman == pytest.approx(spearman.statistic, abs=1e-12)
    assert r.pearson == pytest.approx(pearson.statistic, abs=1e-6)
    assert r.oov_ratio == pytest.approx(oov_ratio, abs=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_rows_held_by_numpy_or_torch_score_alike(dtype: str) -> None:
    torch = pytest.importorskip("torch")
    tokens, vectors = gensim_file("lee_fasttext.vec")
    rows = torch.from_numpy(vectors).to(getattr(torch, dtype))
    table = EmbeddingTable(rows.float().numpy() if dtype == "bfloat16" else rows.numpy(), tokens)
    raw = SimpleNamespace(vectors=rows, tokens=tokens)  # all that eval reads
    expected = evaluate_pairs(table, default_pairs()[0])
    got = evaluate_pairs(raw, default_pairs()[0])
    assert (got.spearman, got.pearson, got.pairs) == (expected.spearman, expected.pearson, expected.pairs)
    assert expected.pairs > 40


def test_defaults_are_wordsim_and_simlex() -> None:
    tokens, vectors = gensim_file("lee_fasttext.vec")
    results = evaluate_similarity(EmbeddingTable(vectors, tokens))
    assert [r.name for r in results] == ["wordsim353.tsv", "simlex999.txt"]
    assert all(r.pairs + r.oov in (353, 999) for r in results)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"a\tb\n", "line 1: expected 'word<TAB>word<TAB>score', got 2"),
        (b"# c\na\tb\tc\td\n", "line 2: expected"),
        (b"a\tb\thigh\n", "line 1: score 'high' is not a number"),
        (b"a\tb\t\xff\n", "line 1: not UTF-8"),
        (b"# only comments\n\n", "no word pairs found"),
        (b"a\tb\t1\nb\tc\tnan\n", "line 2: score 'nan' is not a finite number"),
        (b"a\tb\t-inf\n", "line 1: score '-inf' is not a finite number"),
    ],
    ids=["two-fields", "four-fields", "score", "not-utf8", "empty", "nan-score", "inf-score"],
)
def test_bad_pairs_files_name_the_line(text: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_pairs(text, origin="p.tsv")


def test_no_known_pair_is_an_error() -> None:
    table = EmbeddingTable(np.eye(3, dtype=np.float32), ["x", "y", "z"])
    with pytest.raises(BadInput, match="no pair has both words"):
        evaluate_pairs(table)


def test_cli_json_and_errors(cli, tmp_path: Path) -> None:
    tokens, vectors = gensim_file("lee_fasttext.vec")
    path = tmp_path / "lee.safetensors"
    save(EmbeddingTable(vectors, tokens), path)
    own = tmp_path / "pairs.tsv"
    own.write_text("# mine\nman\twoman\t8.0\ncar\tdog\t1.0\nday\tnight\t5.0\n", encoding="utf-8")
    r = cli("similarity", str(path), "--json", "--pairs", str(own))
    assert r.code == 0, r.stderr
    out = [json.loads(line) for line in r.text.splitlines()]
    assert len(out) == 1 and out[0]["pairs_file"] == "pairs.tsv" and out[0]["pairs"] + out[0]["oov"] == 3
    r = cli("similarity", str(path))
    assert r.code == 0 and "wordsim353.tsv" in r.text and "simlex999.txt" in r.text
    own.write_text("man woman 8.0\n", encoding="utf-8")
    r = cli("similarity", str(path), "--pairs", str(own))
    assert r.code == 2 and r.stderr.startswith("embtool: error: ") and "line 1" in r.stderr
