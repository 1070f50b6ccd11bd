"""One epoch and the evaluations: training steps, validation loss, greedy/beam translation.

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
from typing import Any

import torch
import torch.nn.functional as F

from embtool.core.errors import BadInput, WorkFailure
from embtool.model.transformer import ModelConfig
from embtool.training.amp import choose_amp
from embtool.training.batching import (
    PAD_MULTIPLE,
    Batch,
    classification_batch,
    make_batches,
    translation_batch,
)
from embtool.training.config import TrainConfig
from embtool.training.cpu import micro_batches, pass_overhead
from embtool.training.objective import Stepper, prepare
from embtool.training.parallel import World, all_sum, share

Progress = Callable[[str, dict[str, Any]], None]
Examples = list[tuple[list[int], Any]]
EXPLODED = 1000.0  # a step's mean loss above this (nats per unit) counts as diverged


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


def pick_amp(name: str, device: torch.device) -> str:
    """The autocast dtype ``amp.choose_amp`` decides ("bf16", "fp16" or "off"), without its reason."""
    return choose_amp(name, device).amp


# ----------------------------------------------------------------------------- batches


def batches_of(
    examples: Examples,
    kind: str,
    cfg: TrainConfig,
    generator: torch.Generator | None,
    batch_size: int | None = None,
) -> list[list[int]]:
    if kind == "translation":
        lengths = [max(len(s), len(t) + 1) for s, t in examples]
        keys: list[Any] = [(n, len(t), len(s)) for n, (s, t) in zip(lengths, examples, strict=True)]
    else:
        lengths = [len(s) for s, _ in examples]
        keys = lengths
    return make_batches(lengths, batch_size or cfg.batch_size, cfg.max_tokens, generator, keys)


def collate(examples: Examples, index: list[int], kind: str, multiple: int = 1) -> Batch:
    """The examples at ``index`` as one batch, lengths padded to a multiple of ``multiple``."""
    src = [examples[i][0] for i in index]
    if kind == "translation":
        return translation_batch(src, [examples[i][1] for i in index], multiple)
    return classification_batch(src, [examples[i][1] for i in index], multiple)


def model_overhead(cfg: ModelConfig, device: torch.device) -> int | None:
    """``cpu.pass_overhead`` for this model: its width and its layers on both sides."""
    layers = cfg.enc_layers + (cfg.dec_layers if cfg.kind == "translation" else 0)
    return pass_overhead(cfg.d_model, layers, device)


def collate_parts(
    examples: Examples,
    index: list[int],
    kind: str,
    device: torch.device,
    overhead: int | None,
    multiple: int = 1,
) -> list[Batch]:
    """One training batch as micro-batches of similar lengths (``micro_batches``, at ``overhead``
    padded tokens a pass), or whole when ``overhead`` is None; on ``device``, lengths padded to a
    multiple of ``multiple``."""
    parts = [index]
    if overhead is not None:
        src_len = {i: len(examples[i][0]) for i in index}
        tgt_len = (
            {i: len(examples[i][1]) + 1 for i in index} if kind == "translation" else dict.fromkeys(index, 0)
        )
        parts = micro_batches(index, src_len, tgt_len, overhead)
    return [collate(examples, part, kind, multiple).to(device, device.type == "cuda") for part in parts]


# ----------------------------------------------------------------------------- one epoch


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(device: torch.device, amp: str) -> Any:
    dtype = AMP_DTYPES.get(amp)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """fp16's loss scaling (a no-op for bf16 and fp32); its state goes into state.pt."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def _loss(
    model: torch.nn.Module, batch: Batch, kind: str, smoothing: float = 0.0
) -> tuple[torch.Tensor, int]:
    """Summed loss over the batch's scored units (target tokens, or examples) and their count."""
    if kind == "translation":
        assert batch.tgt_in is not None and batch.tgt_out is not None
        return model.loss(batch.src, batch.tgt_in, batch.tgt_out, smoothing)  # type: ignore[operator]
    assert batch.labels is not None
    logits = model(batch.src)  # (B, C)
    loss = F.cross_entropy(logits.float(), batch.labels, reduction="sum", label_smoothing=smoothing)
    return loss, int(batch.labels.shape[0])


def batch_units(examples: Examples, index: list[int], kind: str) -> tuple[int, int]:
    """(scored units, tokens) of a batch, counted on the host: target tokens with <eos> and
    target tokens (translation), or examples and source tokens (classification)."""
    if kind == "translation":
        n = sum(len(examples[i][1]) + 1 for i in index)
        return n, n
    return len(index), sum(len(examples[i][0]) for i in index)


SHOW_EVERY = 50  # on a GPU the running loss is read (a host sync) every this many steps only


