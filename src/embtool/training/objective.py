"""The training loss as a module, the one thing ``--compile`` compiles and DDP wraps.

``torch.compile(model)`` compiles ``model.forward`` only: a loop that calls ``model.loss(…)`` runs
the uncompiled module, and DDP only hooks ``forward`` too. ``TrainLoss.forward`` *is* the loss
(summed over the batch's scored units), so ``prepare`` can wrap it in DDP (under torchrun) and
compile it with dynamic shapes: batch and length dimensions marked dynamic, so a run compiles one
graph for every batch shape (and one more for batches of one), counted in config.json. Its inputs are
made on the host with the batch (``rows``, ``src_padded``), so a step asks the device nothing until
the epoch ends.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embtool.model.transformer import Classifier, Seq2Seq
from embtool.training.batching import Batch

T = TypeVar("T")


class TrainLoss(nn.Module):
    """``forward(batch tensors) → summed loss``: translation's token cross-entropy, or the
    classifier's example cross-entropy. Holds the model as ``.model`` (its weights are shared)."""

    def __init__(
        self, model: Seq2Seq | Classifier, always_mask: bool = False, smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.model = model
        self.smoothing = smoothing  # label smoothing of the cross-entropy (--label-smoothing)
        # under compile, every batch takes the masked path: one graph, not one per "padded or not"
        self.always_mask = always_mask

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor | None,
        tgt_out: Tensor | None,
        rows: Tensor | None,
        labels: Tensor | None,
        src_padded: bool,
    ) -> Tensor:
        padded = True if self.always_mask else src_padded
        if isinstance(self.model, Seq2Seq):
            assert tgt_in is not None and tgt_out is not None and rows is not None
            return self.model.loss_sum(src, tgt_in, tgt_out, rows, padded, self.smoothing)
        assert labels is not None
        logits = self.model(src, padded)  # (B, C)
        return F.cross_entropy(logits.float(), labels, reduction="sum", label_smoothing=self.smoothing)


def inputs(batch: Batch) -> tuple[Any, ...]:
    """A batch as ``TrainLoss.forward``'s arguments."""
    return (batch.src, batch.tgt_in, batch.tgt_out, batch.rows, batch.labels, batch.src_padded)


class Stepper:
    """What a training step calls: the loss module, maybe in DDP, maybe compiled, and ``no_sync``
    for the micro-batches before a step's last (their gradients are all-reduced once, with the last's).

    ``guarded(work)`` runs a whole step (every part's forward and backward: a backward graph may
    compile only at the first ``.backward()``); when the compiled path fails it redoes the step eagerly,
    and only an error the eager step does not raise too is the compiler's (warned once; the run goes
    on eagerly). ``record()`` is what the compiler did in this run (config.json's "compile").
    """

    def __init__(self, loss: TrainLoss, ddp: nn.Module | None, compiled: Any | None) -> None:
        self.loss = loss
        self.ddp = ddp
        self.compiled = compiled
        self.eager: nn.Module = ddp if ddp is not None else loss
        self.compiles = compiled is not None  # asked to compile: batches are padded for it
        self.fallback: str | None = None  # why the run left the compiled path, if it did
        self.graphs_before = _graph_count() if self.compiles else 0

    def __call__(self, batch: Batch) -> Tensor:
        if self.compiled is None:
            return self.eager(*inputs(batch))  # type: ignore[no-any-return]
        _mark_dynamic(batch)
        with _compile_settings():
            return self.compiled(*inputs(batch))  # type: ignore[no-any-return]

    def guarded(self, work: Callable[[], T]) -> T:
        """``work()``, one training step from ``zero_grad`` on; if the compiled path raises, the step
        again eagerly: its error, if it raises one too, is the caller's (raised as eager raises it);
        else the compiler failed: warn, and train eagerly from here."""
        if self.compiled is None:
            return work()
        try:
            return work()
        except Exception as e:  # noqa: BLE001 - told apart below, by running the step eagerly
            failed = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        compiled, self.compiled = self.compiled, None
        try:
            result = work()  # zeroes the compiled attempt's gradients first
        except BaseException:
            self.compiled = compiled  # the same error without the compiler: not the compiler's
            raise
        self.fallback = f"the compiler failed ({failed})"
        warnings.warn(f"--compile: {self.fallback}; training without it", stacklevel=2)
        return result

    def no_sync(self) -> AbstractContextManager[Any]:
        return self.ddp.no_sync() if self.ddp is not None else nullcontext()  # type: ignore[operator]

    def record(self) -> dict[str, Any]:
        """Graphs the compiler made since ``prepare`` and whether the compiled path was in use at the end."""
        graphs = _graph_count() - self.graphs_before if self.compiles else 0
        return {"graphs": graphs, "compiled": self.compiled is not None, "fallback": self.fallback}


