"""A grid across workers: one lock per run, --jobs worker processes, submitit's local executor, re-runs."""

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
import torch

from conftest import reverse_words_toy
from embtool.experiment import gridjobs
from embtool.training.parallel import CONFIG_ENV
from embtool.training.runfolder import RunFolder


def test_a_run_is_in_use_while_another_process_holds_its_folder_lock(tmp_path):
    """The grid's one lock per run is the run folder's own (RunFolder.lock, what `train` holds)."""
    run = tmp_path / "runs" / "xavier" / "s1"
    assert not gridjobs.in_use(run)  # no folder yet: nobody trains in it
    run.mkdir(parents=True)
    ctx = multiprocessing.get_context("spawn")
    with RunFolder(run).lock():
        with ctx.Pool(1) as pool:  # another process finds it held
            assert pool.apply(_in_use, (str(run),)) is True
    with ctx.Pool(1) as pool:
        assert pool.apply(_in_use, (str(run),)) is False
    assert not (run / ".lock").exists()  # looking leaves no lock file behind


def _in_use(path: str) -> bool:
    return gridjobs.in_use(Path(path))


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
    from embtool.experiment import runner as lib

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
        while not (grid.runs[0].out / ".lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        failures = lib.run_grid(grid, event=lambda name, info: events.append(name), train=_never)
    assert failures == [] and "busy" in events and "start" not in events


def _hold(path: str, seconds: float) -> None:
    import time

    Path(path).mkdir(parents=True, exist_ok=True)
    with RunFolder(path).lock():
        time.sleep(seconds)


def _never(cfg, progress=None):  # pragma: no cover - must not be called
    raise AssertionError("a held run was trained")


# ----------------------------------------------------------------------------- a killed experiment


def _workers(marker: str) -> dict[int, int]:
    """pid → parent pid of the live grid workers (``embtool -q train`` handed a run's settings in
    $EMBTOOL_RANK_CONFIG) whose settings hold ``marker`` (a zombie, dead but not yet reaped, is not live)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        handed = [e for e in env if e.startswith(CONFIG_ENV.encode() + b"=")]
        if (
            cmd[1:5] == [b"-m", b"embtool", b"-q", b"train"]
            and handed
            and marker.encode() in handed[0]
            and stat[0] != "Z"
        ):
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
@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["kill", "term", "ctrl-c"]
)
def test_a_killed_experiment_takes_its_workers_with_it_and_a_rerun_resumes(toy, embtool, sig):
    """Kill `experiment --jobs 2` while both workers train: no worker trains on as an orphan (5 s
    after a SIGKILL none is alive; a SIGTERM'd or Ctrl-C'd experiment waits for them), each ends as embtool
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
        if (
            sig != signal.SIGKILL
        ):  # Ctrl-C reaches the experiment alone (its workers have a session of their own)
            code = {signal.SIGTERM: 143, signal.SIGINT: 130}[sig]
            assert parent.wait(60) == code and not _workers(str(out))  # it waited for its workers
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
    if sig != signal.SIGKILL:
        return  # the re-run is the same after any
    again = embtool(*args)
    assert again.code == 0, again.stderr
    assert again.stderr.count("resuming") == 2
    for run in ("xavier", "pretrained"):
        metrics = (out / "runs" / run / "s1" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(m)["epoch"] for m in metrics] == list(range(1, 41))
        assert (out / "runs" / run / "s1" / "test.json").is_file()


def _watched(code: str) -> subprocess.Popen[bytes]:
    """A child of this test that calls ``watch_parent`` and then runs ``code`` (stdin: a pipe from here)."""
    head = "import os, time; from embtool.training.parallel import follow_launcher, watch_parent; "
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
def test_a_launched_worker_follows_its_launcher_and_its_own_children_do_not():
    """$EMBTOOL_LAUNCHER_PID (what `experiment --jobs` sets): the worker watches that process and takes
    the variable out of its environment, so that torchrun's ranks it starts do not watch a stranger."""
    code = (
        "os.environ['EMBTOOL_LAUNCHER_PID'] = str(os.getppid()); follow_launcher(); "
        "print('EMBTOOL_LAUNCHER_PID' in os.environ, flush=True); time.sleep(60)"
    )
    child = _watched(code)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"False\n"
        child.stdin.close()  # type: ignore[union-attr]
        assert child.wait(5) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()


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


# ----------------------------------------------------------------------------- GPUs, ranks, Slurm's ask


class _Worker:
    """A worker subprocess that ends at once, as one whose run failed (exit 1)."""

    def __init__(self, argv, **kw) -> None:
        self.argv, self.env, self.stdin = argv, kw["env"], None

    def poll(self) -> int:
        return 1

    wait = terminate = kill = poll


def _spawned(monkeypatch) -> list[_Worker]:
    """Stand in for the workers `experiment --jobs` starts: their command lines and environments."""
    started: list[_Worker] = []

    def popen(argv, **kw):
        started.append(_Worker(argv, **kw))
        return started[-1]

    monkeypatch.setattr(gridjobs.subprocess, "Popen", popen)
    return started


@pytest.mark.parametrize(
    ("count", "own", "args", "expected", "ranks"),
    [
        (2, None, ["--jobs", "2"], ["0", "1"], 1),  # every worker was on GPU 0
        (2, "3,5", ["--jobs", "2"], ["3", "5"], 1),  # this process's GPU 0 is the machine's 3
        (4, None, ["--jobs", "2", "--gpus-per-run", "2"], ["0,1", "2,3"], 2),
        (2, None, ["--gpus-per-run", "2"], ["0,1", "0,1"], 2),  # one run at a time, on both GPUs
        (4, None, ["--devices", "1,3"], ["1", "3"], 1),  # --jobs follows --devices
    ],
)  # fmt: skip
def test_grid_workers_on_cuda_take_their_own_gpus_and_a_run_its_ranks(
    toy, monkeypatch, count, own, args, expected, ranks
):
    """`experiment --device cuda` with --jobs/--gpus-per-run: each worker's CUDA_VISIBLE_DEVICES,
    and the ranks of its run (torchrun, as train --nproc) when a run has more than one GPU."""
    from conftest import run_in_process

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if own is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", own)
    started = _spawned(monkeypatch)
    grid = _grid_args(toy, toy / "grid")
    grid[grid.index("--seeds") + 1] = "1"
    grid[grid.index("--device") + 1] = "cuda"
    r = run_in_process(*grid, *args)
    assert r.code == 1 and "every run failed" in r.stderr, r.stderr  # the stand-in workers fail
    # each of the two runs on one slot's GPUs (the pool's threads start them in either order)
    assert sorted(w.env.get("CUDA_VISIBLE_DEVICES") for w in started) == sorted(expected)
    for w in started:
        assert w.argv[1:5] == ["-m", "embtool", "-q", "train"] and (
            w.argv[5:] == ["--nproc", str(ranks)] if ranks > 1 else len(w.argv) == 5
        )
    handed = [json.loads(w.env[CONFIG_ENV]) for w in started]  # the run's settings as data, not options
    assert {h["device"] for h in handed} == {"cuda"}
    assert sorted(h["out"] for h in handed) == [
        str(toy / "grid" / "runs" / v / "s1") for v in ("pretrained", "xavier")
    ]


def test_a_run_wanting_more_gpus_than_there_are_stops_the_grid_before_any_work(toy, monkeypatch):
    from conftest import run_in_process

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    started = _spawned(monkeypatch)
    r = run_in_process(*_grid_args(toy, toy / "grid"), "--device", "cuda", "--gpus-per-run", "2")
    assert r.code == 2 and not started and not (toy / "grid").exists()
    assert r.stderr == (
        "embtool: error: --gpus-per-run 2: this machine shows 1 GPU(s) (0); give --gpus-per-run 1 or fewer\n"
    )


def test_a_worker_given_ranks_launches_its_run_on_them(toy, monkeypatch):
    """A run of --gpus-per-run 2 is trained by torchrun's 2 ranks (parallel.launch), not one process."""
    from embtool.experiment import runner as lib
    from embtool.training import parallel

    grid = lib.plan("files", {"emb": toy / "w2v.safetensors"}, toy / "grid", ["xavier"], [1],
                    {"src": str(toy / "src.txt"), "tgt": str(toy / "tgt.txt"), "epochs": 1, "device": "cuda"})  # fmt: skip
    config = lib.check(grid)[1][id(grid.runs[0])].to_dict()
    launched: list = []
    monkeypatch.setattr(parallel, "launch", lambda *a: launched.append(a))
    assert gridjobs.run_one(config, 2) == "done"
    assert launched == [(2, config, ("-q", "train"), str(grid.runs[0].out))]


@pytest.mark.parametrize(
    ("launcher", "gpus", "cpus", "expected"),
    [
        ("slurm", 1, 0, {"gpus_per_node": 1, "cpus_per_task": 8}),  # Slurm's default was 1 CPU a task
        ("slurm", 2, 0, {"gpus_per_node": 2, "cpus_per_task": 16}),
        ("slurm", 2, 12, {"gpus_per_node": 2, "cpus_per_task": 12}),
        ("local", 2, 0, {}),
    ],
)
def test_the_job_array_asks_for_cpus_and_gpus_and_runs_each_run_on_its_ranks(
    toy, monkeypatch, launcher, gpus, cpus, expected
):
    from embtool.experiment import runner as lib
    from embtool.experiment.gridresources import Slurm

    asked: dict = {}
    submitted: list = []

    class Job:
        job_id = "42_0"

        def result(self) -> str:
            return "done"

    class Executor:
        def __init__(self, folder, cluster) -> None:
            asked.update(cluster=cluster)

        def update_parameters(self, **params) -> None:
            asked.update(params)

        def batch(self):
            import contextlib

            return contextlib.nullcontext()

        def submit(self, fn, *args):
            submitted.append((fn, args))
            return Job()

    fake = type(sys)("submitit")
    fake.AutoExecutor = Executor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "submitit", fake)
    grid = lib.plan("files", {"emb": toy / "w2v.safetensors"}, toy / "grid", ["xavier"], [1],
                    {"src": str(toy / "src.txt"), "tgt": str(toy / "tgt.txt"), "epochs": 1})  # fmt: skip
    configs = lib.check(grid)[1]
    failures = gridjobs.run_submitit(grid, configs, launcher, Slurm(gpus_per_run=gpus, cpus_per_run=cpus))
    assert failures == [] and asked["cluster"] == launcher
    assert {k: asked[k] for k in expected} == expected and ("cpus_per_task" in asked) == (launcher == "slurm")
    assert submitted == [(gridjobs.run_one, (configs[id(grid.runs[0])].to_dict(), gpus))]


