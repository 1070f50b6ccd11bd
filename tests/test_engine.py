"""The engine: rank 0 alone writes and reports, the others wait; what batches are padded to."""

from __future__ import annotations

import pytest
import torch

from embtool.training import engine as engine_module
from embtool.training.batching import PAD_MULTIPLE
from embtool.training.engine import Engine
from embtool.training.parallel import World

CPU = torch.device("cpu")


@pytest.fixture
def barriers(monkeypatch) -> list[World]:
    """Every barrier the engine reaches, recorded instead of waited at (no process group here)."""
    seen: list[World] = []
    monkeypatch.setattr(engine_module.parallel, "barrier", seen.append)
    return seen


@pytest.mark.parametrize(("rank", "ran", "result"), [(0, [1], "written"), (1, [], None)])
def test_on_main_runs_on_rank_0_and_every_rank_waits(barriers, rank, ran, result) -> None:
    world = World(size=2, rank=rank)
    engine = Engine.plain(CPU, world)
    calls: list[int] = []
    assert engine.on_main(lambda: calls.append(1) or "written") == result
    assert calls == ran and barriers == [world]
    assert engine.main == (rank == 0)


@pytest.mark.parametrize(("rank", "heard"), [(0, [("log", {"message": "hello"})]), (1, [])])
def test_progress_is_silent_off_rank_0(rank, heard) -> None:
    events: list[tuple[str, dict]] = []
    engine = Engine(
        CPU,
        Engine.plain(CPU).precision,
        World(size=2, rank=rank),
        progress=lambda e, i: events.append((e, i)),
    )
    engine.log("hello")
    assert events == heard


def test_batches_are_padded_to_multiples_compiled_or_on_cuda() -> None:
    from embtool.model.transformer import ModelConfig, build
    from embtool.training.objective import prepare

    model = build(
        ModelConfig(kind="classification", src_vocab=20, n_classes=2, d_model=16, n_heads=2, n_layers=1)
    )
    plain = Engine.plain(CPU)
    assert plain.pad_multiple == 1 and not plain.pinned
    plain.stepper = prepare(model, compile=True, backend="eager")
    assert plain.pad_multiple == PAD_MULTIPLE
    assert Engine.plain(torch.device("cuda")).pad_multiple == PAD_MULTIPLE  # no CUDA needed to say so


def test_an_evaluation_engine_has_no_training_step() -> None:
    engine = Engine.plain(CPU)
    assert engine.precision.amp == "off" and engine.precision.scaler is None
    assert engine.sum([1.5, 2]) == [1.5, 2.0] and engine.gather("x") == ["x"]  # one process
    with pytest.raises(AssertionError, match="no training step"):
        _ = engine.step
