"""A grid's runs at the same time: ``experiment --jobs N`` on this machine, or ``--launcher
slurm|local`` through submitit (one job array). Each run is handed to exactly one worker.

- ``claim(run_dir)``: an exclusive ``flock`` on ``<run>.lock`` beside the run folder, held while the
  run trains; a second worker (another ``--jobs`` slot, another ``experiment`` call on the same
  grid, a resubmitted array task) finds it held and leaves the run alone. The kernel drops the lock
  when its process dies, so a killed worker leaves no stale claim.
- ``run_local``: up to N workers at once, each a ``python -m embtool.gridjobs RUN.json``
  subprocess: with ``--devices 0,1`` worker slot i sees only GPU ``devices[i]``
  (``CUDA_VISIBLE_DEVICES``); on a CPU the machine's cores are split between the slots. A worker
  lives no longer than its ``experiment`` (``watch_parent``), even one ended by SIGKILL: it stops
  as embtool stops on SIGTERM, its run left to resume when the command is run again.
- ``run_submitit``: every run not done as one task of a submitit job array (Slurm, or submitit's
  local executor); logs in ``OUT/logs/submitit``. Re-running the command skips finished runs and
  resubmits the others.
The grid's tables are built once, before any worker starts; the report after every run ends.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embtool.errors import BadInput

LAUNCHERS = ("none", "local", "slurm")
BUSY = 3  # a worker's exit status when another worker holds the run
Event = Callable[[str, dict[str, Any]], None]


@dataclass
class Slurm:
    """What ``--launcher slurm`` asks of the scheduler for each run."""

    partition: str | None = None
    gpus_per_run: int = 1
    time: str = "12:00:00"  # HH:MM:SS or D-HH:MM:SS
    cpus_per_run: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def minutes(self) -> int:
        return parse_time(self.time)


def parse_time(text: str) -> int:
    """``12:00:00`` / ``1-00:00:00`` / ``90`` (minutes) → minutes; BadInput otherwise."""
    try:
        days, _, rest = text.rpartition("-")
        parts = [int(x) for x in rest.split(":")]
        if len(parts) == 1:
            minutes = parts[0]
        elif len(parts) == 2:
            minutes = parts[0] * 60 + parts[1]
        elif len(parts) == 3:
            minutes = parts[0] * 60 + parts[1] + (1 if parts[2] else 0)
        else:
            raise ValueError
        minutes += int(days) * 24 * 60 if days else 0
    except ValueError:
        raise BadInput(f"--time {text!r}: give HH:MM:SS, D-HH:MM:SS or minutes") from None
    if minutes < 1:
        raise BadInput(f"--time {text!r}: at least one minute")
    return minutes


def parse_devices(text: str | None) -> list[str]:
    """``"0,1"`` → ["0", "1"] (CUDA device ids); BadInput for anything else."""
    if not text:
        return []
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices or not all(d.isdigit() for d in devices):
        raise BadInput(f"--devices {text!r}: give GPU ids, e.g. 0,1")
    return list(dict.fromkeys(devices))


# ----------------------------------------------------------------------------- one run, claimed


def lock_path(run_dir: Path) -> Path:
    return run_dir.parent / f"{run_dir.name}.lock"


@contextmanager
def claim(run_dir: Path) -> Iterator[bool]:
    """Yield True when this process holds the run (until the block ends), False when another does."""
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def run_one(config: dict[str, Any]) -> str:
    """Train one run (a TrainConfig as a dict) if no other worker holds it: "done", "busy" or
    "skipped" (complete already). What a ``--jobs`` subprocess and a submitit task run."""
    from embtool.training import TrainConfig, train
    from embtool.training.runfolder import DONE, RunFolder

    cfg = TrainConfig.from_dict(config, origin="grid run")
    run_dir = Path(cfg.out or "")
    with claim(run_dir) as mine:
        if not mine:
            return "busy"
        if RunFolder(run_dir).state == DONE:
            return "skipped"
        train(cfg)
    return "done"


# a worker stops on these as `embtool` does (cli.main): it unwinds (KeyboardInterrupt), then exits
STOPPED: dict[int, tuple[str, int]] = {
    signal.SIGINT: ("interrupted", 130),
    signal.SIGTERM: ("terminated", 143),
}
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m embtool.gridjobs RUN.json [--parent PID]``: one ``--jobs`` worker (exit 0 done,
    3 busy, 130/143 stopped); with ``--parent``, it stops when process PID ends (``watch_parent``)."""
    from embtool.errors import EmbtoolError

    args = list(sys.argv[1:] if argv is None else argv)
    came: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        came.append(signum)
        if len(came) == 1:  # once: a second one (the parent's SIGTERM after a Ctrl-C) must not cut it short
            raise KeyboardInterrupt

    for signum in STOPPED:
        signal.signal(signum, stop)
    try:
        if "--parent" in args:
            watch_parent(int(args[args.index("--parent") + 1]))
        config = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        status = run_one(config)
    except EmbtoolError as e:
        print(f"embtool: error: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        word, code = STOPPED[came[0] if came else signal.SIGINT]
        print(f"embtool: {word}", file=sys.stderr)
        return code
    return BUSY if status == "busy" else 0


def watch_parent(parent: int) -> None:
    """SIGTERM this worker when process ``parent`` (its ``experiment``) ends, however it ends.

    Two ways, either enough: on Linux the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG)``,
    sent when the *thread* that started the worker ends: ``run_local`` runs on the main thread), then
    ``getppid()`` checked for a parent that died before it was set; everywhere, a thread that waits
    for the end of stdin, a pipe whose one writer is the parent (``run_local``): the kernel closes it
    when the parent dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl in this libc: the pipe alone
            pass
    if os.getppid() != parent:  # the parent is gone already: reparented to init or a subreaper
        os.kill(os.getpid(), signal.SIGTERM)
        return
    threading.Thread(target=_stop_at_eof, args=(sys.stdin.fileno(),), daemon=True).start()


def _stop_at_eof(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)  # the main thread gets it: KeyboardInterrupt there


# ----------------------------------------------------------------------------- many runs


def run_label(run: Any) -> str:
    point = ",".join(f"{k}={v}" for k, v in run.point.items())
    return "-".join(x for x in (run.variant, point, f"s{run.seed}") if x)


def worker_env(
    slot: int, jobs: int, devices: Sequence[str], base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of worker slot ``slot``: its GPU, or its share of the CPU's threads."""
    env = dict(os.environ if base is None else base)
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
    else:
        threads = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
        env.setdefault("OMP_NUM_THREADS", threads)
    return env


def _config_dict(cfg: Any, jobs: int, devices: Sequence[str]) -> dict[str, Any]:
    d = dict(cfg.to_dict())
    if not devices and not d.get("threads"):
        d["threads"] = max(1, (os.cpu_count() or 1) // max(1, jobs))  # split the cores
    return d


def run_local(
    grid: Any, configs: dict[int, Any], jobs: int, devices: Sequence[str] = (), event: Event | None = None
) -> list[tuple[Any, str]]:
    """Train the grid's runs not done, ``jobs`` at a time, each in a worker subprocess; return the
    failed runs and why (the last error line of the run's log, ``OUT/logs/LABEL.log``)."""
    event = event or (lambda name, info: None)
    logs = grid.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    queue = [r for r in grid.runs if id(r) in configs]
    free = list(range(jobs))
    running: dict[int, tuple[subprocess.Popen[bytes], Any, Any]] = {}
    failures: list[tuple[Any, str]] = []
    try:
        while queue or running:
            while queue and free:
                run = queue.pop(0)
                slot = free.pop(0)
                label = run_label(run)
                spec = logs / f"{label}.json"
                spec.write_text(json.dumps(_config_dict(configs[id(run)], jobs, devices)), encoding="utf-8")
                log = open(logs / f"{label}.log", "wb")  # noqa: SIM115 - closed when the worker ends
                proc = subprocess.Popen(
                    [sys.executable, "-m", "embtool.gridjobs", str(spec), "--parent", str(os.getpid())],
                    stdin=subprocess.PIPE,  # never written: its end (this process's) stops the worker
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=worker_env(slot, jobs, devices),
                )
                running[slot] = (proc, run, log)
                event("start", _info(grid, run, slot, devices))
            time.sleep(0.2)
            for slot, (proc, run, log) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                _close(proc, log)
                del running[slot]
                free.append(slot)
                info = _info(grid, run, slot, devices)
                if code == 0:
                    run.state = "done"
                    event("done", info)
                elif code == BUSY:
                    event("busy", info)
                else:
                    why = _last_error(logs / f"{run_label(run)}.log") or f"worker exited with {code}"
                    failures.append((run, why))
                    event("failed", {**info, "error": why})
    finally:  # stopped (Ctrl-C, SIGTERM) or failed: the workers stop too (all at once), before this returns
        for proc, _, _ in running.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, _, log in running.values():
            _close(proc, log, grace=30.0)
    return failures


def _close(proc: subprocess.Popen[bytes], log: Any, grace: float = 0.0) -> None:
    """Close a worker's pipe and log; with ``grace``, wait that long for it to end first (then SIGKILL)."""
    if grace:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()
    log.close()


def _info(grid: Any, run: Any, slot: int, devices: Sequence[str]) -> dict[str, Any]:
    return {
        "index": grid.runs.index(run) + 1,
        "total": len(grid.runs),
        "variant": run.variant,
        "seed": run.seed,
        "out": str(run.out),
        "point": run_label(run),
        "worker": slot,
        "device": devices[slot % len(devices)] if devices else None,
        "resume": run.state == "resume",
    }


def _last_error(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [x for x in lines if x.startswith("embtool: error:")]
    if errors:
        return errors[-1].removeprefix("embtool: error:").strip()
    tail = [x for x in lines if x.strip()]
    return tail[-1].strip()[:300] if tail else ""


def run_submitit(
    grid: Any, configs: dict[int, Any], launcher: str, slurm: Slurm, event: Event | None = None
) -> list[tuple[Any, str]]:
    """Submit every run not done as one task of a submitit job array (``launcher`` "slurm" or
    "local"), wait for them all, and return the failed runs and why."""
    try:
        import submitit
    except ImportError:
        raise BadInput("--launcher needs submitit: pip install submitit") from None

    event = event or (lambda name, info: None)
    runs = [r for r in grid.runs if id(r) in configs]
    if not runs:
        return []
    folder = grid.out / "logs" / "submitit"
    executor = submitit.AutoExecutor(folder=folder, cluster=launcher)
    params: dict[str, Any] = {"timeout_min": slurm.minutes(), "name": f"embtool-{grid.task}"}
    if launcher == "slurm":
        params.update(gpus_per_node=slurm.gpus_per_run, tasks_per_node=1, nodes=1)
        if slurm.partition:
            params["slurm_partition"] = slurm.partition
        if slurm.cpus_per_run:
            params["cpus_per_task"] = slurm.cpus_per_run
        params.update(slurm.extra)
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(run_one, configs[id(r)].to_dict()) for r in runs]
    for run, job in zip(runs, jobs, strict=True):
        event("submitted", {**_info(grid, run, 0, ()), "job": str(job.job_id)})
    failures: list[tuple[Any, str]] = []
    for run, job in zip(runs, jobs, strict=True):
        info = {**_info(grid, run, 0, ()), "job": str(job.job_id)}
        try:
            status = job.result()
        except Exception as e:  # noqa: BLE001 - a failed task: record it, the grid goes on
            why = " ".join(str(e).split())[-300:] or type(e).__name__
            failures.append((run, why))
            event("failed", {**info, "error": why})
            continue
        if status == "busy":
            event("busy", info)
        else:
            run.state = "done"
            event("done", info)
    return failures


def run_grid_parallel(
    grid: Any,
    configs: dict[int, Any],
    jobs: int = 1,
    devices: Sequence[str] = (),
    launcher: str = "none",
    slurm: Slurm | None = None,
    event: Event | None = None,
) -> list[tuple[Any, str]]:
    """`experiment` with ``--jobs``/``--devices`` or ``--launcher``: train the runs not done (their
    TrainConfig in ``configs``, by ``id(run)``: ``experiment.start_grid``, which has checked the
    grid and built its tables) across workers; return the failed runs and why."""
    if launcher not in LAUNCHERS:
        raise BadInput(f"invalid --launcher {launcher!r}; valid choices: {list(LAUNCHERS)}")
    if jobs < 1:
        raise BadInput(f"--jobs must be at least 1, got {jobs}")
    for run in grid.runs:
        if id(run) not in configs and event is not None:
            event("skip", _info(grid, run, 0, ()))
    if launcher in ("local", "slurm"):
        return run_submitit(grid, configs, launcher, slurm or Slurm(), event)
    return run_local(grid, configs, jobs, devices, event)


if __name__ == "__main__":
    sys.exit(main())
