"""CPU-only speed tricks: micro-batches, the cheap dropout mask, process settings restored."""

from __future__ import annotations

import random

import pytest
import torch

from embtool.training.cpu import micro_batches


def test_micro_batches_cut_padding_and_cover_the_batch():
    rng = random.Random(1)
    src = {i: rng.randint(2, 40) for i in range(128)}
    tgt = {i: max(2, src[i] + rng.randint(-3, 3)) for i in range(128)}
    runs = micro_batches(list(range(128)), src, tgt, overhead=64)
    assert sorted(i for r in runs for i in r) == list(range(128)) and 1 < len(runs) <= 128
    real = sum(src.values()) + sum(tgt.values())
    padded = sum(len(r) * (max(src[i] for i in r) + max(tgt[i] for i in r)) for r in runs)
    whole = 128 * (max(src.values()) + max(tgt.values()))
    assert padded < 1.15 * real < whole / 1.5
    assert [len(r) for r in micro_batches(list(range(128)), src, tgt, overhead=10**9)] == [
        64,
        64,
    ]  # at most 64 a run


def test_process_settings_put_threads_back() -> None:
    from embtool.training.cpu import process_settings

    before = torch.get_num_threads()
    with process_settings(torch.device("cpu"), threads=1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), process_settings(torch.device("cpu"), threads=1):
        raise RuntimeError("a failed run")
    assert torch.get_num_threads() == before


def test_dropout_drops_p_and_scales_the_rest():
    from embtool.training.cpu import Dropout, keep_mask

    keep = keep_mask((400, 1000), 0.1, torch.Generator().manual_seed(0))
    dropped = 1 - keep.float().mean().item()
    assert dropped == pytest.approx(0.1, abs=0.002)  # 400k draws: σ ≈ 0.0005
    rows, cols = keep.float().mean(dim=1), keep.float().mean(dim=0)  # no lane or position is biased
    assert (
        rows.min() > 0.85
        and cols.min() > 0.82
        and keep[:, 0::4].float().mean() == pytest.approx(0.9, abs=0.004)
    )
    drop = Dropout(0.25).train()
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    mask = y != 0
    assert torch.allclose(y[mask], x[mask] / 0.75)
    y.sum().backward()
    assert torch.allclose(x.grad, mask.float() / 0.75)  # type: ignore[arg-type]
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)  # the seed decides the mask
    assert drop.eval()(x) is x and Dropout(0.0).train()(x) is x
