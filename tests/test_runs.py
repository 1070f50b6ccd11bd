"""Reading run folders for reports: statuses instead of exceptions, names, finding runs below folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import GLOVE_X, write_run
from embtool.core.errors import BadInput
from embtool.experiment.report.runs import find_run_dirs, per_run_settings, read_run


def test_a_complete_run_is_named_from_its_tables_and_flags(tmp_path: Path) -> None:
    run = read_run(
        write_run(tmp_path / "r", tables={"src": GLOVE_X, "tgt": GLOVE_X}, train={"freeze_emb": True})
    )
    assert run.complete and run.name == "GloVe_Xavier [frozen]" and run.value == 30.0 and run.epoch == 3
    train = {"input_dim": 64, "output_dim": 128, "output_head": "chung"}
    assert read_run(write_run(tmp_path / "w", train=train)).name == "Xavier [input-dim 64, output-dim 128]"


@pytest.mark.parametrize(
    ("train", "name"),
    [({"output_dim": 128, "output_head": "linear"}, "Xavier [output-dim 128 linear]"),
     ({"output_dim": 128}, "Xavier [output-dim 128 linear]")],
    ids=["linear", "before-issue-25"],
)  # fmt: skip
def test_a_linear_output_head_says_so(tmp_path: Path, train: dict, name: str) -> None:
    """--output-head linear (every --output-dim run before issue 25) is another model than Chung's head."""
    run = read_run(write_run(tmp_path / "r", train=train))
    assert run.name == name and run.config["train"]["output_head"] == "linear"


def test_an_old_folder_reports_as_it_resumes(tmp_path: Path) -> None:
    """config.json is migrated for a report as for a resume: a folder from before the presets was
    --preset fast (FFN 4·D), and a config_version newer than this embtool is the run's status."""
    import json

    old = read_run(write_run(tmp_path / "old", train={"n_heads": 4}))
    assert old.complete and old.config["train"]["preset"] == "fast" and old.config["train"]["heads"] == 4
    new = write_run(tmp_path / "new")
    config = json.loads((new / "config.json").read_text())
    (new / "config.json").write_text(json.dumps({**config, "config_version": 99}))
    run = read_run(new)
    assert not run.complete and run.status.startswith("failed: config.json: config_version 99")


def test_a_diverged_run_is_finished_without_a_value(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "r", result=None)
    (folder / "test.json").write_text('{"status": "diverged", "epoch": 2, "step": 9, "loss": null}')
    run = read_run(folder)
    assert run.complete and run.diverged and run.status == "diverged" and run.value is None


def test_a_stalled_run_is_complete_with_its_value_and_marked(tmp_path: Path) -> None:
    import json

    folder = write_run(tmp_path / "r", result=0.2, curve=[0.1, 0.2], best_epoch=1)
    test = json.loads((folder / "test.json").read_text())
    (folder / "test.json").write_text(json.dumps({"status": "stalled", "stalled": "loss flat", **test}))
    run = read_run(folder)
    assert run.complete and run.stalled and not run.diverged and run.status == "stalled"
    assert run.value == 0.2
    (folder / "test.json").write_text(json.dumps({"status": "stalled", "stalled": "loss flat"}))
    assert read_run(folder).status == "failed: test.json has no number 'bleu'"  # broken first


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
        (
            lambda p: (p / "metrics.jsonl").write_text('{"epoch": 1, "val_loss": "abc"}\n'),
            'failed: metrics.jsonl line 1: val_loss "abc" is not a number',
        ),
        (
            lambda p: (p / "metrics.jsonl").write_text('{"epoch": 1, "val_loss": 1.0}\n{"epoch": "2"}\n'),
            'failed: metrics.jsonl line 2: epoch "2" is not a number',
        ),
        (lambda p: (p / "metrics.jsonl").write_text(""), "incomplete: no epoch in metrics.jsonl"),
        (lambda p: (p / "metrics.jsonl").write_text("\n \n"), "incomplete: no epoch in metrics.jsonl"),
        (lambda p: (p / "metrics.jsonl").unlink(), "incomplete: no epoch in metrics.jsonl"),
    ],
    ids=["no-test", "test-not-object", "test-no-bleu", "metrics-not-json", "config-not-json",
         "metrics-val-loss-text", "metrics-epoch-text", "metrics-empty", "metrics-blank", "metrics-gone"],
)  # fmt: skip
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


def test_metric_chooses_the_runs_result(tmp_path: Path) -> None:
    import json

    run = write_run(tmp_path / "t", result=30.0)
    test = json.loads((run / "test.json").read_text())
    (run / "test.json").write_text(json.dumps({**test, "bleu_tok": 33.5}))
    assert read_run(run, "bleu").value == 30.0 and read_run(run, "bleu-tok").value == 33.5
    assert read_run(run, "bleu").value2 is None and read_run(run, "bleu-tok").value2 is None
    both = read_run(run)  # auto: both BLEUs, side by side (issue 25.2)
    assert (both.value, both.value2, both.epoch) == (30.0, 33.5, 3)
    assert read_run(run, "acc").status.startswith("failed: --metric acc is for classification")
    old = write_run(tmp_path / "old", result=30.0)
    assert "use --metric bleu" in read_run(old, "bleu-tok").status
    assert (read_run(old).value, read_run(old).value2) == (30.0, None)  # auto: the one it has


def test_classification_metric_paper_selection_or_at_lowest_loss(tmp_path: Path) -> None:
    import json

    # curve 50, 65, 60 with val_loss 4/epoch: the lowest loss is at epoch 3
    run = write_run(tmp_path / "c", task="sst2", result=65.0, best_epoch=2, curve=[50.0, 65.0, 60.0])
    test = json.loads((run / "test.json").read_text())
    test["at_lowest_val_loss"] = {"epoch": 3, "val_loss": 1.33, "val_acc": 60.0}
    (run / "test.json").write_text(json.dumps(test))
    assert (read_run(run).value, read_run(run).epoch) == (65.0, 2.0)
    assert (read_run(run, "acc-at-loss").value, read_run(run, "acc-at-loss").epoch) == (60.0, 3.0)
    # a run from before §5's selection stored the lowest-loss accuracy: the paper's is recomputed
    legacy = write_run(tmp_path / "l", task="sst2", result=60.0, best_epoch=3, curve=[50.0, 65.0, 60.0])
    t = json.loads((legacy / "test.json").read_text())
    del t["selection"]
    (legacy / "test.json").write_text(json.dumps(t))
    assert (read_run(legacy).value, read_run(legacy).epoch) == (65.0, 2.0)
    assert read_run(legacy, "acc-at-loss").value == 60.0