def _mark_dynamic(batch: Batch) -> None:
    """Batch and length dimensions dynamic from the first call: one graph, also when a first batch
    has equal source and target lengths (which would otherwise share one size symbol)."""
    from torch._dynamo import maybe_mark_dynamic

    for t in (batch.src, batch.tgt_in, batch.tgt_out, batch.rows, batch.labels):
        if t is not None:
            for dim in range(t.dim()):
                maybe_mark_dynamic(t, dim)


def _compile_settings() -> AbstractContextManager[Any]:
    """The compiler's settings for a compiled call, put back after it: the recompile limit raises
    (``guarded`` falls back to eager and the run records it) instead of running eagerly unseen."""
    from torch._dynamo import config as dynamo_config

    if not hasattr(dynamo_config, "fail_on_recompile_limit_hit"):  # pragma: no cover - torch < 2.6
        return nullcontext()
    return dynamo_config.patch(fail_on_recompile_limit_hit=True)


def _graph_count() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def prepare(
    model: Seq2Seq | Classifier,
    compile: bool = False,
    ddp_device: torch.device | None = None,
    distributed: bool = False,
    backend: str = "inductor",
    smoothing: float = 0.0,
) -> Stepper:
    """The model's training step: the loss module, in DDP when ``distributed`` (one process of a
    torchrun group), compiled with dynamic shapes when ``compile``."""
    loss = TrainLoss(model, always_mask=compile, smoothing=smoothing)
    ddp: nn.Module | None = None
    if distributed:
        import inspect

        from torch.nn.parallel import DistributedDataParallel as DDP

        on_cuda = ddp_device is not None and ddp_device.type == "cuda"
        # the position table is the same on every rank and never trained: no buffer sync a step
        newer = "forward_sync_buffers" in inspect.signature(DDP).parameters
        no_sync: dict[str, Any] = {"forward_sync_buffers" if newer else "broadcast_buffers": False}
        ddp = DDP(
            loss,
            device_ids=[ddp_device.index] if on_cuda and ddp_device is not None else None,
            gradient_as_bucket_view=True,
            **no_sync,
        )
    compiled = None
    if compile:
        import torch._dynamo

        # a fresh compiler for each run: runs in one process (a grid) share TrainLoss.forward's code
        # object, and after recompile_limit (8) models dynamo would run the rest eagerly, unseen
        torch._dynamo.reset()
        compiled = torch.compile(ddp if ddp is not None else loss, dynamic=True, backend=backend)
    return Stepper(loss, ddp, compiled)


def sdpa_info(device: torch.device, head_dim: int) -> dict[str, Any]:
    """Which of SDPA's kernels the run may take (config.json's "sdpa"). With a padding mask the
    fused choice on CUDA is the memory-efficient kernel, which needs a head dimension divisible by 8."""
    info: dict[str, Any] = {"head_dim": head_dim}
    if device.type == "cuda":
        cuda = torch.backends.cuda
        info.update(
            flash=bool(cuda.flash_sdp_enabled()),
            mem_efficient=bool(cuda.mem_efficient_sdp_enabled()),
            math=bool(cuda.math_sdp_enabled()),
            fused_with_padding=bool(cuda.mem_efficient_sdp_enabled()) and head_dim % 8 == 0,
        )
    else:
        info["cpu_fused"] = True  # the CPU flash kernel (no attention-weight dropout)
    return info
