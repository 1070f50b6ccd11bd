"""Reading run folders for reports: statuses instead of exceptions, names, finding runs below folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import GLOVE_X, write_run
from embtool.errors import BadInput
from embtool.report.runs import find_run_dirs, per_run_settings, read_run


def test_a_complete_run_is_named_from_its_tables_and_flags(tmp_path: Path) -> None:
    run = read_run(
        write_run(tmp_path / "r", tables={"src": GLOVE_X, "tgt": GLOVE_X}, train={"freeze_emb": True})
    )
    assert run.complete and run.name == "GloVe_Xavier [frozen]" and run.value == 30.0 and run.epoch == 3
    wide = read_run(write_run(tmp_path / "w", train={"input_dim": 64, "output_dim": 128}))
    assert wide.name == "Xavier [input-dim 64, output-dim 128]"


def test_a_diverged_run_is_finished_without_a_value(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "r", result=None)
    (folder / "test.json").write_text('{"status": "diverged", "epoch": 2, "step": 9, "loss": null}')
    run = read_run(folder)
    assert run.complete and run.diverged and run.status == "diverged" and run.value is None


@pytest.mark.parametrize(
    ("damage", "status"),
    [
        (lambda p: (p / "test.json").unlink(), "incomplete: 3 epoch(s) in metrics.jsonl, no test.json"),
        (lambda p: (p / "test.json").write_text("[1]"), "failed: test.json is not readable JSON"),
        (lambda p: (p / "test.json").write_text("{}"), "failed: test.json has no number 'bleu'"),
        (
            lambda p: (p / "metrics.jsonl").write_text("{nope\n"),
            "failed: metrics.jsonl line 1 is not valid JSON",
        ),
        (lambda p: (p / "config.json").write_text("{"), "failed: config.json is not readable JSON"),
    ],
)
def test_problems_become_the_runs_status(tmp_path: Path, damage, status) -> None:
    folder = write_run(tmp_path / "r")
    damage(folder)
    run = read_run(folder)
    assert not run.complete and run.status.startswith(status)


def test_runs_are_found_below_folders_once(tmp_path: Path) -> None:
    a = write_run(tmp_path / "grid" / "a" / "s1")
    b = write_run(tmp_path / "grid" / "b" / "s1")
    (tmp_path / "grid" / "ckpt").mkdir()
    (tmp_path / "grid" / "ckpt" / "config.json").write_text(
        '{"hidden_size": 8}'
    )  # a checkpoint's, not a run's
    assert find_run_dirs([tmp_path / "grid", a, a / "config.json"]) == [a, b]
    with pytest.raises(BadInput, match="no such run folder"):
        find_run_dirs([tmp_path / "none"])
    (tmp_path / "models" / "bert").mkdir(parents=True)
    (tmp_path / "models" / "bert" / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(BadInput, match="no run folders"):
        find_run_dirs([tmp_path / "models"])


def test_per_run_settings_are_the_seed_inputs_and_environment() -> None:
    keep = per_run_settings()
    assert {"seed", "device", "threads", "emb", "src", "out", "resume", "data_dir"} <= keep
    assert not {"lr", "layers", "epochs", "posenc", "freeze_emb"} & keep
