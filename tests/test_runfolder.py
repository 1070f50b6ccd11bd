"""The run folder: its state, reading what `train` wrote, resume settings, the result line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embtool.core.errors import BadInput
from embtool.training.runfolder import CONFIG, METRICS, TEST, RunFolder, RunResult, resume_config, stalled


def test_state_follows_the_files(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    assert folder.state == "todo"
    folder.path.mkdir()
    folder.write_json(CONFIG, {"task": "multi30k", "train": {"task": "multi30k"}})
    assert folder.state == "resume"
    assert folder.end_status() is None  # no test.json
    folder.write_json(TEST, {"bleu": 30.0, "best_epoch": 2, "split": "test"})
    assert folder.state == "resume"  # no epoch in metrics.jsonl: not finished, whatever test.json says
    folder.file(METRICS).write_text("\n")
    assert folder.state == "resume"
    folder.write_metrics([{"epoch": 1, "val_loss": 1.0}])
    assert folder.state == "done" and folder.end_status() is None
    folder.write_json(
        TEST, {"status": "stalled", "stalled": "…", "bleu": 0.0, "best_epoch": 1, "split": "test"}
    )
    assert folder.end_status() == "stalled"
    folder.file(TEST).write_text("{")
    assert folder.state == "done" and folder.end_status() is None  # unreadable: no status to tell
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
        (
            {
                "status": "stalled",
                "stalled": "loss 5.1 at epoch 9",
                "bleu": 0.1,
                "best_epoch": 1,
                "split": "test",
            },
            "test BLEU 0.10 (best epoch 1, test); stalled, it learned nothing (loss 5.1 at epoch 9)",
        ),
    ],
)
def test_result_summary(tmp_path: Path, test, line) -> None:
    result = RunResult(tmp_path, test)
    assert line in result.summary() and str(tmp_path) in result.summary()
    assert result.best_epoch == test["best_epoch"]


def _epochs(key: str, *rows: tuple[float | None, float | None]) -> list[dict]:
    """metrics.jsonl lines from (val_loss, metric) pairs, epochs 1, 2, …"""
    return [{"epoch": i, "val_loss": loss, key: m} for i, (loss, m) in enumerate(rows, start=1)]


BLEU, ACC = "val_bleu", "val_acc"
SST = [0, 1, 1, 1]  # validation labels: always answering 1 scores 75 %


@pytest.mark.parametrize(
    ("lines", "labels", "stalls"),
    [
        # the issue's case: deep Post-LN, no warm-up: the loss ends above epoch 1's, BLEU 0
        (_epochs(BLEU, (5.0, 0.0), (5.2, 0.0), (5.3, 0.0)), None, True),
        (_epochs(BLEU, (5.0, 0.4), (4.95, 1.2), (4.93, 0.9)), None, True),  # a plateau: < 2% below
        (_epochs(BLEU, (5.0, 0.0), (4.8, 0.0)), None, False),  # 4% lower: still learning
        (_epochs(BLEU, (5.0, 0.0), (5.1, 2.5)), None, False),  # BLEU rose: it learned something
        (_epochs(BLEU, (2.0, 20.0), (1.5, 30.0), (2.4, 25.0)), None, False),  # overfitting, not stalling
        (_epochs(BLEU, (5.0, 0.0)), None, False),  # one epoch: nothing to compare
        (_epochs(BLEU, (5.0, 0.0), (None, 0.0)), None, False),  # a NaN loss: diverged's business
        (_epochs(BLEU, (5.0, 0.0)) + [{"epoch": 2, "status": "diverged", "loss": None}], None, False),
        (_epochs(ACC, (0.7, 75.0), (0.7, 75.0)), SST, True),  # always the majority label
        (_epochs(ACC, (0.7, 70.0), (0.71, 76.5)), SST, True),  # within 2 points of it
        (_epochs(ACC, (0.7, 75.0), (0.72, 80.0)), SST, False),  # above it: overfit, but learned
        (_epochs(ACC, (0.69, 50.0), (0.69, 50.0)), [0, 1], True),  # SST-2's balanced labels
    ],
    ids=["post-ln", "plateau", "loss-falls", "bleu-rises", "overfits", "one-epoch", "nan", "diverged",
         "majority", "near-majority", "above-majority", "balanced"],
)  # fmt: skip
def test_the_stall_rule(lines, labels, stalls) -> None:
    why = stalled(lines, labels)
    assert (why is not None) == stalls
    if stalls:  # the reading names the figures it judged
        assert f"{lines[-1]['val_loss']:.3g} at epoch {len(lines)}" in why and "at epoch 1" in why


def test_the_stall_reading_names_the_floor() -> None:
    assert "most common label's 75.0%" in (stalled(_epochs(ACC, (0.7, 75.0), (0.7, 75.0)), SST) or "")
    assert "val_bleu at most 0.0" in (stalled(_epochs(BLEU, (5.0, 0.0), (5.2, 0.0))) or "")


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
    ("train", "head"),
    [({"output_dim": 64}, "linear"), ({"output_dim": 64, "output_head": "chung"}, "chung"), ({}, "chung")],
    ids=["before-issue-25", "chung", "no-output-dim"],
)
def test_an_older_run_with_output_dim_resumes_with_the_linear_head_it_was_built_with(
    tmp_path: Path, train: dict, head: str
) -> None:
    (tmp_path / CONFIG).write_text(json.dumps({"train": {"task": "multi30k", **train}}))
    assert resume_config(tmp_path).output_head == head


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


def test_a_folder_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    """Issue 14.14: two `train` runs into one -o: the second is refused while the first holds it."""
    import subprocess
    import sys

    folder = RunFolder(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom embtool.training.runfolder import RunFolder\n"
         "with RunFolder(sys.argv[1]).lock():\n    print('held', flush=True)\n    time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(
            BadInput,
            match=f"run folder {tmp_path} is in use by another embtool process \\(pid {holder.pid}\\)",
        ):
            with folder.lock():
                pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with folder.lock():  # the holder is gone: free again
        assert folder.file(".lock").is_file()
    assert not folder.file(".lock").exists()


def test_discard_removes_the_run_files_and_keeps_the_users(tmp_path: Path) -> None:
    """Issue 14.8: what a failed start wrote goes; a folder that held other files stays with them."""
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_json(CONFIG, {"train": {}})
    folder.write_metrics([{"epoch": 1}])
    folder.discard()
    assert not folder.path.exists()
    folder.path.mkdir()
    (folder.path / "notes.txt").write_text("mine")
    folder.write_json(CONFIG, {"train": {}})
    (folder.path / "tensorboard").mkdir()  # --report-to's, from the failed start
    (folder.path / "tensorboard" / "events.out.tfevents.1").write_bytes(b"x")
    (folder.path / "wandb").mkdir()
    (folder.path / "tracking.json").write_text("{}")
    folder.discard()
    assert [p.name for p in folder.path.iterdir()] == ["notes.txt"]


def test_metrics_and_json_files_hold_null_not_nan(tmp_path: Path) -> None:
    """Issue 14.14: a diverged epoch's NaN loss is written as null (metrics.jsonl stays JSON)."""
    folder = RunFolder(tmp_path)
    folder.write_metrics([{"epoch": 1, "train_loss": float("nan"), "val_loss": float("inf")}])
    folder.write_json(TEST, {"bleu": float("nan"), "best_epoch": 1})
    assert folder.file(METRICS).read_text() == '{"epoch": 1, "train_loss": null, "val_loss": null}\n'
    assert json.loads(folder.file(TEST).read_text())["bleu"] is None


