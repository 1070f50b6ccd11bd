"""The training loss as one module: what --compile captures (one graph for every batch shape) and
what DDP wraps; it gives the model's own loss."""

from __future__ import annotations

import random
from contextlib import nullcontext

import pytest
import torch

from embtool.model.transformer import ModelConfig, build
from embtool.training.kinds import kind_of
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
    batch = kind_of(kind).collate(_examples(kind, 9, 1), list(range(9)))
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
        batch = kind_of(kind).collate(examples, index)
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


def _step(step, model, batch):
    """One training step as the trainer takes it (``epoch.train_step``: forward and backward guarded)."""
    from embtool.training.config import TrainConfig
    from embtool.training.engine import Engine
    from embtool.training.epoch import train_step
    from embtool.training.schedule import Schedule

    params = list(model.parameters())
    engine = Engine.plain(torch.device("cpu"))
    engine.stepper = step
    schedule = Schedule(torch.optim.SGD(params, lr=0.0), TrainConfig(task="multi30k"), params=params)
    return train_step(engine, schedule, [batch], batch.units)


def _batch(kind: str, shape: tuple[int, int, int]):
    """A batch of B examples, sources of length S and targets of T tokens (T + 1 with <bos>/<eos>),
    padded to PAD_MULTIPLE as a compiled run pads them."""
    from embtool.training.batching import PAD_MULTIPLE

    B, S, T = shape
    rng = random.Random(sum(shape))
    examples = [([rng.randint(4, 19) for _ in range(S)],
                 [rng.randint(4, 19) for _ in range(T)] if kind == "translation" else rng.randint(0, 1))
                for _ in range(B)]  # fmt: skip
    return kind_of(kind).collate(examples, list(range(B)), PAD_MULTIPLE)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["translation", "classification"])
def test_a_run_compiles_one_graph_for_every_shape_and_one_for_a_batch_of_one(kind):
    """Issue 20.4: a first batch whose source and target lengths are equal (duck sizing gave them one
    symbol) and batches of one (a last batch, a rank's share) each added a graph, a full compile on a
    GPU. With the dimensions marked dynamic: one graph for every batch of two or more rows, one more
    for a batch of one, and no more after that, whatever the lengths."""
    from torch._dynamo.testing import CompileCounterWithBackend

    model = _model(kind)
    counter = CompileCounterWithBackend("eager")
    step = prepare(model, compile=True, backend=counter)  # type: ignore[arg-type]
    many = [(3, 7, 6), (2, 9, 2), (5, 20, 11), (4, 8, 7), (2, 16, 16), (6, 3, 12)]  # first: S = T + 1
    for shape in many:
        batch = _batch(kind, shape)
        loss = _step(step, model, batch)
        torch.testing.assert_close(loss, TrainLoss(model, always_mask=True)(*inputs(batch)))
    assert step.record() == {"graphs": 1, "compiled": True, "fallback": None}
    for shape in [(1, 5, 4), (1, 30, 2), *many, (1, 9, 9)]:
        _step(step, model, _batch(kind, shape))
    assert step.record() == {"graphs": 2, "compiled": True, "fallback": None}


@pytest.mark.slow
def test_a_grid_of_widths_in_one_process_compiles_every_run():
    """Issue 20.3: every run of an in-process grid shares TrainLoss.forward's code object; after the
    recompile limit (8) dynamo ran the rest eagerly, unseen, and the runs still said "compiled".
    Each run starts a fresh compiler: ten widths, each compiled, each recording it."""
    from torch._dynamo.testing import CompileCounterWithBackend

    for width in (8, 16, 24, 32, 40) * 2:
        torch.manual_seed(0)
        model = build(ModelConfig(kind="translation", src_vocab=20, tgt_vocab=20, d_model=width,
                                  n_heads=2, n_layers=1, dropout=0.0))  # fmt: skip
        counter = CompileCounterWithBackend("eager")
        step = prepare(model, compile=True, backend=counter)  # type: ignore[arg-type]
        _step(step, model, _batch("translation", (3, 5, 6)))
        assert counter.frame_count == 1, f"D={width}: the compiler was not used"
        assert step.record() == {"graphs": 1, "compiled": True, "fallback": None}


def _failing_backward(gm, example_inputs):
    """A compiler whose forward graph compiles and whose backward graph fails to."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    def backward(gm, example_inputs):
        raise RuntimeError("no backward for this graph")

    return aot_autograd(fw_compiler=lambda g, _: make_boxed_func(g.forward), bw_compiler=backward)(
        gm, example_inputs
    )


def test_a_compiler_failure_at_backward_falls_back_to_eager_for_the_whole_step():
    """Issue 20.9: the backward graph compiles at the first .backward(), outside the guarded
    forward: its failure escaped the fallback. The step is redone eagerly, from zeroed gradients."""
    batch = _batch("translation", (4, 6, 5))
    grads = []
    for compile in (False, True):
        model = _model("translation")
        step = prepare(model, compile=compile, backend=_failing_backward)  # type: ignore[arg-type]
        with (
            pytest.warns(UserWarning, match="--compile: the compiler failed.*no backward")
            if compile
            else nullcontext()
        ):
            loss = _step(step, model, batch)
        grads.append((loss, [p.grad for p in model.parameters()]))
    (eager_loss, eager_grads), (loss, fallen_grads) = grads
    torch.testing.assert_close(loss, eager_loss)
    for a, b in zip(eager_grads, fallen_grads, strict=True):
        torch.testing.assert_close(a, b)  # the compiled attempt's gradients were not added
    record = step.record()
    assert record["compiled"] is False and "no backward for this graph" in record["fallback"]


def test_an_error_of_the_model_is_raised_as_eager_raises_it_and_keeps_the_compiler(recwarn):
    """Issue 20.9: the compiler wraps a model's own error (here a shape error: targets for fewer
    sentences than sources) as a TorchRuntimeError, which was taken for a compiler failure. An error
    the eager step raises too is the caller's: raised, no compile warning, still compiled."""
    model = _model("translation")
    step = prepare(model, compile=True, backend="eager")
    _step(step, model, _batch("translation", (4, 6, 5)))  # compiled
    bad = _batch("translation", (4, 6, 5))
    bad.tgt_in, bad.tgt_out = bad.tgt_in[:3], bad.tgt_out[:3]  # (3, T): the source has 4 rows
    with pytest.raises(RuntimeError) as raised:
        _step(step, model, bad)
    assert "dynamo" not in type(raised.value).__module__  # eager's own error, not the compiler's wrapper
    assert not [w for w in recwarn if "--compile" in str(w.message)]
    assert step.compiled is not None and step.record()["fallback"] is None
