"""--report-to: TensorBoard and W&B see what the run folder holds, read back with their own readers.

TensorBoard's event files are read with TensorBoard's ``EventAccumulator``; a W&B offline run with
the record log it writes (``RUN/wandb/offline-run-*/run-<id>.wandb``: LevelDB's log format behind a
``:W&B`` header, each record a ``wandb_internal_pb2.Record``), which ``wandb sync`` uploads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import metrics, reverse_task, tiny_cfg
from embtool.core.errors import BadInput
from embtool.training import tracking
from embtool.training.runfolder import RunFolder, resume_config

# ----------------------------------------------------------------------------- readers


def tensorboard_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """tag → [(step, value)] from RUN/tensorboard/, as TensorBoard's own loader sees it (purges applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / tracking.TENSORBOARD_DIR))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tensorboard_hparams(run: Path) -> dict[str, Any]:
    """The hyper-parameters of RUN/tensorboard/'s session-start summary (the HParams plugin's data)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    acc = EventAccumulator(str(run / tracking.TENSORBOARD_DIR))
    acc.Reload()
    data = HParamsPluginData.FromString(acc.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    out: dict[str, Any] = {}
    for key, value in data.session_start_info.hparams.items():
        out[key] = getattr(value, value.WhichOneof("kind"))
    return out


_BLOCK, _HEADER = 32768, 7  # LevelDB log: 32 KiB blocks, records of crc32 (4), length (2), type (1)


def wandb_records(path: Path) -> list[Any]:
    """The records of a W&B run's .wandb file, in order (a full, or a first/middle…/last chunk chain)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0), "not a W&B record log"
    records, pos, chunks = [], 7, b""
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # a block's tail too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if (crc, length, kind) == (0, 0, 0):  # zero padding up to the next block
            pos += _BLOCK - pos % _BLOCK
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"{path}: a record's checksum at byte {pos}"
        pos += _HEADER + length
        chunks = chunk if kind in (1, 2) else chunks + chunk
        if kind in (1, 4):  # full, or last
            records.append(wandb_internal_pb2.Record.FromString(chunks))
    return records


def items(found: Any) -> dict[str, Any]:
    """A record's key → value items (a key given as ``key`` or as ``nested_key`` parts)."""
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in found}


def wandb_runs(run: Path) -> list[dict[str, Any]]:
    """Each offline W&B run under RUN/wandb/ (oldest first): its id, group, name, history rows and summary."""
    return [_wandb_run(folder) for folder in sorted((run / tracking.WANDB_DIR).glob("offline-run-*"))]


