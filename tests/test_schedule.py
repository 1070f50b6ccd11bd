"""Learning-rate schedules and optimizers: the rates a run takes, step by step."""

from __future__ import annotations

import math

import pytest
import torch

from embtool.training.config import TrainConfig
from embtool.training.schedule import lr_factor, make_optimizer, set_lr


@pytest.mark.parametrize(
    ("step", "schedule", "warmup", "total", "want"),
    [
        (1, "constant", 0, 100, 1.0),  # the paper's: no schedule
        (5, "constant", 10, 100, 0.5),  # linear warm-up
        (10, "inverse-sqrt", 10, 100, 1.0),  # the peak at the warm-up's end
        (40, "inverse-sqrt", 10, 100, 0.5),  # √(10/40)
        (4, "inverse-sqrt", 0, 100, 0.5),  # no warm-up: 1/√step
        (10, "cosine", 10, 110, 1.0),
        (60, "cosine", 10, 110, 0.5),  # half way down
        (110, "cosine", 10, 110, 0.0),
        (500, "cosine", 10, 110, 0.0),  # past the end: stays at 0
    ],
)
def test_lr_factor(step, schedule, warmup, total, want):
    assert lr_factor(step, schedule, warmup, total) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(
    ("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("radam", torch.optim.RAdam)]
)
def test_make_optimizer(name, cls):
    cfg = TrainConfig(optimizer=name, weight_decay=1e-4, lr=7e-4)
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(3))], cfg, torch.device("cpu"))
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["weight_decay"] == 1e-4 and group["betas"] == (0.9, 0.98) and group["eps"] == 1e-9
    set_lr(opt, TrainConfig(lr=7e-4, lr_schedule="inverse-sqrt", warmup=4), 16, 100)
    assert group["lr"] == pytest.approx(7e-4 * math.sqrt(4 / 16))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"optimizer": "sgd"}, "invalid --optimizer 'sgd'"),
        ({"lr_schedule": "linear"}, "invalid --lr-schedule 'linear'"),
        ({"norm": "mid"}, "invalid --norm 'mid'"),
        ({"warmup": -1}, "--warmup must not be negative"),
        ({"label_smoothing": 1.0}, "--label-smoothing must be in"),
        ({"weight_decay": -0.1}, "--weight-decay must not be negative"),
        ({"task": "sst2", "output_dim": 8}, "--output-dim/--out-emb"),
        ({"out_emb": "t.safetensors", "tie_output": True}, "--out-emb with --tie-output"),
    ],
)
def test_bad_settings_name_the_option(kw, message):
    from embtool.core.errors import BadInput

    with pytest.raises(BadInput, match=message.replace("(", r"\(")):
        TrainConfig(**kw)


def test_a_schedule_trains_the_unfrozen_parameters_and_counts_its_steps():
    """Schedule.make takes the parameters that learn (a frozen one is left out, as the trainer's
    optimizer leaves it); next() counts the run's step and sets that step's rate (warm-up: step/10)."""
    from embtool.training.schedule import Schedule

    model = torch.nn.Linear(2, 2)
    model.bias.requires_grad_(False)
    cfg = TrainConfig(lr=1e-3, warmup=10, clip_norm=0.5)
    schedule = Schedule.make(model, cfg, torch.device("cpu"), total=100)
    assert schedule.params == [model.weight] and schedule.clip_norm == 0.5
    for step in (1, 2, 3):
        schedule.next()
        assert schedule.step == step and schedule.opt.param_groups[0]["lr"] == pytest.approx(1e-4 * step)
    schedule.step = 40  # a resumed run's clock (state.pt's "step")
    schedule.next()
    assert schedule.opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # constant after the warm-up
