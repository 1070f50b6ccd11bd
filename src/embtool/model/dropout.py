"""Dropout with a mask that is cheaper to draw on a CPU than PyTorch's (same p); other devices,
and a compiled step, use ``F.dropout``. Part of the model: a layer, not a training trick."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Dropout(nn.Module):
    """Inverted dropout, as ``nn.Dropout``, with a mask that is cheaper to draw on a CPU.

    PyTorch's CPU dropout draws one 32-bit number per element from a single mt19937 stream: for
    the paper's model that was a fifth of a training step. Here each 64-bit draw gives four 16-bit
    lanes, each kept when it is at least round(p·2¹⁶) above the lowest value, so an element is
    dropped with probability p to within 2⁻¹⁷ (0.1 → 0.100006); the same generator and seed make
    the same masks. Other devices use ``F.dropout`` (their generators are fast), and so does a
    compiled step: the mask's int16 view of raw draws broke the graph in every layer, and the pieces
    after each break recompiled per shape until the recompile limit.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or torch.compiler.is_compiling():  # compiled: the compiler's own RNG
            return F.dropout(x, self.p, training=True)
        return _MaskedScale.apply(x, keep_mask(x.shape, self.p), 1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def keep_mask(
    shape: torch.Size | tuple[int, ...], p: float, generator: torch.Generator | None = None
) -> Tensor:
    """Boolean mask of ``shape``, each element False with probability p (to within 2⁻¹⁷), from
    64-bit draws of the (default or given) CPU generator cut into 16-bit lanes."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1, generator=generator)
    lanes = words.view(torch.int16)[:n].view(shape)  # uniform over −2¹⁵ … 2¹⁵−1
    return lanes >= round(p * 65536) - 32768


class _MaskedScale(torch.autograd.Function):
    """x · keep · scale, whose gradient is grad · keep · scale; only the boolean mask is saved."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, keep: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None
