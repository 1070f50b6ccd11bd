"""What each run of a grid gets: its GPUs, its share of the CPU, and what Slurm is asked for.

- GPUs (``experiment --jobs N``): ``--devices 0,1,…``, or, for runs on CUDA, every GPU this process
  sees (``visible_gpus``), dealt out ``--gpus-per-run`` at a time (``worker_gpus``): worker slot i
  sees only its group (``CUDA_VISIBLE_DEVICES``, ``worker_env``), and a run given N > 1 GPUs trains
  on N ranks, as ``train --nproc N`` does.
- CPU: without GPUs the machine's cores are split between the worker slots and their ranks
  (``cpu_share``).
- Slurm (``--launcher slurm``): ``Slurm`` holds one array task's ask: GPUs, CPUs (``CPUS_PER_GPU``
  per GPU unless given) and the time limit.
- ``Resources``: all of it for one grid, as ``run_experiment`` takes it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from embtool.core.errors import BadInput

# CPUs a Slurm task asks for per GPU when --cpus-per-run is 0: a GPU run's main thread launches the
# kernels while another collates the next batch, and decoding, the tokenizer and torchrun's ranks
# want their own; Slurm's default of one CPU per task starves them
CPUS_PER_GPU = 8


@dataclass
class Slurm:
    """What ``--launcher slurm`` asks of the scheduler for each run (one array task)."""

    partition: str | None = None
    gpus_per_run: int = 1  # a run given N > 1 trains on N ranks (torchrun inside the task)
    time: str = "12:00:00"  # HH:MM:SS or D-HH:MM:SS
    cpus_per_run: int = 0  # 0: CPUS_PER_GPU per GPU (for a run without GPUs: CPUS_PER_GPU)
    extra: dict[str, Any] = field(default_factory=dict)

    def minutes(self) -> int:
        return parse_time(self.time)

    def cpus(self) -> int:
        """The CPUs of one task: ``cpus_per_run``, else ``CPUS_PER_GPU`` for each GPU."""
        return self.cpus_per_run or CPUS_PER_GPU * max(1, self.gpus_per_run)

    def ranks(self) -> int:
        """The processes one run trains on: one per GPU."""
        return max(1, self.gpus_per_run)


@dataclass
class Resources:
    """Where a grid's runs execute (``run_experiment``'s executors): ``jobs`` workers at once, on
    ``devices`` (GPU ids; none: every visible GPU for runs on CUDA), ``slurm.gpus_per_run`` GPUs
    (ranks) a run; with submitit, the ``cluster`` ("slurm" or "local") and Slurm's ask."""

    jobs: int = 1
    devices: list[str] = field(default_factory=list)
    slurm: Slurm = field(default_factory=Slurm)
    cluster: str = "slurm"

    def slots(self, device: str = "auto") -> list[str]:
        """Each worker slot's GPUs ("0" or "0,1"; [] on a CPU): ``worker_gpus``. BadInput when one
        run needs more GPUs than there are."""
        return worker_gpus(self.devices, device, self.slurm.gpus_per_run)

    def workers(self, slots: Sequence[str]) -> int:
        """How many runs at once: ``jobs``, or with ``devices`` and no ``jobs``, one per slot."""
        return self.jobs if self.jobs > 1 or not self.devices else max(1, len(slots))


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


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this process sees, as a child's ``CUDA_VISIBLE_DEVICES`` names them: the entries of
    this process's own (ids, UUIDs or MIG names: GPU 0 here may be the machine's GPU 3), else
    ``0 … count-1``; [] without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    own = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES", "")
    names = [d.strip() for d in own.split(",") if d.strip()]
    return names[:count] if names else [str(i) for i in range(count)]


def on_cuda(device: str) -> bool:
    """Whether a run's ``--device`` trains on CUDA here ("auto" does where there is a GPU)."""
    if device == "cuda":
        return True
    if device != "auto":
        return False
    import torch

    return torch.cuda.is_available()


def worker_gpus(devices: Sequence[str], device: str = "auto", per_run: int = 1) -> list[str]:
    """Each worker slot's ``CUDA_VISIBLE_DEVICES``, in slot order: ``devices`` (``--devices``) or,
    for runs on CUDA, every visible GPU, ``per_run`` to a slot ("0,1"; a remainder stays idle);
    [] for runs on the CPU. BadInput when one run needs more GPUs than there are."""
    gpus = list(devices) or (visible_gpus() if on_cuda(device) else [])
    if not gpus:
        return []
    per_run = max(1, per_run)
    if len(gpus) < per_run:
        where = "--devices gives" if devices else "this machine shows"
        raise BadInput(
            f"--gpus-per-run {per_run}: {where} {len(gpus)} GPU(s) ({','.join(gpus)}); "
            f"give --gpus-per-run {len(gpus)} or fewer"
        )
    return [",".join(gpus[i : i + per_run]) for i in range(0, len(gpus) - per_run + 1, per_run)]


def cpu_share(jobs: int, ranks: int = 1) -> int:
    """Threads for each process when ``jobs`` runs of ``ranks`` processes share this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs * ranks))


def worker_env(
    slot: int, jobs: int, devices: Sequence[str], base: dict[str, str] | None = None, ranks: int = 1
) -> dict[str, str]:
    """The environment of worker slot ``slot``: its GPUs (``devices[slot]``, taken in turn when the
    slots outnumber them), or its share of the CPU's threads."""
    env = dict(os.environ if base is None else base)
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
    else:
        env.setdefault("OMP_NUM_THREADS", str(cpu_share(jobs, ranks)))
    return env
