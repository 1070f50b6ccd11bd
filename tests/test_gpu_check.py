"""The nn.Transformer reference bench/gpu_check.py's speed matrix races (bench/train.py), on the meta device."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch

ROOT = Path(__file__).resolve().parents[1]


def bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_runs_on_the_device_of_its_inputs():
    """Every mask the reference makes is on its inputs' device: on meta, a host-made causal mask
    beside meta padding masks is a device mismatch (as a CPU mask beside CUDA ones is on a GPU)."""
    model = bench("train").Reference(50, 60, d=16, heads=2, layers=1, ff=32).to("meta")
    src = torch.randint(1, 50, (3, 7), device="meta")
    tgt_in = torch.randint(1, 60, (3, 9), device="meta")
    logits = model(src, tgt_in)
    assert logits.device.type == "meta"
    assert tuple(logits.shape) == (3, 9, 60)


def test_reference_masks_the_future_and_the_padding():
    """The boolean masks mean what nn.Transformer reads them as: position t sees no later target
    token, and no position sees a padded source token."""
    torch.manual_seed(0)
    model = bench("train").Reference(30, 40, d=16, heads=2, layers=1, ff=32, dropout=0.0).eval()
    src = torch.tensor([[5, 6, 7, 3, 0, 0], [8, 9, 10, 11, 12, 3]])  # (B, S), row 0 padded
    tgt_in = torch.tensor([[2, 4, 5, 6, 7], [2, 8, 9, 10, 11]])  # (B, T)
    with torch.no_grad():
        logits = model(src, tgt_in)  # (B, T, V)
        later = tgt_in.clone()
        later[:, 3:] = 13  # other tokens after position 2
        assert torch.equal(model(src, later)[:, :3], logits[:, :3])
        assert not torch.allclose(model(src, later)[:, 3:], logits[:, 3:])
        shorter = model(src[:1, :4], tgt_in[:1])  # row 0 without its padding
        assert torch.allclose(shorter, logits[:1], atol=1e-5)
