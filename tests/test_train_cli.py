"""`embtool train` as a user runs it: a subprocess, its exit codes, its one-line errors, --resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import reverse_task

TINY = [
    "--tokenizer",
    "whitespace",
    "--d-model",
    "16",
    "--heads",
    "2",
    "--layers",
    "1",
    "--dropout",
    "0",
    "--attn-dropout",
    "0",
    "--lr",
    "0.003",
    "--batch-size",
    "32",
    "--device",
    "cpu",
    "--threads",
    "1",
]


def files_args(files: dict[str, str]) -> list[str]:
    return [
        "files",
        "--src",
        files["train_src"],
        "--tgt",
        files["train_tgt"],
        "--val-src",
        files["val_src"],
        "--val-tgt",
        files["val_tgt"],
    ]


def test_train_files_writes_a_run_folder(tmp_path, embtool):
    files = reverse_task(tmp_path, n_train=200, n_val=10)
    r = embtool("train", *files_args(files), *TINY, "--epochs", "2", "-o", str(tmp_path / "run"), "--json")
    assert r.code == 0, r.stderr
    result = json.loads(r.text)
    assert result["split"] == "val" and result["beam"] == 1
    assert "epoch 2:" in r.stderr and "test BLEU" in r.stderr
    assert "src vocabulary: 14 tokens (whitespace)" in r.stderr
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def run_in_process(capsys, *args: str) -> tuple[int, str]:
    """The CLI in this process (fast: torch is imported once); returns (exit code, stderr)."""
    from embtool.cli import main

    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["wmt14"], "unknown task 'wmt14'; valid choices: multi30k, iwslt2017, sst2, mnli, files"),
        ([], "give a TASK"),
        (["files", "--src", "a.txt"], "task files needs --src FILE and --tgt FILE"),
        (["files", "--src", "nope.de", "--tgt", "nope.en"], "nope.de: no such file"),
        (["--resume", "no/such/run"], "no config.json"),
        (["multi30k", "--device", "tpu"], "invalid --device 'tpu'; valid choices: ['auto', 'cpu', 'cuda']"),
        (["multi30k", "--data-dir", "no/such/dir"], "no/such/dir: no such folder"),
        (["multi30k", "--emb", "x.safetensors", "--src-emb", "y.safetensors"], "not both"),
        (["sst2", "--max-len", "2"], "--max-len must be between 4 and 100000"),
        (["sst2", "--max-len", "1000000000000"], "--max-len must be between 4 and 100000"),
        (["sst2", "--seed", "99999999999999999999"], "--seed must be below 2**63"),
        (["sst2", "--layers", "0"], "--layers must be at least 1"),
        (["sst2", "--lr", "nan"], "--lr must be a finite number, got nan"),
        (["sst2", "--lr", "inf"], "--lr must be a finite number, got inf"),
        (["sst2", "--clip-norm", "nan"], "--clip-norm must be a finite number, got nan"),
        (["sst2", "--adam-eps", "inf"], "--adam-eps must be a finite number"),
        (["sst2", "--d-model", "1000000000"], "--d-model must be at most 65,536"),
        (["sst2", "--d-model", "30", "--heads", "4"], "--heads 4 must divide --d-model 30"),
    ],
    ids=["unknown-task", "no-task", "files-no-tgt", "files-missing", "resume-missing", "device", "data-dir",
         "emb-twice", "max-len-small", "max-len-huge", "seed-huge", "layers-0", "lr-nan", "lr-inf",
         "clip-norm-nan", "adam-eps-inf", "d-model-huge", "heads-divide"],
)  # fmt: skip
def test_errors_are_one_line_with_exit_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, err = run_in_process(capsys, "train", *args, "-o", str(tmp_path / "run"))
    assert code == 2, err
    assert err.startswith("embtool: error: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing left behind (issue 14.8)


def test_missing_table_is_exit_2(tmp_path, capsys):
    files = reverse_task(tmp_path, n_train=20, n_val=2)
    code, err = run_in_process(
        capsys,
        "train",
        *files_args(files),
        "--emb",
        str(tmp_path / "none.safetensors"),
        "-o",
        str(tmp_path / "r"),
    )
    assert code == 2
    assert err.strip() == f"embtool: error: {tmp_path / 'none.safetensors'}: no such file"


def test_existing_run_needs_resume_and_a_finished_run_resumes_to_itself(tmp_path, capsys):
    files = reverse_task(tmp_path, n_train=100, n_val=5)
    run = tmp_path / "run"
    assert (
        run_in_process(capsys, "-q", "train", *files_args(files), *TINY, "--epochs", "1", "-o", str(run))[0]
        == 0
    )
    code, err = run_in_process(capsys, "train", *files_args(files), *TINY, "--epochs", "1", "-o", str(run))
    assert code == 2
    assert err.startswith("embtool: error: run folder") and f"--resume {run}" in err
    code, err = run_in_process(capsys, "train", "--resume", str(run))
    assert code == 0, err
    assert "complete" in err


def test_help_has_an_example(embtool):
    r = embtool("train", "--help")
    assert r.code == 0
    assert "embtool train --resume" in r.text


def _scores(run: Path) -> list[tuple]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(m["epoch"], m["train_loss"], m["val_loss"], m["val_bleu"]) for m in lines]


@pytest.mark.slow
def test_kill_9_between_epochs_then_resume_equals_uninterrupted(tmp_path, embtool):
    files = reverse_task(tmp_path, n_train=3000, n_val=30, seed=random.Random(1).randint(0, 99))
    args = [*files_args(files), *TINY, "--d-model", "32", "--heads", "4", "--dropout", "0.1", "--epochs", "4"]
    whole = embtool("train", *args, "-o", str(tmp_path / "whole"))
    assert whole.code == 0, whole.stderr

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "embtool", "-q", "train", *args, "-o", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and metrics.read_text().strip():
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "test.json").exists()
    done = len(metrics.read_text().splitlines())
    assert 1 <= done < 4

    resumed = embtool("train", "--resume", str(run))
    assert resumed.code == 0, resumed.stderr
    assert f"resuming {run} after epoch {done}" in " ".join(resumed.stderr.split())  # rich may wrap it
    assert _scores(run) == _scores(tmp_path / "whole")
    a = json.loads((run / "test.json").read_text())
    b = json.loads((tmp_path / "whole" / "test.json").read_text())
    assert a["bleu"] == b["bleu"] and a["best_epoch"] == b["best_epoch"]
    assert (run / "hyps.test.txt").read_text() == (tmp_path / "whole" / "hyps.test.txt").read_text()


@pytest.mark.slow
def test_short_real_multi30k_run(tmp_path, embtool, shared_data):
    r = embtool(
        "train",
        "multi30k",
        "--data-dir",
        str(shared_data / "multi30k"),
        "--d-model",
        "64",
        "--heads",
        "4",
        "--layers",
        "1",
        "--ff",
        "256",  # 4·D, as before the paper preset's 512: the test's cost stays what it was
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--lr",
        "1e-3",
        "--max-train-examples",
        "3000",
        "--max-eval-examples",
        "100",
        "--device",
        "cpu",
        "-o",
        str(tmp_path / "run"),
        "--json",
    )
    assert r.code == 0, r.stderr
    result = json.loads(r.text)
    assert result["split"] == "test_2016_flickr"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["src_lang"] == "de" and config["vocab"]["src_size"] > 500
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[1]["val_loss"] < lines[0]["val_loss"]
    hyps = (tmp_path / "run" / "hyps.test.txt").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 100 and sum(bool(h.strip()) for h in hyps) > 50


@pytest.mark.slow
def test_demo_runs_end_to_end_with_a_tiny_budget(tmp_path, shared_data):
    """examples/demo.sh (the `make demo` job) with its knobs turned down: four runs, a report, and
    tables that are exactly the trained model's N × D, so Eq. 1 gives the model's Xavier σ."""
    from embtool.tables.stats import xavier_std
    from embtool.tables.table import load

    root = Path(__file__).resolve().parents[1]
    demo = tmp_path / "demo"
    env = dict(
        os.environ,
        EMBTOOL_DATA_DIR=str(shared_data),
        DEMO_DIR=str(demo),
        DEMO_TRAIN_EXAMPLES="200",
        DEMO_EVAL_EXAMPLES="20",
        DEMO_EPOCHS="1",
        DEMO_DIM="16",
        DEMO_LAYERS="1",
        DEMO_HEADS="2",
        DEMO_W2V_EPOCHS="1",
        DEMO_W2V_EXAMPLES="400",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    proc = subprocess.run(
        ["bash", str(root / "examples" / "demo.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("xavier", "w2v", "w2v_x", "w2v_shuf"):
        assert (demo / "runs" / name / "test.json").is_file()
    report = (demo / "report.md").read_text(encoding="utf-8")
    assert "w2v_x" in report and "w2v_shuf" in report
    assert (demo / "curves.png").is_file()
    config = json.loads((demo / "runs" / "w2v_x" / "config.json").read_text())
    for lang, side in (("de", "src"), ("en", "tgt")):
        table = load(demo / f"w2v_x.{lang}.safetensors")
        # the table is the model's N × D (its vocabulary is the training slice's) …
        assert (table.n, table.dim) == (config["vocab"][f"{side}_size"], config["model"]["d_model"])
        # … so Eq. 1 gave it Xavier's σ for the model that trains
        assert float(table.tensor().std()) == pytest.approx(xavier_std(table.n, table.dim), rel=1e-3)


def test_a_failed_start_removes_the_folder_it_made(tmp_path, capsys):
    """Issue 14.8: a run that fails after making its folder (here: a table with no vocabulary token)
    leaves nothing that would block `-o` or look resumable."""
    import numpy as np

    from embtool.tables.table import EmbeddingTable, save

    files = reverse_task(tmp_path, n_train=20, n_val=2)
    save(
        EmbeddingTable(np.ones((1, 2), np.float32), ["zzz"], tokenizer="whitespace"),
        tmp_path / "t.safetensors",
    )
    run = tmp_path / "runs" / "r"
    args = ["train", *files_args(files), *TINY, "--d-model", "2", "--heads", "1", "-o", str(run)]
    code, err = run_in_process(capsys, *args, "--emb", str(tmp_path / "t.safetensors"))
    assert code == 2 and "none of the" in err and not run.exists()
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    code, _ = run_in_process(capsys, *args[:-1], str(keep), "--emb", str(tmp_path / "t.safetensors"))
    assert code == 2 and sorted(p.name for p in keep.iterdir()) == ["notes.txt"]


def test_out_naming_a_file_is_exit_2(tmp_path, capsys):
    """Issue 14.9: `-o existing_file` is bad input naming the option, not a FileExistsError."""
    (tmp_path / "afile").write_text("keep")
    code, err = run_in_process(capsys, "train", "sst2", "-o", str(tmp_path / "afile"))
    assert (
        code == 2
        and err.strip() == f"embtool: error: --out {tmp_path / 'afile'}: is a file; give a folder for the run"
    )
    assert (tmp_path / "afile").read_text() == "keep"


def test_resume_takes_more_epochs_and_refuses_other_changes(tmp_path, capsys):
    """Issue 14.10: `--resume done_run --epochs 3 …` ignored every other option; now the allowed ones
    apply (and are said), the others are refused before anything changes."""
    files = reverse_task(tmp_path, n_train=60, n_val=5)
    run = tmp_path / "run"
    assert (
        run_in_process(capsys, "-q", "train", *files_args(files), *TINY, "--epochs", "1", "-o", str(run))[0]
        == 0
    )
    test_json = (run / "test.json").read_bytes()
    code, err = run_in_process(capsys, "train", "--resume", str(run), "--epochs", "2", "--lr", "0.1")
    assert code == 2 and "--lr 0.1 (the run has 0.003) would change the run" in err
    assert (run / "test.json").read_bytes() == test_json
    code, err = run_in_process(capsys, "train", "--resume", str(run), "--epochs", "2", "--threads", "1")
    assert code == 0, err
    assert "resume: --epochs 2 (was 1)" in err and "epoch 2:" in err
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_out_naming_a_dangling_link_is_exit_2(tmp_path, capsys):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    code, err = run_in_process(capsys, "train", "sst2", "-o", str(tmp_path / "link"))
    assert code == 2 and err.strip().startswith(f"embtool: error: --out {tmp_path / 'link'}: a link to ")
    assert (tmp_path / "link").is_symlink() and not (tmp_path / "nowhere").exists()


def test_a_resume_that_fails_before_training_leaves_the_folder_as_it_was(tmp_path, capsys, monkeypatch):
    """Issue 26.7: config.json was rewritten and the test hypotheses deleted before the resumed state
    was restored; a resume that fails there now changes nothing."""
    files = reverse_task(tmp_path, n_train=60, n_val=5)
    run = tmp_path / "run"
    args = [*files_args(files), *TINY, "--epochs", "1", "-o", str(run)]
    assert run_in_process(capsys, "-q", "train", *args)[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert "hyps.test.txt" in before or "test.json" in before

    def broken(*a, **kw):
        raise RuntimeError("the optimizer state does not fit")

    monkeypatch.setattr("embtool.training.amp.Precision.load_state_dict", broken)
    code, err = run_in_process(capsys, "train", "--resume", str(run), "--epochs", "2", "--threads", "1")
    assert code == 1 and "does not fit" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_corrupt_state_is_said_before_the_data_is_read(tmp_path, capsys, monkeypatch):
    """Issue 21.8: a broken state.pt was reported only after the data was loaded and tokenized."""
    files = reverse_task(tmp_path, n_train=60, n_val=5)
    run = tmp_path / "run"
    assert (
        run_in_process(capsys, "-q", "train", *files_args(files), *TINY, "--epochs", "1", "-o", str(run))[0]
        == 0
    )
    (run / "state.pt").write_bytes(b"not a checkpoint")

    def no_data(*a, **kw):
        raise AssertionError("the data was read before state.pt")

    monkeypatch.setattr("embtool.tasks.load_files", no_data)
    code, err = run_in_process(capsys, "train", "--resume", str(run), "--epochs", "2", "--threads", "1")
    assert code == 2 and f"{run / 'state.pt'}: not a readable resume state" in err, err
