"""One run over several processes: DistributedDataParallel under torchrun (no launcher of our own).

``torchrun --nproc-per-node N -m embtool train …`` starts N copies of ``embtool train``; torchrun
sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` and ``World.from_env`` reads them. Every rank
builds the same data, model and random batches (same seed); rank r takes its share of each
batch (``share``) and scales its loss so that DDP's averaged gradient is the whole batch's:
the same step as one process, up to the order of floating-point sums. Each rank evaluates every
size-th batch of the validation and test splits (``evaluation``; ``all_gather``); rank 0 alone
writes the run folder, the others wait for it at a barrier. ``embtool train --nproc N`` runs
torchrun's own launcher (``torch.distributed.run``, ``launch``): it hands every rank the run's
settings themselves, the resolved TrainConfig as JSON in ``$EMBTOOL_RANK_CONFIG`` (``rank_config``),
never options rebuilt from them (a resumed run's rank would read every default as a change).
``experiment --jobs`` starts its workers the same way (``embtool -q train`` with the run's
TrainConfig in ``$EMBTOOL_RANK_CONFIG``), naming itself in ``$EMBTOOL_LAUNCHER_PID``: such a
worker stops when its launcher ends, however it ends (``follow_launcher``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch

from embtool.core.errors import BadInput, WorkFailure

# collectives wait this long (seconds) for a rank: longer than rank 0's writes and its share of
# the validation and test decoding, while the others stand at a barrier (EMBTOOL_DIST_TIMEOUT overrides)
DEFAULT_TIMEOUT_S = 4 * 3600
CONFIG_ENV = "EMBTOOL_RANK_CONFIG"  # the run's TrainConfig (a JSON object) that `launch` hands each rank
LAUNCHER_ENV = "EMBTOOL_LAUNCHER_PID"  # the process a launched worker lives no longer than
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# the signals torchrun's launcher takes over (its $TORCHELASTIC_SIGNALS_TO_HANDLE default)
_LAUNCHER_SIGNALS = tuple(
    getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT") if hasattr(signal, n)
)
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in a torchrun group (size 1, rank 0: no group)."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def from_env(cls) -> World:
        try:
            size = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            return cls()
        return cls(size, rank, local) if size > 1 else cls()


def device_for(world: World, device: torch.device) -> torch.device:
    """Rank's device: ``cuda:LOCAL_RANK`` on CUDA (made current), else the device as given."""
    if world.distributed and device.type == "cuda":
        visible = torch.cuda.device_count()
        if world.local_rank >= visible:  # else CUDA's "invalid device ordinal", on every extra rank
            raise BadInput(
                f"rank {world.rank}: LOCAL_RANK {world.local_rank}, but only {visible} CUDA device(s) are "
                f"visible; start {visible} or fewer processes per node, or use --device cpu (gloo)"
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


def init(world: World, device: torch.device) -> None:
    """Join the group: NCCL on CUDA, gloo on CPU (a no-op for a single process)."""
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        return
    timeout = timedelta(seconds=float(os.environ.get("EMBTOOL_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timeout)


def close(world: World) -> None:
    import torch.distributed as dist

    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def all_sum(world: World, values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (the values themselves for one process)."""
    if not world.distributed:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


def all_gather(world: World, obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank (``[obj]`` for one process)."""
    if not world.distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def share(index: list[int], world: World) -> tuple[list[int], float]:
    """Rank's examples of one batch (every size-th from its rank on) and their loss weight.

    A batch smaller than the group leaves some ranks nothing: they take the first example at
    weight 0, so that every rank joins the all-reduce (else DDP waits forever) and the gradient
    stays the batch's.
    """
    if not world.distributed:
        return index, 1.0
    mine = index[world.rank :: world.size]
    return (mine, 1.0) if mine else (index[:1], 0.0)


def check_gpus(nproc: int, device: str) -> None:
    """BadInput when ``nproc`` ranks on ``device`` ("auto", "cpu" or "cuda") would find fewer CUDA
    devices than ranks: rank r takes ``cuda:r``, and each extra one would stop on "invalid device
    ordinal" after the group has started."""
    if nproc < 2 or device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible >= nproc:
        return
    if visible == 0:
        raise BadInput(
            f"--nproc {nproc} --device {device}: no CUDA device is visible; give --device cpu (gloo)"
        )
    raise BadInput(
        f"--nproc {nproc}: only {visible} CUDA device(s) are visible; give --nproc {visible} or fewer, "
        "or --device cpu (gloo)"
    )


def launch(
    nproc: int, config: dict[str, Any], args: Sequence[str] = ("train",), run_dir: str = "RUN_DIR"
) -> None:
    """``torchrun --standalone --nproc-per-node nproc -m embtool ARGS`` in this process, through
    torchrun's own launcher, every rank training ``config`` (a TrainConfig as a dict, handed over in
    ``$EMBTOOL_RANK_CONFIG``; ARGS: ``train`` and flags of output only). BadInput before any rank
    starts when the GPUs are too few (``check_gpus``); a rank that fails is a WorkFailure naming it
    (torchrun's elastic agent has stopped the others by then). The launcher's signal handlers are
    its own while it runs: a signal that stopped it goes on to this process's handler after."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    check_gpus(nproc, str(config.get("device", "auto")))
    argv = ["--standalone", "--nproc-per-node", str(nproc), "--module", "embtool", *args]
    handlers = {s: signal.getsignal(s) for s in _LAUNCHER_SIGNALS}  # torchrun sets its own, for good
    before = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = json.dumps(config, allow_nan=False)  # the ranks inherit this environment
    stopped = None
    try:
        run(get_args_parser().parse_args(argv))
    except ChildFailedError as e:
        raise WorkFailure(failure_message(e, run_dir)) from None
    except SignalException as e:  # the ranks are stopped
        stopped = e.sigval
    finally:  # this process's environment and signal handlers as they were
        if before is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = before
        for signum, handler in handlers.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)
    if stopped is not None:
        signal.raise_signal(stopped)  # embtool's handler stops the command (KeyboardInterrupt)
        raise KeyboardInterrupt  # a handler that let it pass: stopped all the same


def rank_config() -> dict[str, Any] | None:
    """The TrainConfig (as a dict) that ``launch`` handed this rank; None in a process it did not start."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise BadInput(f"${CONFIG_ENV}: not a JSON object of training settings (unset it)")
    return value


def failure_message(e: BaseException, run_dir: str = "RUN_DIR") -> str:
    """One line naming the first failed rank, its exit and what to do."""
    failures = getattr(e, "failures", {}) or {}
    if not failures:
        return f"a rank of the torchrun group failed ({' '.join(str(e).split())[:300]})"

    # the rank that failed of itself, not one torchrun stopped after it: torchrun stops a rank with
    # SIGTERM, which the rank turns into exit 143 or, when it came while the rank was already
    # failing, into an escaping KeyboardInterrupt (signal 2 or exit 130); a rank that lost its peer
    # exits 1. Timestamps are whole seconds and often equal, so they only break ties.
    stopped = {-15, -2, 130, 143}

    def first(r: int) -> tuple[int, int, int]:
        code = getattr(failures[r], "exitcode", 1)
        cause = 2 if code in stopped else 0 if isinstance(code, int) and code < 0 else 1
        return cause, getattr(failures[r], "timestamp", 0), r

    rank = min(failures, key=first)  # a rank killed by a signal, before one that lost its peer
    f = failures[rank]
    code = getattr(f, "exitcode", "?")
    how = f"was killed by signal {-code}" if isinstance(code, int) and code < 0 else f"exited with {code}"
    return (
        f"rank {rank} (pid {getattr(f, 'pid', '?')}) {how}; torchrun stopped the other ranks; "
        f"the run keeps its last completed epoch: continue it with `embtool train --resume {run_dir}` (any --nproc)"
    )


def follow_launcher() -> None:
    """When a launcher started this process and named itself (``$EMBTOOL_LAUNCHER_PID``): SIGTERM
    this process when the launcher ends, however it ends (embtool stops on SIGTERM as on Ctrl-C,
    its run left to resume). The variable is taken out of the environment, so that processes this
    one starts (torchrun's ranks) do not follow a process that is not their parent.

    Two ways, either enough: on Linux the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG)``,
    sent when the *thread* that started this process ends: the launcher's thread waits for it),
    then ``getppid()`` checked for a launcher that died before it was set; everywhere, a thread that
    waits for the end of stdin, a pipe whose one writer is the launcher: the kernel closes it when
    the launcher dies."""
    text = os.environ.pop(LAUNCHER_ENV, "")
    if not text.isdigit():
        return
    watch_parent(int(text))


def watch_parent(parent: int) -> None:
    """SIGTERM this process when process ``parent`` ends (see ``follow_launcher``)."""
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
