"""The training loss as one module: what --compile captures (one graph for every batch shape) and
what DDP wraps; it gives the model's own loss."""

from __future__ import annotations

import random

import pytest
import torch

from embtool.model import ModelConfig, build
from embtool.training.epoch import collate
from embtool.training.objective import TrainLoss, inputs, prepare


def _examples(kind: str, n: int, seed: int) -> list:
    rng = random.Random(seed)
    return [([rng.randint(4, 19) for _ in range(rng.randint(2, 12))],
             [rng.randint(4, 19) for _ in range(rng.randint(2, 12))] if kind == "translation" else rng.randint(0, 1))
            for _ in range(n)]  # fmt: skip


def _model(kind: str):
    torch.manual_seed(0)
    return build(ModelConfig(kind=kind, src_vocab=20, tgt_vocab=20 if kind == "translation" else 0,
                             d_model=16, n_heads=2, n_layers=1, dropout=0.0))  # fmt: skip


@pytest.mark.parametrize("kind", ["translation", "classification"])
def test_loss_module_is_the_models_loss_without_asking_the_device(kind):
    model = _model(kind)
    batch = collate(_examples(kind, 9, 1), list(range(9)), kind)
    got = TrainLoss(model)(*inputs(batch))
    if kind == "translation":
        want, n = model.loss(batch.src, batch.tgt_in, batch.tgt_out)
        assert n == batch.n_tokens == batch.units == len(batch.rows)
    else:
        want = torch.nn.functional.cross_entropy(model(batch.src), batch.labels, reduction="sum")
    torch.testing.assert_close(got, want)
    # the always-masked path (compiled) gives the same loss
    torch.testing.assert_close(TrainLoss(model, always_mask=True)(*inputs(batch)), want)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["translation", "classification"])
def test_compile_captures_the_training_loss_once_for_ten_batch_shapes(kind):
    import torch._dynamo
    from torch._dynamo.testing import CompileCounterWithBackend
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    counter = CompileCounterWithBackend("aot_eager")
    model = _model(kind)
    step = prepare(model, compile=True, backend=counter)  # type: ignore[arg-type]
    examples = _examples(kind, 200, 2)
    rng = random.Random(3)
    shapes = set()
    for size in (3, 5, 8, 4, 11, 6, 9, 7, 13, 10):  # 10 batch sizes, each with its own lengths
        index = rng.sample(range(len(examples)), size)
        batch = collate(examples, index, kind)
        shapes.add(tuple(batch.src.shape))
        loss = step(batch)
        loss.backward()
        want = TrainLoss(model, always_mask=True)(*inputs(batch))
        torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-5)
    assert len(shapes) == 10
    # one frame (the loss: dynamo may restart its first analysis once), one graph, the whole model,
    # no graph break and no recompilation for the nine shapes after the first
    assert counters["stats"]["unique_graphs"] == 1 and 1 <= counter.frame_count <= 2
    assert counter.op_count > 20
    assert not counters["recompiles"] and sum(counters["graph_break"].values()) == 0


def test_sdpa_info_on_cpu_is_recorded():
    from embtool.training.objective import sdpa_info

    assert sdpa_info(torch.device("cpu"), 30) == {"head_dim": 30, "cpu_fused": True}
