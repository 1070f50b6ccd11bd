"""Embedding dynamics per epoch, so the paper's claims can be watched as a run trains.

For each embedding (src, tgt, and an untied output embedding "out"): the mean and σ of its values;
its relative drift ‖E_t − E_0‖ / ‖E_0‖ from the rows it started with, and the mean cosine of each
row to its initial row, overall and by frequency band (the vocabulary's non-special tokens, most
frequent first, cut in thirds: frequent / middle / rare). Frozen embeddings drift exactly 0.

For post-LN and Admin models also each sub-layer's residual-branch ratio ‖f_i(x)‖ / ‖x ⊙ ω_i‖ on
a fixed validation batch (eval mode): how much each layer's output depends on its residual branch,
Liu et al.'s (2020) view of what makes deep post-LN training unstable.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embtool.training.admin import probed_forward, real_positions
from embtool.training.batching import Batch

BANDS = ("frequent", "middle", "rare")


def embedding_weights(model: nn.Module) -> dict[str, Tensor]:
    """The model's embedding matrices by name: src, tgt, and "out" when the output is untied."""
    weights = {name: emb.weight for name, emb in model.embeddings().items()}  # type: ignore[operator]
    if hasattr(model, "out_embedding") and not model.cfg.tie_output:  # type: ignore[union-attr]
        weights["out"] = model.out_embedding().weight  # type: ignore[operator]
    return weights


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """The embeddings' current rows (a detached fp32 copy on the CPU): E_0 before training."""
    return {k: w.detach().float().cpu().clone() for k, w in embedding_weights(model).items()}


def _drift_cos(now: Tensor, start: Tensor) -> dict[str, float]:
    base = float(start.norm())
    drift = float((now - start).norm()) / base if base > 0 else 0.0
    live = start.norm(dim=1) > 0  # rows that start at zero have no direction to keep
    cos = F.cosine_similarity(now[live], start[live], dim=1).mean() if bool(live.any()) else torch.tensor(1.0)
    return {"drift": drift, "cos": float(cos)}


def embedding_stats(model: nn.Module, initial: dict[str, Tensor], specials: dict[str, int]) -> dict[str, Any]:
    """Each embedding's figures (see the module docstring); ``specials``: leading special rows per
    embedding name, left out of the frequency bands."""
    out: dict[str, Any] = {}
    for name, weight in embedding_weights(model).items():
        now = weight.detach().float().cpu()  # (V, E)
        start = initial[name]
        figures: dict[str, Any] = {
            "mean": float(now.mean()),
            "std": float(now.std()),
            **_drift_cos(now, start),
        }
        first = specials.get(name, 0)
        rows = now.shape[0] - first
        if rows >= len(BANDS):
            cuts = [first + round(rows * k / len(BANDS)) for k in range(len(BANDS) + 1)]
            figures["bands"] = {
                band: _drift_cos(now[a:b], start[a:b])
                for band, a, b in zip(BANDS, cuts[:-1], cuts[1:], strict=True)
            }
        out[name] = figures
    return out


@torch.no_grad()
def branch_ratios(model: nn.Module, batch: Batch) -> dict[str, list[float]]:
    """Per stack, each sub-layer's ‖f_i(x)‖ / ‖x ⊙ ω_i‖ over real positions (post-LN: ω = 1)."""
    masks = real_positions(batch, model.cfg.pad_id)  # type: ignore[union-attr, arg-type]
    ratios: dict[str, list[float]] = {}

    def make(stack: str, _layer: int) -> Any:
        keep = masks[stack]

        def visit(_i: int, x: Tensor, f: Tensor, omega: Tensor | None) -> None:
            base = x if omega is None else x * omega
            denom = float(base[keep].float().norm())
            ratios.setdefault(stack, []).append(float(f[keep].float().norm()) / denom if denom else math.inf)

        return visit

    probed_forward(model, batch, make)
    return ratios


def epoch_dynamics(
    model: nn.Module, initial: dict[str, Tensor], specials: dict[str, int], batch: Batch | None
) -> dict[str, Any]:
    """An epoch's metrics line entries: "emb" (``embedding_stats``) and, for post-LN and Admin
    models given a probe ``batch``, "branch_ratio" (``branch_ratios``)."""
    line: dict[str, Any] = {"emb": embedding_stats(model, initial, specials)}
    if batch is not None and model.cfg.norm in ("post", "admin"):  # type: ignore[union-attr]
        line["branch_ratio"] = branch_ratios(model, batch)
    return line
