"""The variant tables of the paper's §3: names, Eq. 1 and Eq. 4 moments, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embtool.core.errors import BadInput
from embtool.experiment import variants as lib
from embtool.tables.naming import table_name
from embtool.tables.stats import moments, xavier_std
from embtool.tables.table import EmbeddingTable


@pytest.mark.parametrize(
    ("text", "variants"),
    [("xavier,pretrained", ["xavier", "pretrained"]), ("xavier-like, shuffled", ["xavier_like", "shuffled"])],
)
def test_parse_variants(text, variants) -> None:
    assert lib.parse_variants(text) == variants


def test_parse_variants_lists_choices() -> None:
    with pytest.raises(BadInput, match="unknown variant 'glove'; valid choices: xavier, pretrained"):
        lib.parse_variants("xavier,glove")


def test_variant_tables_are_the_papers_initialisations() -> None:
    rng = np.random.default_rng(0)
    table = EmbeddingTable(
        rng.normal(0.05, 0.4, (12, 16)).astype(np.float32),
        [f"w{i}" for i in range(12)],
        source="word2vec:toy.bin",
        tokenizer="whitespace",
    )
    names = {v: lib.variant_table(table, v, seed=3) for v in lib.VARIANTS}
    assert {v: table_name(t.source, t.history) for v, t in names.items()} == {
        "xavier": "Xavier",
        "pretrained": "word2vec",
        "standardized": "word2vec_Xavier",
        "shuffled": "word2vec_Shuffled",
        "xavier_like": "Xavier_word2vec",
    }
    x_std = xavier_std(table.n, table.dim)
    assert moments(names["standardized"].vectors)[1] == pytest.approx(x_std, rel=1e-5)  # Eq. 1
    assert torch.equal(
        names["shuffled"].tensor().flatten().sort().values, table.tensor().flatten().sort().values
    )
    m, s = moments(table.vectors)
    assert moments(names["xavier_like"].vectors) == pytest.approx((m, s), rel=1e-4)  # Eq. 4
    for v in lib.RANDOM_VARIANTS:  # drawn with the run's seed
        assert not torch.equal(lib.variant_table(table, v, seed=4).tensor(), names[v].tensor())
        assert torch.equal(lib.variant_table(table, v, seed=3).tensor(), names[v].tensor())


def test_variant_standardize_and_family(tmp_path) -> None:
    from pathlib import Path

    import numpy as np

    from embtool.experiment.variants import input_family, variant_standardize
    from embtool.tables.table import EmbeddingTable, save

    a, b = Path("a.safetensors"), Path("b.safetensors")
    assert variant_standardize("standardized", [a, b]) == "xavier"
    assert variant_standardize("xavier_like", [a]) == "a.safetensors"
    assert variant_standardize("xavier_like", [a, b]) == "off"  # one --standardize TABLE for two sides: none
    assert variant_standardize("shuffled", [a]) == "off"
    save(
        EmbeddingTable(np.zeros((2, 300), np.float32), ["x", "y"], source="glove:g.txt"),
        tmp_path / "g.safetensors",
    )
    assert input_family(tmp_path / "g.safetensors", "sst2") == "glove"
    assert input_family(tmp_path / "g.safetensors", "files") is None