def _stored_run(tmp_path: Path) -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    train = {"task": "multi30k", "epochs": 2, "lr": 2e-4, "device": "cpu", "threads": 1, "layers": 3}
    folder.write_json(CONFIG, {"train": train})
    folder.write_metrics([{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 1.5}])
    return folder


@pytest.mark.parametrize(
    ("given", "changed", "notes"),
    [({}, {}, []), ({"lr": 2e-4, "layers": 3}, {}, []),
     ({"epochs": 5}, {"epochs": 5}, ["--epochs 5 (was 2)"]),
     ({"device": "cuda", "amp": "off", "compile": True, "threads": 2},
      {"device": "cuda", "amp": "off", "compile": True, "threads": 2},
      ["--amp off (was auto)", "--compile True (was False)", "--device cuda (was cpu)", "--threads 2 (was 1)"])],
    ids=["nothing-given", "same-values", "more-epochs", "where-and-how"],
)  # fmt: skip
def test_resume_applies_the_settings_that_may_change_and_says_so(
    tmp_path: Path, given, changed, notes
) -> None:
    """Issue 14.10: `--resume RUN --epochs 3` continued with every given option silently ignored."""
    from embtool.training.runfolder import resume_with

    folder = _stored_run(tmp_path)
    cfg, said = resume_with(folder.path, given)
    stored = resume_config(folder.path)
    assert said == notes and cfg.resume and cfg.out == str(folder.path)
    assert {k: v for k, v in cfg.to_dict().items() if v != getattr(stored, k)} == changed


