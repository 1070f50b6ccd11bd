"""for_vocab / to_embedding: rows in a framework's vocabulary order (HF tokenizer, lists, dict files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embtool.core.errors import BadInput
from embtool.tables.interop import FAIRSEQ_SPECIALS, OPENNMT_SPECIALS, read_target
from embtool.tables.table import EmbeddingTable
from embtool.text.vocabfile import Vocabulary

PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "##s", "mat"]


@pytest.fixture
def table() -> EmbeddingTable:
    rng = np.random.default_rng(0)
    tokens = ["mat", "the", "[CLS]", "Cat", "dog", "##s"]
    return EmbeddingTable(rng.standard_normal((6, 4)).astype(np.float32), tokens, origin="t.safetensors")


def test_hf_tokenizer_puts_every_row_at_its_id(tmp_path, table) -> None:
    from transformers import BertTokenizer

    BertTokenizer(vocab={t: i for i, t in enumerate(PIECES)}).save_pretrained(tmp_path)
    tok = BertTokenizer.from_pretrained(tmp_path)
    weight, cov = table.for_vocab(tok, missing="zero")
    assert weight.shape == (len(tok), 4) and weight.dtype == torch.float32
    rows = {t: torch.from_numpy(table.vectors[i]) for i, t in enumerate(table.tokens)}
    for token in ["mat", "the", "[CLS]", "##s"]:
        assert torch.equal(weight[tok.convert_tokens_to_ids(token)], rows[token])
    assert torch.equal(weight[tok.convert_tokens_to_ids("cat")], rows["Cat"]) is False  # no upper-casing
    assert (cov.found, cov.missing) == (4, len(tok) - 4)
    assert torch.count_nonzero(weight[tok.convert_tokens_to_ids("[PAD]")]) == 0
    same, _ = table.for_vocab(f"hf:{tmp_path}", missing="zero")  # the same tokenizer read from its folder
    assert torch.equal(same, weight)


def test_list_case_fallback_rows_and_fill(table) -> None:
    weight, cov = table.for_vocab(["dog", "DOG", "zebra", "the"], rows=6, seed=1)
    assert weight.shape == (6, 4)
    assert torch.equal(weight[0], weight[1]) and torch.equal(weight[3], table.tensor()[1])
    assert (cov.found, cov.missing) == (3, 3)
    # normal fill: drawn at the found rows' scale, not zeros
    assert 0.2 < float(weight[[2, 4, 5]].std()) < 3
    assert not torch.equal(
        table.for_vocab(["dog", "x"], seed=2)[0][1], table.for_vocab(["dog", "x"], seed=3)[0][1]
    )


def test_rows_the_table_filled_count_as_missing() -> None:
    t = EmbeddingTable(np.ones((2, 3), np.float32), ["a", "b"], missing=[1])
    _, cov = t.for_vocab(["a", "b"], missing="zero")
    assert (cov.found, cov.missing) == (1, 1)


def test_fairseq_and_opennmt_dictionaries(tmp_path, table) -> None:
    (tmp_path / "dict.txt").write_text("the 10\nmat 4\ndog 2 #fairseq:overwrite\n", encoding="utf-8")
    (tmp_path / "vocab.src").write_text("the\t10\nmat\t4\n", encoding="utf-8")
    fs = read_target(f"fairseq:{tmp_path / 'dict.txt'}")
    assert fs.tokens == [*FAIRSEQ_SPECIALS, "the", "mat", "dog"]
    onmt = read_target(f"opennmt:{tmp_path / 'vocab.src'}")
    assert onmt.tokens == [*OPENNMT_SPECIALS, "the", "mat"]
    weight, cov = table.for_vocab(f"fairseq:{tmp_path / 'dict.txt'}")
    assert torch.equal(weight[4], table.tensor()[1]) and torch.equal(weight[6], table.tensor()[4])
    assert cov.share == pytest.approx(1.0)  # the specials have no corpus count
    (tmp_path / "bad.txt").write_text("the ten\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"bad.txt:1: count 'ten'"):
        read_target(f"fairseq:{tmp_path / 'bad.txt'}")


def test_vocabulary_counts_give_the_corpus_share(table) -> None:
    _, cov = table.for_vocab(Vocabulary(["the", "zebra"], [3, 1]))
    assert cov.share == pytest.approx(0.75)


def test_to_embedding(table) -> None:
    emb = table.to_embedding(freeze=True)
    assert isinstance(emb, torch.nn.Embedding) and not emb.weight.requires_grad
    assert torch.equal(emb.weight, table.tensor())
    emb = table.to_embedding(["the", "nope"], padding_idx=1, missing="zero")
    assert emb.padding_idx == 1 and torch.equal(emb.weight[0], table.tensor()[1])


def test_errors(table) -> None:
    with pytest.raises(BadInput, match="none of the 2 tokens"):
        table.for_vocab(["x", "y"])
    with pytest.raises(BadInput, match="valid choices"):
        table.for_vocab(["the"], missing="copy")
    with pytest.raises(BadInput, match="cannot read a vocabulary from int"):
        table.for_vocab(3)
    with pytest.raises(BadInput, match="no such dictionary file"):
        table.for_vocab("fairseq:/nonexistent/dict.txt")


def test_table_module_stays_torch_free() -> None:
    import subprocess
    import sys

    code = "import sys, embtool.tables.table; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
