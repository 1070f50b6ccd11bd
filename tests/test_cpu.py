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
    from embtool.model.dropout import Dropout, keep_mask

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


def test_a_cuda_run_sets_tf32_in_both_apis_and_puts_them_back() -> None:
    """Issue 20.5: the run's TF32 went through the per-backend API only, and every legacy read
    (``allow_tf32``, ``get_float32_matmul_precision``) raised inside it. The setters work on a CPU
    build too: both APIs read TF32 during a CUDA run, and what they read before after it."""
    from conftest import matmul_state
    from embtool.training.cpu import process_settings

    cuda = torch.device("cuda")  # only the flags are touched: no GPU needed
    before = matmul_state()
    with process_settings(cuda):
        inside = matmul_state()
        cudnn = torch.backends.cudnn.allow_tf32
    assert "raises" not in inside.values() and cudnn is True
    assert (inside["precision"], inside["allow_tf32"]) == ("high", True)
    if inside["cuda"] is not None:  # torch >= 2.9: the per-backend value agrees
        assert inside["cuda"] == "tf32"
    assert matmul_state() == before
    with pytest.raises(RuntimeError), process_settings(cuda):
        raise RuntimeError("a failed run")
    assert matmul_state() == before


def test_a_callers_per_backend_tf32_setting_is_put_back() -> None:
    """A caller that set the per-backend API (its legacy reads raise) gets its values back after a
    run, and no legacy read raises during it."""
    from conftest import matmul_state
    from embtool.training.cpu import process_settings

    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("torch < 2.9 has the legacy setting only")
    saved = matmul.fp32_precision
    try:
        matmul.fp32_precision = "ieee"
        with process_settings(torch.device("cuda")):
            inside = matmul_state()
        assert "raises" not in inside.values() and inside["allow_tf32"] is True
        assert matmul.fp32_precision == "ieee"
    finally:
        matmul.fp32_precision = saved


def test_dropout_compiles_without_breaking_the_graph() -> None:
    """A compiled step drops with the compiler's RNG: the CPU mask (an int16 view of raw draws) broke
    the graph in every layer, and the pieces after the breaks recompiled per shape until the
    recompile limit (issue 20.4, seen in gpu_check's CPU smoke run)."""
    import torch._dynamo
    from torch._dynamo.testing import CompileCounterWithBackend
    from torch._dynamo.utils import counters

    from embtool.model.dropout import Dropout

    torch._dynamo.reset()
    counters.clear()
    counter = CompileCounterWithBackend("eager")
    drop = torch.compile(torch.nn.Sequential(Dropout(0.25), torch.nn.ReLU()).train(), backend=counter)
    y = drop(torch.ones(200, 100))
    assert counter.frame_count == 1 and sum(counters["graph_break"].values()) == 0
    assert (y == 0).float().mean().item() == pytest.approx(0.25, abs=0.02) and y.max() == pytest.approx(4 / 3)
