"""One epoch and the evaluations: training steps, validation loss, greedy/beam translation.

Per step: the random batch (``batching``) is cut into micro-batches on a CPU (``cpu``), each
part's loss is backpropagated at its share of the batch's units, so the gradient is the whole
batch's, then one Adam step. Each epoch's randomness (batch order, dropout) comes from
(seed, epoch), so a resumed run repeats an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from embtool.errors import BadInput, WorkFailure
from embtool.model import ModelConfig, Seq2Seq
from embtool.training.batching import Batch, classification_batch, make_batches, translation_batch
from embtool.training.config import TrainConfig
from embtool.training.cpu import micro_batches, pass_overhead
from embtool.training.data import SPECIALS, detokenizer
from embtool.training.decoding import decode, max_output_len

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


def pick_amp(name: str, device: torch.device) -> bool:
    """bf16 autocast: on CUDA with bf16, or on CPUs with native bf16 (AVX512-BF16/AMX); else off.

    Without native support, bf16 matmuls on a CPU are emulated and several times slower than fp32.
    """
    if name == "off":
        return False
    if name == "bf16":
        return True
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


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


def collate(examples: Examples, index: list[int], kind: str) -> Batch:
    src = [examples[i][0] for i in index]
    if kind == "translation":
        return translation_batch(src, [examples[i][1] for i in index])
    return classification_batch(src, [examples[i][1] for i in index])


def model_overhead(cfg: ModelConfig, device: torch.device) -> int | None:
    """``cpu.pass_overhead`` for this model: its width and its layers on both sides."""
    layers = cfg.enc_layers + (cfg.dec_layers if cfg.kind == "translation" else 0)
    return pass_overhead(cfg.d_model, layers, device)


def collate_parts(
    examples: Examples, index: list[int], kind: str, device: torch.device, overhead: int | None
) -> list[Batch]:
    """One training batch as micro-batches of similar lengths (``micro_batches``, at ``overhead``
    padded tokens a pass), or whole when ``overhead`` is None; on ``device``."""
    parts = [index]
    if overhead is not None:
        src_len = {i: len(examples[i][0]) for i in index}
        tgt_len = (
            {i: len(examples[i][1]) + 1 for i in index} if kind == "translation" else dict.fromkeys(index, 0)
        )
        parts = micro_batches(index, src_len, tgt_len, overhead)
    return [collate(examples, part, kind).to(device, device.type == "cuda") for part in parts]


# ----------------------------------------------------------------------------- one epoch


def _autocast(device: torch.device, amp: bool) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


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


def train_epoch(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    examples: Examples,
    kind: str,
    cfg: TrainConfig,
    epoch: int,
    device: torch.device,
    amp: bool,
    progress: Progress,
    before_step: Callable[[], None] | None = None,
) -> tuple[float, float, float]:
    """One pass over the training data; returns (mean loss, seconds, tokens per second).

    ``before_step()`` runs before each optimizer step (the learning-rate schedule). A step whose
    loss is not finite or above ``EXPLODED`` raises ``Diverged``.
    """
    gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
    torch.manual_seed(
        _epoch_seed(cfg.seed, epoch)
    )  # dropout (the trainer restores the global RNG after the run)
    batches = batches_of(examples, kind, cfg, gen)
    params = [p for p in model.parameters() if p.requires_grad]
    overhead = model_overhead(model.cfg, device)  # type: ignore[arg-type]
    model.train()
    total, units, tokens = 0.0, 0, 0
    start = time.perf_counter()
    progress("epoch_start", {"epoch": epoch, "epochs": cfg.epochs, "steps": len(batches)})
    for step, index in enumerate(batches, start=1):
        parts = collate_parts(examples, index, kind, device, overhead)
        if before_step is not None:
            before_step()
        loss_sum, n = train_step(
            model, opt, params, parts, kind, cfg.clip_norm, device, amp, cfg.label_smoothing
        )
        if not math.isfinite(loss_sum) or loss_sum / max(n, 1) > EXPLODED:
            raise Diverged(epoch, step, loss_sum / max(n, 1))
        total += loss_sum
        units += n
        tokens += sum(b.n_tokens for b in parts)
        elapsed = time.perf_counter() - start
        progress(
            "step",
            {
                "step": step,
                "steps": len(batches),
                "loss": total / max(units, 1),
                "tokens_per_s": tokens / max(elapsed, 1e-9),
            },
        )
    seconds = time.perf_counter() - start
    return total / max(units, 1), seconds, tokens / max(seconds, 1e-9)


def train_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    parts: list[Batch],
    kind: str,
    clip_norm: float,
    device: torch.device,
    amp: bool,
    smoothing: float = 0.0,
) -> tuple[float, int]:
    """One optimizer step on the mean loss of a batch given as micro-batches; returns (summed loss,
    scored units). Each part's backward adds its share, so the gradient is the whole batch's."""
    units = sum(b.n_tokens if kind == "translation" else len(b.src) for b in parts)
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for batch in parts:
        with _autocast(device, amp):
            loss_sum, _ = _loss(model, batch, kind, smoothing)
        (loss_sum / max(units, 1)).backward()
        total += float(loss_sum.detach())
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    opt.step()
    return total, units


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)


@torch.no_grad()
def eval_loss(
    model: torch.nn.Module, examples: Examples, kind: str, cfg: TrainConfig, device: torch.device, amp: bool
) -> tuple[float, list[int]]:
    """Mean loss per scored unit; for classification also the predicted classes (in order)."""
    model.eval()
    total, units = 0.0, 0
    preds = [0] * len(examples)
    for index in batches_of(examples, kind, cfg, None):
        batch = collate(examples, index, kind).to(device)
        with _autocast(device, amp):
            if kind == "translation":
                loss_sum, n = _loss(model, batch, kind)
            else:
                logits = model(batch.src)
                assert batch.labels is not None
                loss_sum = F.cross_entropy(logits.float(), batch.labels, reduction="sum")
                n = len(index)
                for i, p in zip(index, logits.argmax(-1).tolist(), strict=True):
                    preds[i] = p
        total += float(loss_sum)
        units += n
    return total / max(units, 1), preds


@torch.no_grad()
def translate(
    model: Seq2Seq, examples: Examples, cfg: TrainConfig, device: torch.device, amp: bool, beam: int = 1
) -> list[list[int]]:
    """Decoded target ids for every example, in the examples' order."""
    model.eval()
    out: list[list[int]] = [[] for _ in examples]
    size = max(1, min(cfg.batch_size, 256) // max(1, beam))
    for index in make_batches([len(examples[i][0]) for i in range(len(examples))], size):
        batch = collate(examples, index, "translation").to(device)
        limit = max_output_len(batch.src.shape[1], model.cfg.max_len)
        with _autocast(device, amp):
            hyps = decode(model, batch.src, limit, beam)
        for i, h in zip(index, hyps, strict=True):
            out[i] = h
    return out


def detok_all(ids: list[list[int]], vocab: list[str], spec: str) -> list[str]:
    detok = detokenizer(spec)
    specials = set(SPECIALS)
    return [detok([vocab[i] for i in h if vocab[i] not in specials]) for h in ids]
