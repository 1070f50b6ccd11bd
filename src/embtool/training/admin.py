"""Admin's profiling pass (Liu et al. 2020, "Understanding the Difficulty of Training Transformers").

An Admin model's sub-layers compute x_i = LN(x_{i−1} ⊙ ω_i + f_i(x_{i−1})) (``embtool.model.layers``).
Before training, one forward pass over the first few training batches sets, through each stack
(encoder; decoder with its cross-attention, in order),

    ω_1 = 1,   ω_i = sqrt(Var[x_0] + Σ_{1≤j<i} Var[f_j])   (i ≥ 2),

the variance the residual stream of the same stack without normalisation would have reached by
sub-layer i: x_0 (the stack's input) counts as the first branch, and the first sub-layer, whose
input is not normalised, keeps ω = 1 (as Transformer-Clinic's ``adaptive-profiling``). Each
Var is over every element at real (non-padding) positions of the profiled batch, in eval mode
(no dropout, no random draw: a resumed run repeats it exactly). ω is a learned parameter from
there on and is saved with the model.

Why not PyPI's ``admin-torch``: it sets ω in closed form from the layer count (its "default"
mode) rather than by profiling the model on data, and it brings its own residual module; the
profiling pass is what Transformer-Clinic users know, and it is a few lines over our layers' probe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from embtool.model.layers import Probe, Residual
from embtool.training.batching import Batch

PROFILE_BATCHES = 4  # training batches in the profiling pass, taken together as one


def stacks(model: nn.Module) -> dict[str, list[Residual]]:
    """The model's residual layers by stack, in forward order: {"encoder": […], "decoder": […]}."""
    out: dict[str, list[Residual]] = {"encoder": list(model.encoder.layers)}  # type: ignore[union-attr, arg-type]
    if hasattr(model, "decoder"):
        out["decoder"] = list(model.decoder)  # type: ignore[arg-type]
    return out


@contextmanager
def probing(model: nn.Module, make: Callable[[str, int], Probe]) -> Iterator[None]:
    """Give every layer the probe ``make(stack, layer index)`` for the duration of the block."""
    layers = [(name, i, layer) for name, ls in stacks(model).items() for i, layer in enumerate(ls)]
    try:
        for name, i, layer in layers:
            layer.probe = make(name, i)
        yield
    finally:
        for _, _, layer in layers:
            layer.probe = None


def real_positions(batch: Batch, pad_id: int) -> dict[str, Tensor]:
    """(B, T) masks of the real tokens each stack sees: the source, and the target prefix."""
    masks = {"encoder": batch.src != pad_id}
    if batch.tgt_in is not None:
        masks["decoder"] = batch.tgt_in != pad_id
    return masks


def variance(x: Tensor, keep: Tensor) -> float:
    """Var over every element of x (B, T, D) at the positions ``keep`` (B, T) marks."""
    return float(x[keep].float().var(correction=0))


def run_forward(model: nn.Module, batch: Batch) -> None:
    """One forward pass of ``batch`` through the whole model (the loss path for translation)."""
    if batch.tgt_in is not None:
        memory, mask = model.encode(batch.src)  # type: ignore[operator]
        model.decode(batch.tgt_in, memory, mask)  # type: ignore[operator]
    else:
        model(batch.src)


def probed_forward(model: nn.Module, batch: Batch, make: Callable[[str, int], Probe]) -> None:
    """One forward pass of ``batch`` in eval mode (no dropout) with every layer probed by ``make``;
    the model's training mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with probing(model, make):
            run_forward(model, batch)
    finally:
        model.train(was_training)


@torch.no_grad()
def profile(model: nn.Module, batch: Batch) -> dict[str, Any]:
    """Set every ω of an Admin ``model`` from one pass over ``batch``; returns the figures for
    config.json: each stack's ω per sub-layer (in order), and the tokens profiled."""
    masks = real_positions(batch, model.cfg.pad_id)  # type: ignore[union-attr, arg-type]
    totals: dict[str, float] = {}
    omegas: dict[str, list[float]] = {name: [] for name in stacks(model)}

    def make(stack: str, _layer: int) -> Probe:
        keep = masks[stack]

        def visit(_i: int, x: Tensor, f: Tensor, omega: Tensor | None) -> None:
            assert omega is not None, "profiling needs an Admin model"
            if stack not in totals:  # the stack's first sub-layer: x_0 counts as the first branch
                value, totals[stack] = 1.0, variance(x, keep)
            else:
                value = math.sqrt(totals[stack])
            omega.fill_(value)  # before the sub-layer uses it
            totals[stack] += variance(f, keep)
            omegas[stack].append(value)

        return visit

    probed_forward(model, batch, make)
    return {
        "omega": omegas,
        "tokens": {name: int(m.sum()) for name, m in masks.items()},
        "batches": PROFILE_BATCHES,
    }