def train_epoch(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    examples: Examples,
    kind: str,
    cfg: TrainConfig,
    epoch: int,
    device: torch.device,
    amp: str,
    progress: Progress,
    step: Stepper | None = None,
    world: World | None = None,
    scaler: torch.amp.GradScaler | None = None,
    before_step: Callable[[], None] | None = None,
) -> tuple[float, float, float]:
    """One pass over the training data; returns (mean loss, seconds, tokens per second).

    ``step`` is the compiled and/or DDP-wrapped loss (``objective.prepare``; default: the plain
    loss). Under DDP (``world``) each rank runs its share of every batch; the figures returned
    are the whole group's. ``before_step()`` runs before each optimizer step (the learning-rate
    schedule). A step whose mean loss is not finite or above ``EXPLODED`` raises ``Diverged``: the
    loss is read every step on a CPU, every ``SHOW_EVERY`` steps on a GPU (a NaN stays NaN), and
    under DDP it is the whole batch's on every rank, so the ranks stop together.
    """
    world = world or World()
    step = step or prepare(model, smoothing=cfg.label_smoothing)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
    # dropout (the trainer restores the global RNG after the run); each rank draws its own masks
    torch.manual_seed((_epoch_seed(cfg.seed, epoch) + 7919 * world.rank) % (2**63))
    batches = batches_of(examples, kind, cfg, gen)
    params = [p for p in model.parameters() if p.requires_grad]
    overhead = model_overhead(model.cfg, device)  # type: ignore[arg-type]
    multiple = PAD_MULTIPLE if step.compiles or device.type == "cuda" else 1
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=device)  # on the device: no sync a step
    mine, units, tokens = 0, 0, 0
    shown = 0.0
    start = time.perf_counter()
    progress("epoch_start", {"epoch": epoch, "epochs": cfg.epochs, "steps": len(batches)})

    def collated(index: list[int]) -> tuple[list[Batch], float]:
        part_index, weight = share(index, world)
        return collate_parts(examples, part_index, kind, device, overhead, multiple), weight

    for n_step, (index, (parts, weight)) in enumerate(
        zip(batches, ahead(collated, batches, device.type == "cuda"), strict=True), start=1
    ):
        batch_n, batch_tokens = batch_units(examples, index, kind)
        if before_step is not None:
            before_step()
        loss_sum = train_step(
            step, opt, params, parts, batch_n, cfg.clip_norm, device, amp, weight * world.size, scaler
        )
        total += loss_sum * weight
        step_units = sum(b.units for b in parts) if weight else 0
        mine += step_units
        units += batch_n
        tokens += batch_tokens
        if device.type == "cpu" or n_step % SHOW_EVERY == 0 or n_step == len(batches):
            shown = float(total) / max(mine, 1)
            step_loss, step_n = all_sum(world, [float(loss_sum) * weight, step_units], device)
            mean = step_loss / max(step_n, 1)
            if not math.isfinite(mean) or mean > EXPLODED:
                raise Diverged(epoch, n_step, mean)
        elapsed = time.perf_counter() - start
        progress(
            "step",
            {
                "step": n_step,
                "steps": len(batches),
                "loss": shown,
                "tokens_per_s": tokens / max(elapsed, 1e-9),
            },
        )
    loss_total, _ = all_sum(world, [float(total), 0.0], device)
    seconds = time.perf_counter() - start
    return loss_total / max(units, 1), seconds, tokens / max(seconds, 1e-9)


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
    step: Stepper,
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    parts: list[Batch],
    units: int,
    clip_norm: float,
    device: torch.device,
    amp: str,
    scale: float = 1.0,
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """One optimizer step on a batch given as micro-batches; returns their summed loss (on the
    device, not waited for). Each part's backward adds its loss × ``scale`` / ``units`` (the
    whole batch's scored units), so the gradient is the batch's mean; under DDP ``scale`` is the
    group's size (DDP averages) and the parts before the last skip the all-reduce. Label
    smoothing is the loss module's (``objective.prepare(smoothing=…)``). The forward and backward
    passes run whole under ``step.guarded`` (a compiler failure redoes them eagerly)."""

    def passes() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for i, batch in enumerate(parts):
            with step.no_sync() if i < len(parts) - 1 else nullcontext():
                with _autocast(device, amp):
                    loss_sum = step(batch)
                part_loss = loss_sum * (scale / max(units, 1))
                (scaler.scale(part_loss) if scaler is not None else part_loss).backward()
            total = total + loss_sum.detach().float()
        return total

    total = step.guarded(passes)
    if scaler is not None and scaler.is_enabled():
        if clip_norm:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        scaler.step(opt)  # skipped when fp16 overflowed; the scale adapts
        scaler.update()
        return total
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    opt.step()
    return total


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)