@pytest.mark.parametrize(
    ("given", "message"),
    [({"lr": 0.1}, r"--lr 0.1 \(the run has 0.0002\) would change the run"),
     ({"layers": 6, "epochs": 3}, r"--layers 6 \(the run has 3\) would change the run"),
     ({"epochs": 1}, r"--epochs 1: the run has trained 2 epoch\(s\) already"),
     ({"out": "elsewhere"}, r"--out elsewhere \(the run is in .*run\) would change the run")],
    ids=["lr", "layers-with-epochs", "fewer-epochs", "another-out"],
)  # fmt: skip
def test_resume_refuses_settings_that_would_change_the_run(tmp_path: Path, given, message) -> None:
    from embtool.training.runfolder import resume_with

    with pytest.raises(BadInput, match=message):
        resume_with(_stored_run(tmp_path).path, given)


def test_an_old_format_folder_migrates_to_the_current_config_version(tmp_path: Path) -> None:
    """config.json without config_version (every folder written before it) is version 1: its old
    field names, its missing preset (then: fast's FFN 4·D) and its linear --output-dim head migrate."""
    from embtool.training.runfolder import CONFIG_VERSION, migrate

    old = {"task": "multi30k", "train": {"task": "multi30k", "n_heads": 2, "d_ff": 64, "output_dim": 8}}
    new = migrate(old)
    assert new["config_version"] == CONFIG_VERSION == 2 and old["train"]["n_heads"] == 2  # a copy
    assert new["train"] == {"task": "multi30k", "heads": 2, "ff": 64, "output_dim": 8, "preset": "fast",
                            "output_head": "linear"}  # fmt: skip
    assert migrate(new) == new  # the current version as it is
    current = {"config_version": 2, "train": {"task": "multi30k"}}
    assert migrate(current) == current  # no preset: not filled in for a current folder
    for bad in (3, 0, "2", True):
        with pytest.raises(ValueError, match="config_version"):
            migrate({"config_version": bad, "train": {}})