def _wandb_run(folder: Path, wait: float = 30.0) -> dict[str, Any]:
    """One offline run's record log, read once W&B's writer has written it whole (its "exit" record):
    ``finish()`` can return before W&B's service process has flushed the file (seen under load)."""
    deadline = time.monotonic() + wait
    while True:
        (log,) = folder.glob("run-*.wandb")
        info: dict[str, Any] = {"history": [], "summary": {}}
        done = False
        try:
            records = wandb_records(log)
        except (AssertionError, struct.error):  # a log still being written: read it again
            if time.monotonic() > deadline:
                raise
            records = []
        for r in records:
            kind = r.WhichOneof("record_type")
            if kind == "run":
                info.update(id=r.run.run_id, group=r.run.run_group, name=r.run.display_name)
                info["config"] = items(r.run.config.update)
            elif kind == "config":
                info["config"].update(items(r.config.update))
            elif kind == "history":
                info["history"].append(items(r.history.item))
            elif kind == "summary":
                info["summary"].update(items(r.summary.update))
            done = done or kind == "exit"
        if (done and "id" in info) or time.monotonic() > deadline:
            return info
        time.sleep(0.2)


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    """W&B offline, quiet, its own settings and caches in this test's folder."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)


# ----------------------------------------------------------------------------- the library


@pytest.mark.parametrize(
    ("text", "backends"),
    [
        ("none", ()),
        ("tensorboard", ("tensorboard",)),
        ("wandb", ("wandb",)),
        ("tensorboard,wandb", ("tensorboard", "wandb")),
        ("wandb, tensorboard", ("tensorboard", "wandb")),
    ],
)
def test_parse_report_to(text, backends):
    assert tracking.parse_report_to(text) == backends


@pytest.mark.parametrize("text", ["", "tb", "wandb,wandb", "none,wandb", "tensorboard,", "mlflow"])
def test_parse_report_to_refuses(text):
    with pytest.raises(BadInput, match=r"invalid --report-to .*valid choices: \['none', 'tensorboard'"):
        tracking.parse_report_to(text)


@pytest.mark.parametrize(("backend", "package"), [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_require_names_the_missing_package(monkeypatch, backend, package):
    monkeypatch.setitem(sys.modules, package, None)  # `import package` raises ImportError
    with pytest.raises(BadInput) as e:
        tracking.require("tensorboard,wandb" if backend == "wandb" else backend)
    assert str(e.value) == (
        f"--report-to {backend}: the {package} package is not installed; "
        f"pip install 'embtool[tracking]' (or pip install {package})"
    )
    tracking.require("none")  # nothing needed


def test_scalars_flatten_a_metrics_line():
    line = {
        "epoch": 3,
        "train_loss": 2.5,
        "val_loss": 2.25,
        "val_bleu": 0,
        "val_bleu_tok": None,  # metrics.jsonl's null (a NaN)
        "emb": {"src": {"std": 0.5, "bands": {"rare": {"cos": 0.75}}}},
        "branch_ratio": {"enc": [1.5, math.inf, 0.25]},
        "seconds": 1.0,
        "status": "diverged",
        "flag": True,
    }
    assert tracking.scalars(line) == {
        "epoch/train_loss": 2.5,
        "epoch/val_loss": 2.25,
        "epoch/val_bleu": 0.0,
        "emb/src/std": 0.5,
        "emb/src/bands/rare/cos": 0.75,
        "branch_ratio/enc/0": 1.5,
        "branch_ratio/enc/2": 0.25,
        "epoch/seconds": 1.0,
    }
    assert tracking.scalars({"bleu": 12.5, "best_epoch": 2, "signature": "BLEU|…"}, "test") == {
        "test/bleu": 12.5,
        "test/best_epoch": 2.0,
    }


def test_hyperparameters_are_flat():
    config = {
        "embtool": "1.0",
        "seed": 0,
        "train": {"lr": 0.003, "emb": None, "norm": "post"},
        "model": {"d_model": 16, "norm": "post"},
        "tables": {"src": {"path": "x"}},
        "parameters": {"total": 10},
    }
    assert tracking.hyperparameters(config) == {
        "embtool": "1.0",
        "seed": 0,
        "model.d_model": 16,
        "model.norm": "post",
        "lr": 0.003,
        "emb": None,
        "norm": "post",
    }


def test_grid_of(tmp_path):
    grid = tmp_path / "g1"
    run = grid / "runs" / "xavier" / "layers=6" / "s0"
    run.mkdir(parents=True)
    assert tracking.grid_of(run) == (None, "s0")
    (grid / tracking.GRID_FILE).write_text("{}")
    assert tracking.grid_of(run) == ("g1", "xavier/layers=6/s0")


class Recorder:
    """A writer that keeps what it is given."""

    def __init__(self) -> None:
        self.points: list[tuple[int, dict[str, float]]] = []
        self.results: list[tuple[int, dict[str, Any]]] = []

    def config(self, hparams, config, tags) -> None:
        pass

    def scalars(self, values, step) -> None:
        self.points.append((step, dict(values)))

    def result(self, test, step) -> None:
        self.results.append((step, test))

    def close(self, failed) -> None:
        pass


def test_tracker_writes_the_mean_loss_of_the_steps_since_the_last_point():
    clock = SimpleNamespace(step=0, opt=SimpleNamespace(param_groups=[{"lr": 0.0}]))
    rec, heard = Recorder(), []
    tracker = tracking.Tracker(clock, [rec], lambda e, i: heard.append(e), every=2)
    tracker("epoch_start", {"epoch": 1, "epochs": 1, "steps": 5})
    # step losses 4, 2, 3, 1, 5 over 10, 30, 20, 20, 20 units: running means as the loop reads them
    running_sum, running_units = 0.0, 0
    for n, (loss, units) in enumerate([(4.0, 10), (2.0, 30), (3.0, 20), (1.0, 20), (5.0, 20)], start=1):
        clock.step += 1
        clock.opt.param_groups[0]["lr"] = 0.1 * n
        running_sum, running_units = running_sum + loss * units, running_units + units
        info = {"step": n, "steps": 5, "loss": running_sum / running_units, "units": running_units}
        tracker("step", {**info, "tokens_per_s": 100.0})
    assert [step for step, _ in rec.points] == [2, 4, 5]  # every 2nd step and the epoch's last
    assert [p["train/loss"] for _, p in rec.points] == pytest.approx(
        [(40 + 60) / 40, (60 + 20) / 40, 100 / 20]
    )
    assert [p["train/lr"] for _, p in rec.points] == pytest.approx([0.2, 0.4, 0.5])
    tracker("epoch", {"epoch": 1, "train_loss": 2.0, "val_loss": 1.5})
    assert rec.points[-1] == (5, {"epoch": 1, "epoch/train_loss": 2.0, "epoch/val_loss": 1.5})
    tracker("test", {"bleu": 3.0})
    assert rec.results == [(5, {"bleu": 3.0})]
    assert heard == ["epoch_start", *["step"] * 5, "epoch", "test"]  # every event passed on


def test_tracked_is_the_progress_itself_for_none_and_off_rank_zero(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()

    def progress(event: str, info: dict[str, Any]) -> None:
        pass

    clock = SimpleNamespace(step=0, opt=None)
    with tracking.tracked("none", folder, clock, progress, every=1) as p:
        assert p is progress
    with tracking.tracked("tensorboard,wandb", folder, clock, progress, every=1, main=False) as p:
        assert p is progress
    assert list(folder.path.iterdir()) == []  # nothing written


def test_tensorboard_resume_purges_what_a_killed_attempt_wrote(tmp_path):
    folder = tmp_path / "run"
    first = tracking.TensorBoardWriter(folder, step=0)
    for step in range(1, 11):  # epoch 1 ended at step 5 (committed); killed during epoch 2
        first.scalars({"train/loss": float(step)}, step)
    first.scalars({"epoch/val_loss": 0.5}, 5)
    first.close(failed=True)
    again = tracking.TensorBoardWriter(folder, step=5)  # resumed after epoch 1
    for step in range(6, 11):
        again.scalars({"train/loss": 10.0 * step}, step)
    again.scalars({"epoch/val_loss": 0.25}, 10)
    again.close(failed=False)
    got = tensorboard_scalars(folder)
    assert got["train/loss"] == [(s, float(s)) for s in range(1, 6)] + [(s, 10.0 * s) for s in range(6, 11)]
    assert got["epoch/val_loss"] == [(5, 0.5), (10, 0.25)]


def test_wandb_offline_run_is_read_back_and_resumed(tmp_path, wandb_offline):
    grid = tmp_path / "grid1"
    folder = RunFolder(grid / "runs" / "xavier" / "s0")
    folder.path.mkdir(parents=True)
    (grid / tracking.GRID_FILE).write_text("{}")
    folder.write_json(
        "config.json", {"kind": "translation", "train": {"lr": 0.003, "epochs": 1}, "model": {}}
    )
    clock = SimpleNamespace(step=0, opt=SimpleNamespace(param_groups=[{"lr": 0.003}]))
    with tracking.tracked("wandb", folder, clock, lambda e, i: None, every=1) as track:
        clock.step = 4
        track("epoch", {"epoch": 1, "train_loss": 2.5, "val_loss": 2.25})
        track("test", {"bleu": 1.5, "signature": "BLEU|x"})
    run_id = json.loads(folder.file(tracking.TRACKING).read_text())["wandb_id"]
    folder.write_json(
        "config.json", {"kind": "translation", "train": {"lr": 0.003, "epochs": 2}, "model": {}}
    )
    with tracking.tracked(
        "wandb", folder, clock, lambda e, i: None, every=1
    ) as track:  # resumed: the same W&B run
        clock.step = 8
        track("epoch", {"epoch": 2, "train_loss": 2.0, "val_loss": 1.75})
    first, second = wandb_runs(folder.path)
    assert first["id"] == second["id"] == run_id
    assert first["group"] == "grid1" and first["name"] == "xavier/s0"
    assert [(h["global_step"], h["epoch/val_loss"]) for h in first["history"] if "epoch/val_loss" in h] == [
        (4, 2.25)
    ]
    assert first["summary"]["test/bleu"] == 1.5 and first["summary"]["test/signature"] == "BLEU|x"
    assert [(h["global_step"], h["epoch/val_loss"]) for h in second["history"] if "epoch/val_loss" in h] == [
        (8, 1.75)
    ]
    assert second["config"]["train"] == {"lr": 0.003, "epochs": 2}  # a resumed run may have more epochs


def test_wandb_that_cannot_start_leaves_nothing(tmp_path, monkeypatch, wandb_offline):
    import wandb

    def refuse(**kw: Any) -> None:
        raise wandb.errors.UsageError("api_key not configured (no-tty)")

    monkeypatch.setattr(wandb, "init", refuse)
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.write_json("config.json", {"train": {}})
    clock = SimpleNamespace(step=0, opt=None)
    with pytest.raises(BadInput, match=r"--report-to wandb: W&B did not start \(UsageError: api_key"):
        with tracking.tracked("tensorboard,wandb", folder, clock, lambda e, i: None, every=1):
            pass
    assert sorted(p.name for p in folder.path.iterdir()) == ["config.json"]


# ----------------------------------------------------------------------------- a real run


def _run(tmp_path: Path, report_to: str, **kw: Any) -> Path:
    from embtool.training import train

    files = reverse_task(tmp_path, n_train=100, n_val=10)
    cfg = tiny_cfg(files, tmp_path / "run", report_to=report_to, batch_size=32, **kw)
    return train(cfg).path


def test_a_run_in_tensorboard_and_wandb_is_its_metrics_jsonl(tmp_path, wandb_offline):
    run = _run(tmp_path, "tensorboard,wandb", epochs=2)
    lines, test = metrics(run), json.loads((run / "test.json").read_text())
    steps = [4, 8]  # 100 pairs in batches of 32: 4 steps an epoch
    # TensorBoard, through its own loader
    tb = tensorboard_scalars(run)
    assert {"train/loss", "train/lr", "epoch/train_loss", "epoch/val_loss", "epoch/val_bleu"} <= set(tb)
    for key in ("train_loss", "val_loss", "val_bleu", "val_bleu_tok", "seconds"):  # float32 in event files
        assert tb[f"epoch/{key}"] == [(s, pytest.approx(m[key], rel=1e-6)) for s, m in zip(steps, lines)]
    assert tb["emb/src/std"] == [
        (s, pytest.approx(m["emb"]["src"]["std"], rel=1e-6)) for s, m in zip(steps, lines)
    ]
    ratios = lines[-1]["branch_ratio"]  # Post-LN: each sub-layer's, per stack
    assert ratios and all(
        tb[f"branch_ratio/{stack}/{i}"][-1] == (8, pytest.approx(r, rel=1e-6))
        for stack, values in ratios.items()
        for i, r in enumerate(values)
    )
    assert tb["train/lr"] == [(4, pytest.approx(3e-3)), (8, pytest.approx(3e-3))]  # constant schedule
    assert [s for s, _ in tb["train/loss"]] == steps  # each epoch's last step (SHOW_EVERY is 50)
    # one point per epoch: the epoch's mean training loss is that point's mean (the steps since step 0)
    assert [v for _, v in tb["train/loss"]] == [pytest.approx(m["train_loss"], rel=1e-6) for m in lines]
    assert tb["test/bleu"] == [(8, pytest.approx(test["bleu"], rel=1e-6))]
    hparams = tensorboard_hparams(run)
    assert (
        hparams["lr"] == pytest.approx(3e-3) and hparams["model.d_model"] == 32 and hparams["norm"] == "post"
    )
    # W&B, from its offline record log: JSON numbers, so exactly metrics.jsonl's
    (wb,) = wandb_runs(run)
    assert wb["id"] == json.loads((run / tracking.TRACKING).read_text())["wandb_id"]
    assert wb["group"] == "" and wb["name"] == "run"
    epochs = [h for h in wb["history"] if "epoch/val_loss" in h]
    assert [(h["global_step"], h["epoch"], h["epoch/val_loss"], h["epoch/val_bleu"]) for h in epochs] == [
        (s, m["epoch"], m["val_loss"], m["val_bleu"]) for s, m in zip(steps, lines)
    ]
    assert wb["summary"]["test/bleu"] == test["bleu"] and wb["summary"]["test/signature"] == test["signature"]
    assert wb["config"]["train"]["lr"] == 3e-3 and wb["config"]["model"]["d_model"] == 32


def test_a_resumed_run_continues_the_same_runs(tmp_path, wandb_offline):
    from embtool.training import train

    run = _run(tmp_path, "tensorboard,wandb", epochs=1)
    train(dataclasses.replace(resume_config(run), epochs=2))  # as `train --resume RUN --epochs 2`
    lines = metrics(run)
    tb = tensorboard_scalars(run)
    assert tb["epoch/val_loss"] == [
        (4, pytest.approx(lines[0]["val_loss"], rel=1e-6)),
        (8, pytest.approx(lines[1]["val_loss"], rel=1e-6)),
    ]
    assert [s for s, _ in tb["train/loss"]] == [4, 8]
    assert (
        len(list((run / tracking.TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2
    )  # one folder, two files
    first, second = wandb_runs(run)  # offline: one record log per process, both of one W&B run
    assert first["id"] == second["id"] == json.loads((run / tracking.TRACKING).read_text())["wandb_id"]
    assert [h["epoch/val_loss"] for h in first["history"] + second["history"] if "epoch/val_loss" in h] == [
        m["val_loss"] for m in lines
    ]


def test_a_resumed_run_may_start_reporting(tmp_path):
    """--report-to is where a run is seen, not what it is: a resume may switch it on."""
    from embtool.training import train

    run = _run(tmp_path, "none", epochs=1)
    assert not (run / tracking.TENSORBOARD_DIR).exists()
    train(dataclasses.replace(resume_config(run), epochs=2, report_to="tensorboard"))
    lines = metrics(run)
    assert tensorboard_scalars(run)["epoch/val_loss"] == [(8, pytest.approx(lines[1]["val_loss"], rel=1e-6))]
    assert json.loads((run / "config.json").read_text())["train"]["report_to"] == "tensorboard"


def test_cli_missing_package_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, cli):
    files = reverse_task(tmp_path, n_train=20, n_val=5)
    monkeypatch.setitem(sys.modules, "wandb", None)
    out = tmp_path / "run"
    args = [
        "train",
        "files",
        "--src",
        files["train_src"],
        "--tgt",
        files["train_tgt"],
        "--tokenizer",
        "whitespace",
    ]
    r = cli(*args, "--report-to", "tensorboard,wandb", "--threads", "1", "--device", "cpu", "-o", str(out))
    assert r.code == 2
    assert r.stderr == (
        "embtool: error: --report-to wandb: the wandb package is not installed; "
        "pip install 'embtool[tracking]' (or pip install wandb)\n"
    )
    assert not out.exists()
    r = cli(*args, "--report-to", "tb", "-o", str(out))
    assert (
        r.code == 2 and "invalid --report-to 'tb'; valid choices: ['none', 'tensorboard', 'wandb'" in r.stderr
    )
