"""One training epoch: ``train_epoch(model, data, engine, schedule, epoch)`` and its steps.

Per step: the random batch (``batching``) is cut into micro-batches on a CPU (``cpu``), each
part's loss is backpropagated at its share of the batch's units, so the gradient is the whole
batch's, then one Adam step. Each epoch's randomness (batch order, dropout) comes from
(seed, epoch), so a resumed run repeats an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from embtool.core.errors import BadInput, WorkFailure
from embtool.model.transformer import ModelConfig
from embtool.training.batching import Batch
from embtool.training.config import TrainConfig
from embtool.training.cpu import micro_batches, pass_overhead
from embtool.training.engine import Engine
from embtool.training.kinds import Examples, Kind, kind_of
from embtool.training.parallel import share
from embtool.training.schedule import Schedule

EXPLODED = 1000.0  # a step's mean loss above this (nats per unit) counts as diverged
SHOW_EVERY = 50  # on a GPU the running loss is read (a host sync) every this many steps only


class Diverged(WorkFailure):
    """A training step's loss was not finite or exploded: the run stops, marked "diverged"."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"training diverged at epoch {epoch}, step {step} (loss {loss:g})")
        self.epoch, self.step, self.loss = epoch, step, loss


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda: no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class TrainData:
    """The training examples, their kind (how they batch) and the settings that cut and seed an
    epoch's batches (``--batch-size``, ``--max-tokens``, ``--seed``; ``--epochs`` for progress)."""

    examples: Examples
    kind: Kind
    cfg: TrainConfig

    def batches(self, epoch: int) -> list[list[int]]:
        """Epoch ``epoch``'s random batches (index lists), the same for every rank and on resume."""
        gen = torch.Generator().manual_seed(_epoch_seed(self.cfg.seed, epoch))
        return self.kind.batches(self.examples, self.cfg, gen)


# ----------------------------------------------------------------------------- batches


def model_overhead(cfg: ModelConfig, device: torch.device) -> int | None:
    """``cpu.pass_overhead`` for this model: its width and its layers on both sides."""
    return pass_overhead(cfg.d_model, kind_of(cfg.kind).layers(cfg), device)


def collate_parts(
    examples: Examples,
    index: list[int],
    kind: Kind,
    device: torch.device,
    overhead: int | None,
    multiple: int = 1,
) -> list[Batch]:
    """One training batch as micro-batches of similar lengths (``micro_batches``, at ``overhead``
    padded tokens a pass), or whole when ``overhead`` is None; on ``device``, lengths padded to a
    multiple of ``multiple``."""
    parts = [index]
    if overhead is not None:
        parts = micro_batches(index, *kind.part_lengths(examples, index), overhead)
    return [kind.collate(examples, part, multiple).to(device, device.type == "cuda") for part in parts]


# ----------------------------------------------------------------------------- one epoch