@pytest.mark.parametrize(
    ("handed", "error"),
    [
        ("{", "$EMBTOOL_RANK_CONFIG: not a JSON object of training settings (unset it)"),
        ("[]", "$EMBTOOL_RANK_CONFIG: not a JSON object of training settings (unset it)"),
        ('{"epoch": 3}', "$EMBTOOL_RANK_CONFIG: unknown training setting(s) epoch; valid: "),
    ],
)
def test_a_worker_whose_settings_cannot_be_read_says_so_in_one_line(tmp_path, handed, error):
    """A worker is `embtool train` handed its settings: what it cannot read is one line, exit 2."""
    env = {**os.environ, CONFIG_ENV: handed}
    argv = [sys.executable, "-m", "embtool", "-q", "train"]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and proc.stderr.startswith(f"embtool: error: {error}"), proc.stderr
    assert proc.stderr.count("\n") == 1 and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_run_of_two_gpus_trains_on_two_ranks(toy, embtool):
    """The whole way on a CPU (gloo): `experiment --gpus-per-run 2` → a worker → torchrun → 2 ranks."""
    out = toy / "grid"
    args = _grid_args(toy, out)
    args[args.index("--seeds") + 1] = "1"
    args[args.index("--variants") + 1] = "xavier"
    r = embtool(*args, "--gpus-per-run", "2")
    assert r.code == 0, r.stderr
    config = json.loads((out / "runs" / "xavier" / "s1" / "config.json").read_text())
    assert config["world_size"] == 2 and (out / "runs" / "xavier" / "s1" / "test.json").is_file()
