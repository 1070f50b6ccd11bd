"""Initialisation names (the paper's Tables 1 and 7) from a table's source and history."""

from __future__ import annotations

import pytest
import torch

from embtool.tables import transforms
from embtool.tables.naming import run_name, sort_key, source_name, table_name


def _h(op: str, **args) -> dict:
    return {"op": op, "args": args, "embtool": "0.1.0"}


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("hf:google/mt5-base", "mT5"),
        ("hf:google/mt5-small", "mT5"),
        ("hf:t5-small", "T5"),
        ("hf:google/flan-t5-base", "T5"),
        ("hf:bert-base-uncased", "BERT"),
        ("hf:bert-base-multilingual-cased", "mBERT"),
        ("hf:xlm-roberta-base", "XLM-R"),
        ("hf:/tmp/tiny-bert", "BERT"),
        ("glove:glove.6B.300d.txt", "GloVe"),
        ("glove:/data/vectors_de.txt", "GloVe"),
        ("word2vec:de.bin", "word2vec"),
        ("fasttext:cc.de.300.vec", "fastText"),
        ("xavier", "Xavier"),
        ("/data/my_vectors.txt", "my_vectors"),
        ("unknown", "table"),
        (None, "table"),
    ],
)
def test_source_name(source, name) -> None:
    assert source_name(source) == name


@pytest.mark.parametrize(
    ("source", "history", "name"),
    [
        ("glove:g.txt", [_h("extract", source="glove:g.txt")], "GloVe"),
        ("glove:g.txt", [_h("extract"), _h("standardize", to="xavier")], "GloVe_Xavier"),
        ("glove:g.txt", [_h("extract"), _h("shuffle", axis="both", seed=1)], "GloVe_Shuffled"),
        ("glove:g.txt", [_h("shuffle", axis="rows", seed=1)], "GloVe_Shuffled(rows)"),
        ("xavier", [_h("init", method="xavier", dim=4, seed=1)], "Xavier"),
        (
            "xavier",
            [_h("init", method="xavier"), _h("standardize", to="g.safetensors", to_source="glove:g.txt")],
            "Xavier_GloVe",
        ),
        (
            "xavier",
            [
                _h("init", method="xavier"),
                _h("standardize", to="bert.safetensors", to_source="hf:bert-base-uncased"),
            ],
            "Xavier_BERT",
        ),
        ("hf:google/mt5-base", [_h("extract"), _h("align"), _h("standardize", to="xavier")], "mT5_Xavier"),
        ("hf:t5-small", [_h("standardize", to="normal:0.02")], "T5_Normal(0.02)"),
        ("glove:g.txt", [_h("scale", by="sqrt-dim", factor=17.3)], "GloVe_Scaled"),
        ("glove:g.txt", [_h("standardize", to="xavier"), _h("posenc", max_len=10)], "GloVe_Xavier_PosEnc"),
        ("glove:g.txt", [_h("frobnicate")], "GloVe_frobnicate"),
        ("glove:g.txt", [], "GloVe"),
    ],
)
def test_table_name(source, history, name) -> None:
    assert table_name(source, history) == name


def test_names_of_real_transform_histories(make_table) -> None:
    glove = make_table(torch.randn(20, 4) * 0.4, source="glove:glove.840B.300d.txt")
    x = transforms.xavier(glove.tokens, 4, seed=1)
    cases = {
        "GloVe": glove,
        "GloVe_Xavier": transforms.standardize(glove, "xavier"),
        "GloVe_Shuffled": transforms.shuffle(glove, seed=2),
        "Xavier": x,
        "Xavier_GloVe": transforms.standardize(x, glove),
    }
    for name, t in cases.items():
        assert table_name(t.source, t.history) == name


@pytest.mark.parametrize(
    ("tables", "name"),
    [
        (None, "Xavier"),
        ({"src": None, "tgt": None}, "Xavier"),
        ({"src": {"source": "glove:de.txt"}, "tgt": {"source": "glove:en.txt"}}, "GloVe"),
        ({"src": {"source": "glove:de.txt"}, "tgt": None}, "GloVe/Xavier"),
        (
            {
                "src": {"source": "hf:google/mt5-base", "history": [_h("standardize", to="xavier")]},
                "tgt": {"source": "hf:google/mt5-base", "history": [_h("standardize", to="xavier")]},
            },
            "mT5_Xavier",
        ),
        ({"src": {"source": "hf:bert-base-uncased", "history": []}}, "BERT"),
    ],
)
def test_run_name(tables, name) -> None:
    assert run_name(tables) == name


def test_sort_key_follows_the_papers_row_order() -> None:
    names = ["Xavier_T5", "T5_Shuffled", "T5", "BERT_Xavier", "Xavier", "T5_Xavier", "BERT"]
    assert sorted(names, key=sort_key) == [
        "Xavier",
        "BERT",
        "BERT_Xavier",
        "T5",
        "T5_Xavier",
        "T5_Shuffled",
        "Xavier_T5",
    ]
