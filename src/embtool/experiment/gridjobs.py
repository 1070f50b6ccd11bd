"""A grid's runs at the same time: ``experiment --jobs N`` on this machine, or ``--launcher
slurm|local`` through submitit (one job array). Each run is handed to exactly one worker.

- ``claim(run_dir)``: an exclusive ``flock`` on ``<run>.lock`` beside the run folder, held while the
  run trains; a second worker (another ``--jobs`` slot, another ``experiment`` call on the same
  grid, a resubmitted array task) finds it held and leaves the run alone. The kernel drops the lock
  when its process dies, so a killed worker leaves no stale claim.
- ``run_local``: up to N workers at once, each a ``python -m embtool.experiment.gridjobs RUN.json``
  subprocess: worker slot i sees only its GPUs (``gridresources.worker_gpus``: ``--devices``, else
  every visible GPU, ``--gpus-per-run`` to a slot); on a CPU the machine's cores are split between
  the slots. A worker lives no longer than its ``experiment`` (``watch_parent``), even one ended by
  SIGKILL: it stops as embtool stops on SIGTERM, its run left to resume when the command is run again.
- ``run_submitit``: every run not done as one task of a submitit job array (Slurm, or submitit's
  local executor); logs in ``OUT/logs/submitit``. Re-running the command skips finished runs and
  resubmits the others.
A run given N > 1 GPUs trains on N ranks (``parallel.launch``, as ``train --nproc N``). The grid's
tables are built once, before any worker starts; the report after every run ends.
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
from pathlib import Path
from typing import Any

from embtool.core.errors import BadInput
from embtool.experiment.gridresources import Slurm, cpu_share, worker_env

LAUNCHERS = ("none", "local", "slurm")
BUSY = 3  # a worker's exit status when another worker holds the run
Event = Callable[[str, dict[str, Any]], None]


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


def run_one(config: dict[str, Any], ranks: int = 1) -> str:
    """Train one run (a TrainConfig as a dict; on ``ranks`` processes, one per GPU, when > 1) if no
    other worker holds it: "done", "busy" or "skipped" (complete already). What a ``--jobs``
    subprocess and a submitit task run."""
    from embtool.training import TrainConfig, train
    from embtool.training.runfolder import DONE, RunFolder

    cfg = TrainConfig.from_dict(config, origin="grid run")
    run_dir = Path(cfg.out or "")
    with claim(run_dir) as mine:
        if not mine:
            return "busy"
        if RunFolder(run_dir).state == DONE:
            return "skipped"
        if ranks > 1:  # torchrun's ranks train it, as `train --nproc` starts them
            from embtool.training.parallel import launch

            launch(ranks, cfg.to_dict(), ("-q", "train"), str(run_dir))
        else:
            train(cfg)
    return "done"


# a worker stops on these as `embtool` does (cli.main): it unwinds (KeyboardInterrupt), then exits
STOPPED: dict[int, tuple[str, int]] = {
    signal.SIGINT: ("interrupted", 130),
    signal.SIGTERM: ("terminated", 143),
}
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m embtool.experiment.gridjobs RUN.json [--parent PID] [--ranks N]``: one ``--jobs`` worker (exit
    0 done, 3 busy, 2 bad input, 130/143 stopped); with ``--parent``, it stops when process PID ends
    (``watch_parent``); with ``--ranks``, the run trains on N processes."""
    from embtool.core.errors import EmbtoolError

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
        ranks = int(args[args.index("--ranks") + 1]) if "--ranks" in args else 1
        status = run_one(_read_spec(args[0] if args else ""), ranks)
    except EmbtoolError as e:
        print(f"embtool: error: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        word, code = STOPPED[came[0] if came else signal.SIGINT]
        print(f"embtool: {word}", file=sys.stderr)
        return code
    return BUSY if status == "busy" else 0


def _read_spec(path: str) -> dict[str, Any]:
    """A worker's run spec: the run's TrainConfig as a JSON object; BadInput when it cannot be read."""
    if not path:
        raise BadInput("usage: python -m embtool.experiment.gridjobs RUN.json [--parent PID] [--ranks N]")
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise BadInput(f"{path}: cannot read the run spec ({e.strerror or e})") from None
    except ValueError as e:
        raise BadInput(f"{path}: not a run spec (JSON: {e})") from None
    if not isinstance(value, dict):
        raise BadInput(f"{path}: not a run spec (a JSON object of training settings)")
    return value


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


def _config_dict(cfg: Any, jobs: int, devices: Sequence[str], ranks: int) -> dict[str, Any]:
    d = dict(cfg.to_dict())
    if not devices and not d.get("threads"):
        d["threads"] = cpu_share(jobs, ranks)  # split the cores
    return d


def run_local(
    grid: Any,
    configs: dict[int, Any],
    jobs: int,
    devices: Sequence[str] = (),
    event: Event | None = None,
    ranks: int = 1,
) -> list[tuple[Any, str]]:
    """Train the grid's runs not done, ``jobs`` at a time, each in a worker subprocess on ``ranks``
    processes; worker slot i sees only GPUs ``devices[i]`` (``gridresources.worker_gpus``: "0" or
    "0,1"; taken in turn when the slots outnumber them). Return the failed runs and why (the last
    error line of the run's log, ``OUT/logs/LABEL.log``)."""
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
                spec.write_text(
                    json.dumps(_config_dict(configs[id(run)], jobs, devices, ranks)), encoding="utf-8"
                )
                log = open(logs / f"{label}.log", "wb")  # noqa: SIM115 - closed when the worker ends
                argv = [
                    sys.executable,
                    "-m",
                    "embtool.experiment.gridjobs",
                    str(spec),
                    "--parent",
                    str(os.getpid()),
                ]
                proc = subprocess.Popen(
                    argv + (["--ranks", str(ranks)] if ranks > 1 else []),
                    stdin=subprocess.PIPE,  # never written: its end (this process's) stops the worker
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=worker_env(slot, jobs, devices, ranks=ranks),
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
    if launcher == "slurm":  # one task per run: its GPUs, and torchrun's ranks inside it
        params.update(gpus_per_node=slurm.gpus_per_run, tasks_per_node=1, nodes=1, cpus_per_task=slurm.cpus())
        if slurm.partition:
            params["slurm_partition"] = slurm.partition
        params.update(slurm.extra)
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(run_one, configs[id(r)].to_dict(), slurm.ranks()) for r in runs]
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
    """`experiment` with ``--jobs``/``--devices``/``--gpus-per-run`` or ``--launcher``: train the runs
    not done (their TrainConfig in ``configs``, by ``id(run)``: ``experiment.start_grid``, which has
    checked the grid and built its tables) across workers, each slot on GPUs ``devices[slot]``
    (``gridresources.worker_gpus``), each run on ``slurm.gpus_per_run`` ranks when > 1; return the
    failed runs and why."""
    if launcher not in LAUNCHERS:
        raise BadInput(f"invalid --launcher {launcher!r}; valid choices: {list(LAUNCHERS)}")
    if jobs < 1:
        raise BadInput(f"--jobs must be at least 1, got {jobs}")
    for run in grid.runs:
        if id(run) not in configs and event is not None:
            event("skip", _info(grid, run, 0, ()))
    if launcher in ("local", "slurm"):
        return run_submitit(grid, configs, launcher, slurm or Slurm(), event)
    return run_local(grid, configs, jobs, devices, event, (slurm or Slurm()).ranks())


if __name__ == "__main__":
    sys.exit(main())
