"""`train --dry-run`: the resolved run and its parameter counts, held against the paper's Table 5."""

from __future__ import annotations

import json
import math

import pytest

from conftest import reverse_task, run_in_process
from embtool.tasks.registry import TASKS
from embtool.training.config import TrainConfig
from embtool.training.plan import plan

SPECIALS = ["<unk>", "<pad>", "<bos>", "<eos>"]


def _sizes(text: str) -> list[tuple[int, int]]:
    """Table 5's printed vocabulary sizes ("7.8k/5.9k") as (low, high) bounds of their rounding."""
    out = []
    for part in text.split("/"):
        value, unit = float(part.rstrip("k")), 1000 if part.endswith("k") else 1
        digits = len(part.rstrip("k").split(".")[1]) if "." in part else 0
        half = 0.5 * unit / 10**digits
        out.append((math.ceil(value * unit - half), math.floor(value * unit + half)))
    return out


def _table(path, n: int, dim: int) -> str:
    """A Xavier table of ``n`` rows (the specials first) and D ``dim``, as `init xavier` writes it."""
    from embtool.tables.table import save
    from embtool.tables.transforms import xavier

    save(xavier(SPECIALS + [f"w{i}" for i in range(n - len(SPECIALS))], dim), path)
    return str(path)


def _count(tmp_path, task: str, family: str, sizes: list[int], dim: int) -> int:
    tables = [_table(tmp_path / f"{side}{n}.safetensors", n, dim) for side, n in zip("st", sizes)]
    if TASKS[task].kind == "translation":
        cfg = TrainConfig(task=task, src_emb=tables[0], tgt_emb=tables[1], family=family)
    else:
        cfg = TrainConfig(task=task, emb=tables[0], family=family)
    p = plan(cfg)
    assert p["paper"]["family"] == family and p["model"]["d_ff"] == 512
    return int(p["parameters"]["total"])


COLUMNS = [(t, c.family) for t in ("multi30k", "iwslt2017", "sst2", "mnli") for c in TASKS[t].table5]


@pytest.mark.slow
@pytest.mark.parametrize(("task", "family"), COLUMNS)
def test_parameter_counts_match_table5_within_its_rounding(tmp_path, task, family) -> None:
    """Each of the twelve counts, with vocabularies at both ends of Table 5's rounded sizes: the
    paper's figure (in M, rounded) lies within the counts' range."""
    col = TASKS[task].column(family)
    bounds = _sizes(col.vocab)
    low = _count(tmp_path, task, family, [lo for lo, _ in bounds], col.dim)
    high = _count(tmp_path, task, family, [hi for _, hi in bounds], col.dim)
    paper = float(col.params.rstrip("M")) * 1e6
    assert low - 0.5e6 <= paper <= high + 0.5e6, (low, high, paper)


def test_multi30k_glove_dry_run_is_the_papers_11m(tmp_path) -> None:
    """The paper's Multi30k vocabularies (7,853 de / 5,893 en, D 300): 11.0M with FFN 512, untied."""
    src = _table(tmp_path / "de.safetensors", 7853, 300)
    tgt = _table(tmp_path / "en.safetensors", 5893, 300)
    r = run_in_process("train", "multi30k", "--src-emb", src, "--tgt-emb", tgt, "--dry-run", "--json")
    assert r.code == 0, r.stderr
    p = json.loads(r.text)
    counts = p["parameters"]
    assert round(counts["total"] / 1e6) == 11 and counts["total"] == 11_005_465
    assert counts["input_embeddings"] == (7853 + 5893) * 300
    assert counts["output"] == 5893 * 300 + 5893
    assert counts["encoder"] == 3 * (4 * 300 * 301 + 2 * 300 * 512 + 512 + 300 + 4 * 300)
    assert (p["train"]["batch_size"], p["train"]["epochs"], p["model"]["n_heads"]) == (64, 20, 10)
    assert p["paper"]["family"] == "glove" and p["vocab"]["src_size"] == 7853


def test_dry_run_counts_equal_the_real_runs_config(tmp_path, reverse_run) -> None:
    """A real run's config.json records the counts the dry run of its settings prints."""
    config = json.loads((reverse_run / "config.json").read_text())
    cfg = TrainConfig.from_dict({**config["train"], "out": None})
    assert plan(cfg)["parameters"] == config["parameters"]
    assert config["parameters"]["total"] == config["parameters"]["trainable"] > 0


def test_dry_run_prints_settings_and_trains_nothing(tmp_path) -> None:
    files = reverse_task(tmp_path, n_train=30, n_val=3)
    out = tmp_path / "run"
    args = ["files", "--src", files["train_src"], "--tgt", files["train_tgt"], "--tokenizer", "whitespace"]
    r = run_in_process(
        "train", *args, "--d-model", "32", "--dry-run", "--report-to", "tensorboard", "-o", str(out)
    )
    text = r.text
    assert r.code == 0, r.stderr
    assert "parameters: total" in text and "FFN 512" in text and "preset" in text
    assert "dropout 0.1 (attention weights 0.1, inside the FFN 0.1)" in text
    assert "report to tensorboard" in text and "amp auto" in text
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "rate"), [([], 0.1), (["--attn-dropout", "0"], 0.0)], ids=["default", "faster"]
)
def test_dry_run_resolves_attention_dropout(tmp_path, args, rate) -> None:
    """Issue 22.1: under --preset paper (the default) the attention weights drop at 0.1, as
    nn.Transformer applies the paper's one dropout rate there; --attn-dropout 0 is the faster setting."""
    src = _table(tmp_path / "de.safetensors", 40, 300)
    tgt = _table(tmp_path / "en.safetensors", 30, 300)
    r = run_in_process("train", "multi30k", "--src-emb", src, "--tgt-emb", tgt, *args, "--dry-run", "--json")
    assert r.code == 0, r.stderr
    p = json.loads(r.text)
    assert p["train"]["preset"] == "paper"
    assert p["train"]["attn_dropout"] == p["model"]["attn_dropout"] == rate
    assert p["train"]["dropout"] == p["model"]["dropout"] == 0.1
