"""A grid's runs at the same time: ``experiment --jobs N`` on this machine (``run_pool``), or
``--launcher slurm|local`` through submitit (``run_submitit``, one job array). Each run is handed to
exactly one worker.

- One lock per run: the run folder's own (``RunFolder.lock``, held by the process that trains in
  it). A run whose lock another process holds (another ``--jobs`` slot, another ``experiment`` call
  on the same grid, a resubmitted array task) is left to it ("busy", ``in_use``); the kernel drops
  the lock when its process dies, so a killed worker leaves no stale claim.
- ``run_pool``: a standard executor (``concurrent.futures.ThreadPoolExecutor``, ``jobs`` threads)
  whose every task runs one run in a worker process, ``embtool -q train`` handed the run's
  TrainConfig as data (``$EMBTOOL_RANK_CONFIG``, as torchrun's ranks are; ``--nproc N`` for a run of
  N GPUs), its output in ``OUT/logs/LABEL.log``. Worker slot i sees only its GPUs
  (``gridresources.worker_gpus``); on a CPU the cores are split between the slots. A worker lives
  no longer than its ``experiment``, even one ended by SIGKILL (``parallel.follow_launcher``), and
  a stopped ``experiment`` (Ctrl-C, SIGTERM) stops its workers and waits for them: each stops as
  embtool stops on SIGTERM, its run left to resume when the command is run again.
- ``run_submitit``: every run not done as one task of a submitit job array (Slurm, or submitit's
  local executor); logs in ``OUT/logs/submitit``. Re-running the command skips finished runs and
  resubmits the others.
The grid's tables are built once, before any worker starts; the report after every run ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from embtool.core.errors import BadInput
from embtool.experiment.gridresources import Slurm, cpu_share, worker_env

Event = Callable[[str, dict[str, Any]], None]
STOP_GRACE_S = 30.0  # a stopped worker's time to unwind (its run left to resume) before SIGKILL


# ----------------------------------------------------------------------------- one run


def in_use(run_dir: Path) -> bool:
    """Whether another process trains in ``run_dir`` now (it holds the folder's lock)."""
    from embtool.training.runfolder import RunFolder

    if not run_dir.is_dir():
        return False
    try:
        with RunFolder(run_dir).lock():
            return False
    except BadInput:  # the lock's one refusal: another process holds it
        return True


def run_one(config: dict[str, Any], ranks: int = 1) -> str:
    """Train one run (a TrainConfig as a dict; on ``ranks`` processes, one per GPU, when > 1) unless
    it is complete ("skipped") or another process trains it ("busy"): what a submitit task runs."""
    from embtool.training import TrainConfig, train
    from embtool.training.runfolder import DONE, RunFolder

    cfg = TrainConfig.from_dict(config, origin="grid run")
    run_dir = Path(cfg.out or "")
    if RunFolder(run_dir).state == DONE:
        return "skipped"
    if in_use(run_dir):
        return "busy"
    if ranks > 1:  # torchrun's ranks train it, as `train --nproc` starts them
        from embtool.training.parallel import launch

        launch(ranks, cfg.to_dict(), ("-q", "train"), str(run_dir))
    else:
        train(cfg)
    return "done"


# ----------------------------------------------------------------------------- many runs


def run_label(run: Any) -> str:
    point = ",".join(f"{k}={v}" for k, v in run.point.items())
    return "-".join(x for x in (run.variant, point, f"s{run.seed}") if x)


def _config_dict(cfg: Any, jobs: int, devices: Sequence[str], ranks: int) -> dict[str, Any]:
    d = dict(cfg.to_dict())
    if not devices and not d.get("threads"):
        d["threads"] = cpu_share(jobs, ranks)  # split the cores
    return d


class _Workers:
    """The worker processes running now, and whether the pool is stopping (then none starts)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen[bytes]] = set()
        self.stopping = False

    def start(self, argv: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes] | None:
        with self.lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,  # never written: its end (this process's) stops the worker
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C reaches the experiment alone; it stops each worker once
            )
            self.running.add(proc)
            return proc

    def ended(self, proc: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.running.discard(proc)
        if proc.stdin is not None:
            proc.stdin.close()

    def stop(self) -> None:
        """SIGTERM every worker at once, then wait for each (SIGKILL after ``STOP_GRACE_S``)."""
        with self.lock:
            self.stopping = True
            procs = list(self.running)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_pool(
    grid: Any,
    configs: dict[int, Any],
    jobs: int,
    devices: Sequence[str] = (),
    event: Event | None = None,
    ranks: int = 1,
) -> list[tuple[Any, str]]:
    """Train the grid's runs not done (their TrainConfig in ``configs``, by ``id(run)``), ``jobs`` at
    a time, each in a worker process on ``ranks`` processes; worker slot i sees only GPUs
    ``devices[i]`` ("0" or "0,1"; taken in turn when the slots outnumber them). Return the failed
    runs and why (the last error line of the run's log, ``OUT/logs/LABEL.log``)."""
    from embtool.training.parallel import CONFIG_ENV, LAUNCHER_ENV

    event = event or (lambda name, info: None)
    logs = grid.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    todo = [r for r in grid.runs if id(r) in configs]
    slots: list[int] = list(range(jobs))  # free worker slots (a thread takes one per run)
    slot_lock = threading.Lock()
    workers = _Workers()
    argv = [sys.executable, "-m", "embtool", "-q", "train", *(["--nproc", str(ranks)] if ranks > 1 else [])]

    def work(run: Any) -> int | str:
        with slot_lock:
            slot = slots.pop(0)
        try:
            if in_use(run.out):
                return "busy"
            env = worker_env(slot, jobs, devices, ranks=ranks)
            config = _config_dict(configs[id(run)], jobs, devices, ranks)
            env.update({CONFIG_ENV: json.dumps(config, allow_nan=False), LAUNCHER_ENV: str(os.getpid())})
            with open(logs / f"{run_label(run)}.log", "wb") as log:
                proc = workers.start(argv, env, log)
                if proc is None:  # the pool is stopping
                    return "stopped"
                event("start", run_info(grid, run, slot, devices))
                try:
                    return proc.wait()
                finally:
                    workers.ended(proc)
        finally:
            with slot_lock:
                slots.append(slot)

    failures: list[tuple[Any, str]] = []
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="embtool-grid")
    try:
        futures: dict[Future[int | str], Any] = {pool.submit(work, run): run for run in todo}
        for future in as_completed(futures):
            run = futures[future]
            info = run_info(grid, run, 0, ())
            code = future.result()
            if code == 0:
                run.state = "done"
                event("done", info)
            elif code == "busy":
                event("busy", info)
            elif code != "stopped":
                why = _last_error(logs / f"{run_label(run)}.log") or f"worker exited with {code}"
                failures.append((run, why))
                event("failed", {**info, "error": why})
    finally:  # stopped (Ctrl-C, SIGTERM) or failed: the workers stop too, before this returns
        workers.stop()
        pool.shutdown(wait=True, cancel_futures=True)
    return failures


def run_info(grid: Any, run: Any, slot: int, devices: Sequence[str]) -> dict[str, Any]:
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
    if launcher == "slurm":  # one task per run: its GPUs, and torchrun's ranks inside it
        params.update(gpus_per_node=slurm.gpus_per_run, tasks_per_node=1, nodes=1, cpus_per_task=slurm.cpus())
        if slurm.partition:
            params["slurm_partition"] = slurm.partition
        params.update(slurm.extra)
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(run_one, configs[id(r)].to_dict(), slurm.ranks()) for r in runs]
    for run, job in zip(runs, jobs, strict=True):
        event("submitted", {**run_info(grid, run, 0, ()), "job": str(job.job_id)})
    failures: list[tuple[Any, str]] = []
    for run, job in zip(runs, jobs, strict=True):
        info = {**run_info(grid, run, 0, ()), "job": str(job.job_id)}
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
