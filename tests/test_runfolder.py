"""The run folder: its state, reading what `train` wrote, resume settings, the result line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embtool.errors import BadInput
from embtool.training.runfolder import CONFIG, METRICS, TEST, RunFolder, RunResult, resume_config


def test_state_follows_the_files(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    assert folder.state == "todo"
    folder.path.mkdir()
    folder.write_json(CONFIG, {"task": "multi30k", "train": {"task": "multi30k"}})
    assert folder.state == "resume"
    folder.write_json(TEST, {"bleu": 30.0, "best_epoch": 2, "split": "test"})
    assert folder.state == "done"
    folder.clear_result()
    assert folder.state == "resume" and not folder.file(TEST).exists()


def test_metrics_round_trip_and_bad_lines_are_named(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    assert folder.read_metrics() == [] and folder.done_epochs() == 0
    lines = [{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 1.5}]
    folder.write_metrics(lines)
    assert folder.read_metrics() == lines and folder.done_epochs() == 2
    folder.file(METRICS).write_text('{"epoch": 1}\n{oops\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 2 is not valid JSON"):
        folder.read_metrics()
    folder.file(METRICS).write_text('{"epoch": 1}\n[1]\n')
    with pytest.raises(ValueError, match="line 2 has no 'epoch'"):
        folder.read_metrics()


@pytest.mark.parametrize(
    ("test", "line"),
    [
        (
            {"bleu": 31.234, "best_epoch": 4, "split": "test_2016_flickr"},
            "test BLEU 31.23 (best epoch 4, test_2016_flickr)",
        ),
        ({"best_val_acc": 80.5, "best_epoch": 3}, "best val acc 80.50 (epoch 3)"),
        (
            {"best_val_acc": 60.0, "best_val_acc_mismatched": 61.0, "best_epoch": 2},
            "val acc 60.00 / mismatched 61.00",
        ),
    ],
)
def test_result_summary(tmp_path: Path, test, line) -> None:
    result = RunResult(tmp_path, test)
    assert line in result.summary() and str(tmp_path) in result.summary()
    assert result.best_epoch == test["best_epoch"]


def test_resume_config_reads_the_settings_and_old_field_names(tmp_path: Path) -> None:
    # config.json from before the options and fields shared names (n_heads, n_layers, d_ff)
    train = {
        "task": "files",
        "src": "a",
        "tgt": "b",
        "n_heads": 2,
        "n_layers": 1,
        "d_ff": 64,
        "out": "elsewhere",
    }
    (tmp_path / CONFIG).write_text(json.dumps({"train": train}))
    cfg = resume_config(tmp_path)
    assert (cfg.heads, cfg.layers, cfg.ff) == (2, 1, 64)
    assert cfg.resume and cfg.out == str(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no config.json"),
        ("{", "not a readable run config"),
        ('{"train": 3}', "not a readable run config"),
        ('{"train": {"bogus": 1}}', "unknown training setting"),
    ],
)
def test_resume_config_errors_name_the_folder(tmp_path: Path, content, message) -> None:
    if content is not None:
        (tmp_path / CONFIG).write_text(content)
    with pytest.raises(BadInput, match=message):
        resume_config(tmp_path)
