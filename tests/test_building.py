"""The model a run builds: norms end to end (learning, exact resume), decoupled embeddings from
tables, the option checks, and divergence as a result."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import metrics, reverse_task, scores, tiny_cfg, train_dir
from embtool.core.errors import BadInput


def _table(path: Path, tokens: list[str], dim: int, seed: int = 0) -> torch.Tensor:
    from embtool.tables.table import EmbeddingTable, save

    vectors = torch.randn(len(tokens), dim, generator=torch.Generator().manual_seed(seed)) * 0.3
    save(EmbeddingTable(vectors, tokens, source="test", tokenizer="whitespace"), path)
    return vectors


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["pre", "admin"])
def test_pre_ln_and_admin_learn_to_reverse(tmp_path, norm):
    files = reverse_task(tmp_path)
    run = train_dir(tiny_cfg(files, tmp_path / "run", norm=norm))
    m = metrics(run)
    assert m[-1]["train_loss"] < 0.6 * m[0]["train_loss"]
    assert m[-1]["val_bleu"] > 20
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["norm"] == norm
    if norm == "admin":
        omega = config["admin_profile"]["omega"]
        assert len(omega["encoder"]) == 2 and len(omega["decoder"]) == 3 and omega["decoder"][0] == 1.0


@pytest.mark.parametrize("norm", ["post", "pre", "admin"])
def test_resume_is_exact_for_every_norm(tmp_path, norm):
    files = reverse_task(tmp_path, n_train=200, n_val=10)
    kw = dict(norm=norm, epochs=3, dropout=0.1, lr_schedule="inverse-sqrt", warmup=5, label_smoothing=0.1)
    a = train_dir(tiny_cfg(files, tmp_path / "a", **kw))
    c = train_dir(tiny_cfg(files, tmp_path / "c", **{**kw, "epochs": 1}))
    c = train_dir(dataclasses.replace(tiny_cfg(files, c, **kw), resume=True))
    assert scores(c) == scores(a)
    if norm == "admin":  # ω was learned, and saved with the model
        from safetensors.torch import load_file

        w = load_file(str(a / "last.safetensors"))["encoder.layers.0.omega.1"]
        assert w.shape == (32,) and not torch.allclose(w, w[0].expand_as(w))


def test_input_dim_projects_a_narrow_table_and_out_emb_fills_the_output(tmp_path):
    files = reverse_task(tmp_path, n_train=100, n_val=5)
    _table(tmp_path / "t.safetensors", ["0", "1", "2", "3", "4", "5", "6"], 8)
    _table(tmp_path / "o.safetensors", ["9", "8", "7", "x"], 48, seed=1)
    run = train_dir(
        tiny_cfg(
            files,
            tmp_path / "run",
            emb=str(tmp_path / "t.safetensors"),
            input_dim=8,
            output_dim=48,
            out_emb=str(tmp_path / "o.safetensors"),
            ffn_dropout=0.05,
            epochs=1,
        )
    )
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["d_model"] == 32 and config["model"]["input_dim"] == 8
    assert config["model"]["output_head"] == "chung" and config["model"]["ffn_dropout"] == 0.05
    parts = config["parameters"]
    # Chung et al.'s head: D → E_out with its bias, GELU, LayerNorm over E_out
    assert parts["input_projection"] == 2 * 8 * 32 and parts["output_projection"] == 32 * 48 + 48 + 2 * 48
    assert config["out_emb"]["missing"] == 4 + 7  # specials and 0…6: the table holds 7, 8, 9
    assert config["out_emb"]["table"]["dim"] == 48


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"input_dim": 12}, "--input-dim 12 differs from the table's D 8"),
        ({"d_model": 16}, "--d-model 16 differs from the table's D 8"),
        (
            {"out_emb": "T", "input_dim": 8, "d_model": 32},
            "t.safetensors has D=8 but the output embedding is 32",
        ),
        ({"tie_output": True, "input_dim": 8, "output_dim": 16}, "--tie-output needs one width"),
    ],
)
def test_shape_mismatches_name_the_option(tmp_path, kw, message):
    files = reverse_task(tmp_path, n_train=20, n_val=2)
    _table(tmp_path / "t.safetensors", ["0", "1", "2"], 8)
    kw = {k: (str(tmp_path / "t.safetensors") if v == "T" else v) for k, v in kw.items()}
    with pytest.raises(BadInput, match=message.replace("(", r"\(")):
        train_dir(
            tiny_cfg(files, tmp_path / "run", emb=str(tmp_path / "t.safetensors"), **{"d_model": 0, **kw})
        )


def test_warmup_longer_than_the_run_is_a_warning(tmp_path):
    files = reverse_task(tmp_path, n_train=64, n_val=2)
    heard: list[str] = []
    train_dir(
        tiny_cfg(files, tmp_path / "run", epochs=1, warmup=100),
        lambda e, i: heard.append(i["message"]) if e == "log" else None,
    )
    assert any(m.startswith("warning: --warmup 100 is longer than the run (1 steps)") for m in heard)


def test_an_exploding_run_is_marked_diverged_and_train_exits_1(tmp_path, cli):
    """Closest honest test: at test size a deep Post-LN with a high rate stalls rather than
    overflowing (see the closing note), so a rate of 1e3 makes the loss explode on its own."""
    files = reverse_task(tmp_path, n_train=200, n_val=5)
    args = ["--src", files["train_src"], "--tgt", files["train_tgt"], "--val-src", files["val_src"]]
    args += ["--val-tgt", files["val_tgt"], "--tokenizer", "whitespace", "--d-model", "16", "--heads", "2"]
    args += ["--layers", "2", "--epochs", "3", "--batch-size", "20", "--lr", "1000", "--threads", "1"]
    r = cli("train", "files", *args, "--device", "cpu", "-o", str(tmp_path / "run"))
    assert r.code == 1
    lines = [x for x in r.stderr.strip().splitlines() if x.startswith("embtool: error")]
    assert len(lines) == 1 and "training diverged at epoch 1, step" in lines[0]
    test = json.loads((tmp_path / "run" / "test.json").read_text())
    assert test["status"] == "diverged" and test["epoch"] == 1 and test["step"] >= 1
    assert metrics(tmp_path / "run")[-1]["status"] == "diverged"
    # resuming a diverged run returns it as it is
    again = cli("train", "--resume", str(tmp_path / "run"))
    assert again.code == 1 and "diverged" in again.stderr


@pytest.mark.slow
def test_deep_post_ln_stalls_where_admin_learns(tmp_path):
    """Liu et al.'s finding in miniature (12 + 12 layers, D=16, lr 3e-3, one seed): Post-LN stays
    at the unigram loss; Admin (and Pre-LN) learn. Measured: validation loss 2.40 / 2.22 / 2.19."""
    files = reverse_task(tmp_path, n_train=400, n_val=20)
    kw = dict(layers=12, d_model=16, heads=2, ff=64, epochs=2, lr=3e-3, batch_size=32)  # FFN 4·D, as measured
    post = metrics(train_dir(tiny_cfg(files, tmp_path / "post", **kw)))[-1]["val_loss"]
    admin = metrics(train_dir(tiny_cfg(files, tmp_path / "admin", norm="admin", **kw)))[-1]["val_loss"]
    assert admin < post - 0.1


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "beyond_vanilla.sh"


def test_example_is_valid_bash():
    import subprocess

    assert subprocess.run(["bash", "-n", str(EXAMPLE)]).returncode == 0


@pytest.mark.slow
def test_example_beyond_vanilla_tiny_on_real_multi30k(shared_data: Path, tmp_path: Path):
    import os
    import subprocess
    import sys

    out = tmp_path / "bv"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SIZE": "tiny",
        "OUT": str(out),
        "THREADS": "1",
        "EMBTOOL_DATA_DIR": str(shared_data),
    }
    proc = subprocess.run(
        ["bash", str(EXAMPLE)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "report.md").read_text()
    for norm in ("post", "pre", "admin"):
        assert f"word2vec_Xavier [norm={norm}]" in text
    assert "| word2vec_Xavier [input-dim 16] |" in text and "| Xavier [input-dim 16] |" in text
    assert (out / "dynamics.png").is_file() and (out / "curves.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--norm", "mid"], "invalid --norm 'mid'"),
        (["--optimizer", "sgd"], "invalid --optimizer 'sgd'"),
        (["--output-dim", "16", "--tie-output"], "--tie-output needs one width"),
    ],
)
def test_cli_bad_input_is_one_line_naming_the_option(tmp_path, cli, args, message):
    files = reverse_task(tmp_path, n_train=20, n_val=2)
    r = cli(
        "train",
        "--src",
        files["train_src"],
        "--tgt",
        files["train_tgt"],
        "--tokenizer",
        "whitespace",
        "--d-model",
        "32",
        "--epochs",
        "1",
        "-o",
        str(tmp_path / "run"),
        *args,
    )
    assert r.code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embtool: error: ") and message in lines[0]
