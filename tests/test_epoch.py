"""Training steps: a micro-batched step has the whole batch's gradient."""

from __future__ import annotations

import random

import pytest
import torch


def _sgd_step(model):
    """The engine and schedule of a plain float32 CPU step at learning rate 0 (gradients only)."""
    from embtool.training.config import TrainConfig
    from embtool.training.engine import Engine
    from embtool.training.objective import prepare
    from embtool.training.schedule import Schedule

    engine = Engine.plain(torch.device("cpu"))
    engine.stepper = prepare(model)
    params = list(model.parameters())
    return engine, Schedule(torch.optim.SGD(params, lr=0.0), TrainConfig(task="multi30k"), params=params)


@pytest.mark.parametrize("kind", ["translation", "classification"])
def test_micro_batched_step_equals_the_whole_batch_step(kind):
    from embtool.model.transformer import ModelConfig, build
    from embtool.training.epoch import collate_parts, model_overhead, train_step
    from embtool.training.kinds import kind_of

    rng = random.Random(2)
    examples = [([rng.randint(4, 19) for _ in range(rng.randint(1, 30))],
                 [rng.randint(4, 19) for _ in range(rng.randint(1, 30))] if kind == "translation" else rng.randint(0, 1))
                for _ in range(40)]  # fmt: skip
    grads = []
    for split in (False, True):
        torch.manual_seed(0)
        model = build(ModelConfig(kind=kind, src_vocab=20, tgt_vocab=20 if kind == "translation" else 0,
                                  d_model=16, n_heads=2, n_layers=1, dropout=0.0))  # fmt: skip
        index = list(range(40))
        cpu = torch.device("cpu")
        assert model_overhead(model.cfg, cpu) > 10_000 and model_overhead(ModelConfig(), cpu) == 64  # type: ignore[arg-type, operator]
        k = kind_of(kind)
        parts = collate_parts(examples, index, k, cpu, 16) if split else [k.collate(examples, index)]
        assert (len(parts) > 1) == split
        units, _ = k.units(examples, index)
        loss = float(train_step(*_sgd_step(model), parts, units))
        grads.append((loss, units, [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (l1, u1, g1), (l2, u2, g2) = grads
    assert u1 == u2 and l1 == pytest.approx(l2, rel=1e-5)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("prefetch", [False, True])
def test_ahead_keeps_the_order(prefetch):
    from embtool.training.epoch import ahead

    assert list(ahead(lambda x: x * 2, [1, 2, 3, 4], prefetch)) == [2, 4, 6, 8]
    assert list(ahead(lambda x: x, [], prefetch)) == []


@pytest.mark.parametrize("kind", ["translation", "classification"])
def test_padding_to_multiples_of_8_changes_no_loss_and_no_gradient(kind):
    """A compiled or CUDA run pads lengths to PAD_MULTIPLE (issue 20.4): the padding is masked, so
    the step's loss and gradients are those of the batch padded to its longest."""
    from embtool.model.transformer import ModelConfig, build
    from embtool.training.batching import PAD_MULTIPLE
    from embtool.training.epoch import collate_parts, train_step
    from embtool.training.kinds import kind_of

    rng = random.Random(5)
    examples = [([rng.randint(4, 19) for _ in range(rng.randint(1, 13))],
                 [rng.randint(4, 19) for _ in range(rng.randint(1, 13))] if kind == "translation" else rng.randint(0, 1))
                for _ in range(24)]  # fmt: skip
    cpu, index = torch.device("cpu"), list(range(24))
    units, _ = kind_of(kind).units(examples, index)
    steps = []
    for multiple in (1, PAD_MULTIPLE):
        torch.manual_seed(0)
        model = build(ModelConfig(kind=kind, src_vocab=20, tgt_vocab=20 if kind == "translation" else 0,
                                  d_model=16, n_heads=2, n_layers=1, dropout=0.0))  # fmt: skip
        parts = collate_parts(examples, index, kind_of(kind), cpu, None, multiple)
        assert parts[0].src.shape[1] % multiple == 0
        loss = train_step(*_sgd_step(model), parts, units)
        steps.append((float(loss), [p.grad for p in model.parameters() if p.grad is not None]))
    (l1, g1), (l8, g8) = steps
    assert l1 == pytest.approx(l8, rel=1e-6)
    for a, b in zip(g1, g8, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
