"""A grid across workers: claims, --jobs subprocesses, submitit's local executor, re-runs."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
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


# ----------------------------------------------------------------------------- a killed experiment


def _workers(marker: str) -> dict[int, int]:
    """pid → parent pid of the live ``python -m embtool.gridjobs`` processes whose command line
    holds ``marker`` (a zombie, dead but not yet reaped, is not live)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if b"embtool.gridjobs" in cmd and any(marker.encode() in c for c in cmd) and stat[0] != "Z":
            found[int(proc.name)] = int(stat[1])
    return found


def _wait_for(what, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.05)
    return what()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the workers through /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_a_killed_experiment_takes_its_workers_with_it_and_a_rerun_resumes(toy, embtool, sig):
    """Kill `experiment --jobs 2` while both workers train: no worker trains on as an orphan (5 s
    after a SIGKILL none is alive; a SIGTERM'd experiment waits for them), each ends as embtool
    ends on SIGTERM (its run left to resume, its folder lock let go), and the same command again
    finishes both runs from where they stopped."""
    out = toy / "grid"
    args = _grid_args(toy, out)
    args[args.index("--seeds") + 1] = "1"
    args[args.index("--epochs") + 1] = "40"  # long enough to be training when the parent dies
    args += ["--jobs", "2"]
    with open(toy / "experiment.err", "wb") as err:
        parent = subprocess.Popen(
            [sys.executable, "-m", "embtool", *args], stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        # both workers have trained an epoch (their metrics.jsonl): they are mid-run
        assert _wait_for(lambda: len(list(out.glob("runs/*/s1/metrics.jsonl"))) == 2, 120)
        workers = _workers(str(out))
        assert len(workers) == 2 and set(workers.values()) == {parent.pid}
        os.kill(parent.pid, sig)
        if sig == signal.SIGTERM:
            assert parent.wait(60) == 143 and not _workers(str(out))  # it waited for its workers
        parent.wait()
        assert _wait_for(lambda: not _workers(str(out)), 5.0), f"orphaned workers: {_workers(str(out))}"
    finally:
        for pid in _workers(str(out)):  # the test leaves nothing behind, pass or fail
            os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
    for run in ("xavier", "pretrained"):
        folder = out / "runs" / run / "s1"
        assert (folder / "config.json").is_file() and not (folder / "test.json").exists()
        assert not (folder / ".lock").exists()  # its worker unwound (SIGTERM), not just vanished
        log = (out / "logs" / f"{run}-s1.log").read_text()
        assert log.rstrip().endswith("embtool: terminated")
    if sig == signal.SIGTERM:
        return  # the re-run is the same after either
    again = embtool(*args)
    assert again.code == 0, again.stderr
    assert again.stderr.count("resuming") == 2
    for run in ("xavier", "pretrained"):
        metrics = (out / "runs" / run / "s1" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(m)["epoch"] for m in metrics] == list(range(1, 41))
        assert (out / "runs" / run / "s1" / "test.json").is_file()


def _watched(code: str) -> subprocess.Popen[bytes]:
    """A child of this test that calls ``watch_parent`` and then runs ``code`` (stdin: a pipe from here)."""
    head = "import os, time; from embtool.gridjobs import watch_parent; "
    return subprocess.Popen(
        [sys.executable, "-c", head + code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )


def test_a_worker_stops_when_the_pipe_from_its_parent_closes():
    """The way that needs no Linux: the parent lives on here, only its end of stdin closes."""
    child = _watched("watch_parent(os.getppid()); print('ready', flush=True); time.sleep(60)")
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        assert child.poll() is None  # watching, not stopped
        child.stdin.close()  # type: ignore[union-attr]
        assert child.wait(5) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_worker_asks_the_kernel_for_sigterm_when_its_parent_dies():
    get = "import ctypes; v = ctypes.c_int(); ctypes.CDLL(None).prctl(2, ctypes.byref(v), 0, 0, 0)"
    child = _watched(f"watch_parent(os.getppid()); {get}; print(v.value, flush=True); time.sleep(60)")
    try:  # prctl 2: PR_GET_PDEATHSIG
        assert child.stdout is not None and child.stdout.readline().split() == [
            str(int(signal.SIGTERM)).encode()
        ]
    finally:
        child.kill()
        child.wait()


def test_a_worker_whose_parent_is_gone_already_stops_at_once():
    """The race: the parent died between the fork and the prctl (the worker's parent is not the one named)."""
    child = _watched("watch_parent(os.getppid() + 1); time.sleep(60)")
    try:
        assert child.wait(10) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()
