"""A grid across workers: claims, --jobs subprocesses, submitit's local executor, re-runs."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest

from conftest import reverse_words_toy
from embtool import gridjobs
from embtool.errors import BadInput


def test_claim_is_exclusive_across_processes_and_released(tmp_path):
    run = tmp_path / "runs" / "xavier" / "s1"
    ctx = multiprocessing.get_context("spawn")
    with gridjobs.claim(run) as mine:
        assert mine
        with ctx.Pool(1) as pool:  # another process finds it held
            assert pool.apply(_try_claim, (str(run),)) is False
    with ctx.Pool(1) as pool:
        assert pool.apply(_try_claim, (str(run),)) is True


def _try_claim(path: str) -> bool:
    with gridjobs.claim(Path(path)) as mine:
        return mine


def test_worker_env_pins_one_gpu_per_slot_or_splits_the_threads():
    env = gridjobs.worker_env(1, 2, ["0", "3"], base={})
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    env = gridjobs.worker_env(0, 2, [], base={})
    assert "CUDA_VISIBLE_DEVICES" not in env and int(env["OMP_NUM_THREADS"]) >= 1


@pytest.mark.parametrize(
    ("text", "minutes"), [("12:00:00", 720), ("1-00:00:00", 1440), ("90", 90), ("00:30", 30)]
)
def test_parse_time(text, minutes):
    assert gridjobs.parse_time(text) == minutes


@pytest.mark.parametrize("bad", ["x", "1:2:3:4", "0"])
def test_parse_time_rejects(bad):
    with pytest.raises(BadInput, match="--time"):
        gridjobs.parse_time(bad)


def test_parse_devices():
    assert gridjobs.parse_devices("0, 1,1") == ["0", "1"] and gridjobs.parse_devices(None) == []
    with pytest.raises(BadInput, match="--devices"):
        gridjobs.parse_devices("cuda:0")


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return reverse_words_toy(tmp_path, n_pairs=80)


def _grid_args(toy: Path, out: Path) -> list[str]:
    return [
        "experiment", "files", "--emb", str(toy / "w2v.safetensors"), "--src", str(toy / "src.txt"),
        "--tgt", str(toy / "tgt.txt"), "--variants", "xavier,pretrained", "--seeds", "2", "--epochs", "1",
        "--layers", "1", "--batch-size", "16", "--device", "cpu", "--amp", "off", "--threads", "1", "-o", str(out),
    ]  # fmt: skip


def _mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.glob("runs/*/s*/test.json"))}


@pytest.mark.slow
@pytest.mark.parametrize("how", [["--jobs", "2"], ["--launcher", "local"]])
def test_a_2x2_grid_across_workers_then_rerun_does_nothing_and_a_deleted_run_is_redone(toy, embtool, how):
    out = toy / "grid"
    first = embtool(*_grid_args(toy, out), *how)
    assert first.code == 0, first.stderr
    done = _mtimes(out)
    assert len(done) == 4 and (out / "report.md").is_file()
    if how[0] == "--jobs":
        assert sorted(p.name for p in (out / "logs").glob("*.log")) == [
            "pretrained-s1.log", "pretrained-s2.log", "xavier-s1.log", "xavier-s2.log",
        ]  # fmt: skip
    else:
        assert list((out / "logs" / "submitit").glob("*_log.out"))  # submitit's logs in the grid folder
    again = embtool(*_grid_args(toy, out), *how)
    assert again.code == 0, again.stderr
    assert _mtimes(out) == done  # nothing redone
    assert again.stderr.count("complete, skipped") == 4
    shutil.rmtree(out / "runs" / "pretrained" / "s2")
    third = embtool(*_grid_args(toy, out), *how)
    assert third.code == 0, third.stderr
    after = _mtimes(out)
    assert {k for k in after if after[k] != done.get(k)} == {"runs/pretrained/s2/test.json"}
    config = json.loads((out / "runs" / "pretrained" / "s2" / "config.json").read_text())
    assert config["train"]["threads"] == 1


def test_a_held_run_is_left_to_its_worker(toy, monkeypatch):
    from embtool import experiment as lib

    grid = lib.plan(
        "files",
        {"emb": toy / "w2v.safetensors"},
        toy / "grid",
        ["xavier"],
        [1],
        {"src": str(toy / "src.txt"), "tgt": str(toy / "tgt.txt"), "epochs": 1, "device": "cpu"},
    )
    events: list[str] = []
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        pool.apply_async(_hold, (str(grid.runs[0].out), 3.0))
        import time

        deadline = time.monotonic() + 60
        while not gridjobs.lock_path(grid.runs[0].out).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        failures = lib.run_grid(grid, event=lambda name, info: events.append(name), train=_never)
    assert failures == [] and "busy" in events and "start" not in events


def _hold(path: str, seconds: float) -> None:
    import time

    with gridjobs.claim(Path(path)):
        time.sleep(seconds)


def _never(cfg, progress=None):  # pragma: no cover - must not be called
    raise AssertionError("a held run was trained")