class _Sums:
    """An epoch's running figures: the loss summed on the device (no sync a step), this rank's
    scored units, and the whole batches' units and tokens."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.mine = self.units = self.tokens = 0
        self.shown = 0.0  # the running mean loss last read


def train_epoch(
    model: torch.nn.Module, data: TrainData, engine: Engine, schedule: Schedule, epoch: int
) -> tuple[float, float, float]:
    """One pass over the training data; returns (mean loss, seconds, tokens per second).

    Under DDP (``engine.world``) each rank runs its share of every batch; the figures returned
    are the whole group's. ``schedule.next()`` runs before each optimizer step (the learning-rate
    schedule). A step whose mean loss is not finite or above ``EXPLODED`` raises ``Diverged``: the
    loss is read every step on a CPU, every ``SHOW_EVERY`` steps on a GPU (a NaN stays NaN), and
    under DDP it is the whole batch's on every rank, so the ranks stop together.
    """
    world, examples, kind = engine.world, data.examples, data.kind
    batches = data.batches(epoch)
    # dropout (the trainer restores the global RNG after the run); each rank draws its own masks
    torch.manual_seed((_epoch_seed(data.cfg.seed, epoch) + 7919 * world.rank) % (2**63))
    overhead = model_overhead(model.cfg, engine.device)  # type: ignore[arg-type]
    model.train()
    sums = _Sums(engine.device)
    start = time.perf_counter()
    engine.progress("epoch_start", {"epoch": epoch, "epochs": data.cfg.epochs, "steps": len(batches)})

    def collated(index: list[int]) -> tuple[list[Batch], float]:
        part_index, weight = share(index, world)
        return collate_parts(examples, part_index, kind, engine.device, overhead, engine.pad_multiple), weight

    for n_step, (index, (parts, weight)) in enumerate(
        zip(batches, ahead(collated, batches, engine.pinned), strict=True), start=1
    ):
        batch_n, batch_tokens = kind.units(examples, index)
        schedule.next()
        loss_sum = train_step(engine, schedule, parts, batch_n, weight * world.size)
        sums.loss += loss_sum * weight
        step_units = sum(b.units for b in parts) if weight else 0
        sums.mine += step_units
        sums.units += batch_n
        sums.tokens += batch_tokens
        if engine.device.type == "cpu" or n_step % SHOW_EVERY == 0 or n_step == len(batches):
            sums.shown = float(sums.loss) / max(sums.mine, 1)
            _check(engine, float(loss_sum) * weight, step_units, epoch, n_step)
        tps = sums.tokens / max(time.perf_counter() - start, 1e-9)
        engine.progress(
            "step",
            {
                "step": n_step,
                "steps": len(batches),
                "loss": sums.shown,
                "units": sums.mine,
                "tokens_per_s": tps,
            },
        )
    loss_total, _ = engine.sum([float(sums.loss), 0.0])
    seconds = time.perf_counter() - start
    return loss_total / max(sums.units, 1), seconds, sums.tokens / max(seconds, 1e-9)


def _check(engine: Engine, loss: float, units: int, epoch: int, step: int) -> None:
    """``Diverged`` unless the whole batch's mean loss (summed over the ranks) is finite and below ``EXPLODED``."""
    step_loss, step_n = engine.sum([loss, units])
    mean = step_loss / max(step_n, 1)
    if not math.isfinite(mean) or mean > EXPLODED:
        raise Diverged(epoch, step, mean)


def ahead(make: Callable[[Any], Any], items: list[Any], prefetch: bool) -> Iterator[Any]:
    """``make(item)`` for each item in order; with ``prefetch``, the next one is made in a thread
    while the caller works on this one (a GPU step: collating and the pinned copy overlap it)."""
    if not prefetch or len(items) < 2:
        yield from (make(x) for x in items)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="embtool-batches") as pool:
        pending = pool.submit(make, items[0])
        for nxt in items[1:]:
            current = pending.result()
            pending = pool.submit(make, nxt)
            yield current
        yield pending.result()


def train_step(
    engine: Engine, schedule: Schedule, parts: list[Batch], units: int, scale: float = 1.0
) -> torch.Tensor:
    """One optimizer step on a batch given as micro-batches; returns their summed loss (on the
    device, not waited for). Each part's backward adds its loss × ``scale`` / ``units`` (the
    whole batch's scored units), so the gradient is the batch's mean; under DDP ``scale`` is the
    group's size (DDP averages) and the parts before the last skip the all-reduce. Label
    smoothing is the loss module's (``objective.prepare(smoothing=…)``). The forward and backward
    passes run whole under ``step.guarded`` (a compiler failure redoes them eagerly); the update is
    ``engine.precision``'s (fp16: through its GradScaler), clipped to ``--clip-norm``."""
    step, precision = engine.step, engine.precision

    def passes() -> torch.Tensor:
        schedule.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=engine.device)
        for i, batch in enumerate(parts):
            with step.no_sync() if i < len(parts) - 1 else nullcontext():
                with precision.autocast():
                    loss_sum = step(batch)
                precision.backward(loss_sum * (scale / max(units, 1)))
            total = total + loss_sum.detach().float()
        return total

    total = step.guarded(passes)
    precision.step(schedule.opt, schedule.params, schedule.clip_norm)
    return total


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)