def test_an_old_format_folder_reports_and_resumes(tmp_path: Path) -> None:
    """A complete run folder in the layout `train` wrote before config_version: `report` reads it,
    and `--resume` continues it with the settings it was trained with."""
    from conftest import run_in_process, write_run
    from embtool.training.runfolder import resume_with

    run = write_run(tmp_path / "runs" / "old", train={"task": "multi30k", "n_layers": 2, "device": "cpu"})
    assert "config_version" not in json.loads((run / CONFIG).read_text())
    r = run_in_process("report", str(tmp_path / "runs"), "--json")
    assert r.code == 0, r.stderr
    assert "30" in r.text
    cfg, notes = resume_with(run, {"epochs": 5, "device": "cuda"})
    assert (cfg.layers, cfg.preset, cfg.epochs, cfg.device, cfg.resume) == (2, "fast", 5, "cuda", True)
    assert notes == ["--device cuda (was cpu)", "--epochs 5 (was 3)"]
    with pytest.raises(BadInput, match=r"--layers 3 \(the run has 2\) would change the run"):
        resume_with(run, {"layers": 3})


def test_the_resume_roles_are_the_fields_metadata() -> None:
    """One merge for `train --resume` and the library's resume, driven by each field's on_resume."""
    from embtool.training.config import BOOKKEEPING, FOLLOWS, GROWS, TrainConfig, fields_on_resume
    from embtool.training.runfolder import merge_on_resume

    assert fields_on_resume(FOLLOWS) == ("device", "amp", "compile", "threads", "report_to")
    assert fields_on_resume(GROWS) == ("epochs",) and fields_on_resume(BOOKKEEPING) == ("out", "resume")
    stored = TrainConfig(task="multi30k", epochs=10, lr=2e-4)
    cfg, notes, refused = merge_on_resume(stored, {"epochs": 4, "threads": 2, "lr": 1e-3, "out": "x"})
    assert (cfg.epochs, cfg.threads, cfg.lr, cfg.out) == (10, 2, 2e-4, None)  # never fewer epochs than set
    assert notes == ["--epochs 4 (was 10)", "--threads 2 (was 0)"] and refused == [
        "--lr 0.001 (the run has 0.0002)"
    ]


def test_config_json_carries_its_version_and_every_section() -> None:
    from types import SimpleNamespace

    from embtool.training.config import TrainConfig
    from embtool.training.runfolder import CONFIG_VERSION, config_json
    from embtool.training.spec import RunSpec

    side = SimpleNamespace(table_info=None, vocab=["<pad>", "a"], missing=0)
    prep = SimpleNamespace(src=side, tgt=None, out=None, dropped=1, train=[([1], 0)] * 3)
    spec = RunSpec.of(TrainConfig(task="sst2"))
    where = {"device": "cpu", "amp": "off", "amp_why": "--amp off", "world_size": 1, "sdpa": {}}
    config = config_json(spec, prep, {"d_model": 300}, {"total": 1}, {}, where)  # type: ignore[arg-type]
    assert config["config_version"] == CONFIG_VERSION and config["train"] == spec.cfg.to_dict()
    assert list(config)[1:] == ["embtool", "task", "kind", "seed", "model", "parameters", "paper", "train", "tables",
                                "vocab", "init", "device", "amp", "amp_why", "world_size", "sdpa",
                                "dropped_train_examples", "train_examples"]  # fmt: skip
    assert (
        config["vocab"]["tgt_size"] is None
        and config["train_examples"] == 3
        and config["paper"]["family"] == "glove"
    )


@pytest.mark.parametrize(("epochs", "want"), [(0, 2), (1, 2), (7, 7)], ids=["stored", "never-fewer", "more"])
def test_the_librarys_resume_keeps_the_run_and_follows_where_it_runs(tmp_path: Path, epochs, want) -> None:
    """``resumed(cfg)`` (loop.open_run's): the stored settings, but for more epochs and where and how
    it runs, which follow ``cfg`` whatever it holds; a setting that would change the run is ignored."""
    from embtool.training.config import TrainConfig
    from embtool.training.runfolder import resumed

    folder = _stored_run(tmp_path)
    cfg = TrainConfig(task="multi30k", out=str(folder.path), resume=True, epochs=epochs, threads=3, lr=0.5)
    got = resumed(cfg)
    assert (got.epochs, got.threads, got.device, got.lr, got.out) == (want, 3, "auto", 2e-4, str(folder.path))
