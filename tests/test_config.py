"""TrainConfig: checks with valid choices, and the one place train/experiment options come from."""

from __future__ import annotations

import json

import pytest

from embtool.core.errors import BadInput
from embtool.training import TrainConfig

# ----------------------------------------------------------------------------- one place for options


def _click_options(command: str) -> dict[str, tuple[list[str], list[str]]]:
    """The options `embtool COMMAND --help` lists: parameter name → (its --names, its --no- names)."""
    import typer

    from embtool.cli import app

    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {
        p.name: (list(p.opts), list(p.secondary_opts)) for p in cmd.params if p.param_type_name == "option"
    }


# options of `train` that only say how the command prints or starts, or that it trains nothing (no
# setting of the run; config.json records the processes --nproc started as "world_size"), and the
# file the settings came from (--config: its settings are these keys)
PRINT_ONLY = {"--json", "--help", "--nproc", "--dry-run", "--config"}


def test_every_train_option_is_a_config_json_key(reverse_run) -> None:
    """For every --option of `embtool train --help`, config.json's "train" has the key of the same
    name (dashes → underscores; a --no-x flag is the boolean x), and nothing else is there."""
    train_keys = set(json.loads((reverse_run / "config.json").read_text())["train"])
    seen = set()
    for opts, secondary in _click_options("train").values():
        long = [o for o in opts if o.startswith("--")]
        if set(long) & PRINT_ONLY:
            continue
        (name,) = long
        key = name[2:].replace("-", "_")
        assert key in train_keys, f"{name} has no key {key!r} in config.json"
        for no in secondary:
            assert no == f"--no-{name[2:]}"
        seen.add(key)
    assert train_keys - seen == {"task"}  # the TASK argument


def test_experiment_lists_every_train_option() -> None:
    train = {o for opts, _ in _click_options("train").values() for o in opts if o.startswith("--")}
    experiment = {o for opts, _ in _click_options("experiment").values() for o in opts if o.startswith("--")}
    # the grid sets these itself: one seed per run from --seeds, and it resumes its runs; it spreads
    # runs over processes with --jobs/--launcher rather than one run over --nproc
    assert train - experiment == {"--seed", "--resume", "--json", "--nproc"}


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--layers", "2", "--heads", "5", "--ff", "64"], {"layers": 2, "heads": 5, "ff": 64}),
        (
            ["--no-posenc", "--freeze-emb", "--tie-output"],
            {"posenc": False, "freeze_emb": True, "tie_output": True},
        ),
        (
            ["--adam-beta2", "0.99", "--adam-eps", "1e-6", "--lr", "0.001"],
            {"adam_beta2": 0.99, "adam_eps": 1e-6, "lr": 1e-3},
        ),
        (["--src-lang", "fr", "--max-len", "64", "-o", "r"], {"src_lang": "fr", "max_len": 64, "out": "r"}),
    ],
)
def test_train_options_fill_the_fields_of_the_same_name(monkeypatch, cli, tmp_path, args, expect) -> None:
    import embtool.training.loop as loop
    from embtool.training.runfolder import RunResult

    seen = {}

    def fake_train(cfg, progress=None):
        seen["cfg"] = cfg
        return RunResult(tmp_path, {"bleu": 1.0, "best_epoch": 1, "split": "val"})

    monkeypatch.setattr(loop, "train", fake_train)
    r = cli("train", "files", "--src", "a", "--tgt", "b", *args)
    assert r.code == 0, r.stderr
    got = seen["cfg"]
    assert {k: getattr(got, k) for k in expect} == expect
    assert got.task == "files" and got.src == "a"


def test_experiment_settings_are_only_what_was_given(monkeypatch, cli, tmp_path, make_table) -> None:
    import numpy as np

    from embtool.experiment import runner as lib
    from embtool.tables.table import save

    save(
        make_table(np.ones((3, 4), dtype=np.float32) * np.arange(4, dtype=np.float32), ["a", "b", "c"]),
        tmp_path / "t.safetensors",
    )
    seen = {}

    def fake_plan(task, inputs, out, variants, seeds, settings, axes):
        seen.update(settings=settings, axes=axes)
        raise BadInput("planned")

    monkeypatch.setattr(lib, "plan", fake_plan)
    r = cli(
        "experiment",
        "multi30k",
        "--emb",
        str(tmp_path / "t.safetensors"),
        "--layers",
        "1",
        "--no-posenc",
        "--grid",
        "lr=1e-4,2e-4",
        "--grid",
        "tie-output=true,false",
    )
    assert "planned" in r.stderr
    assert seen["settings"] == {"layers": 1, "posenc": False}
    assert seen["axes"] == {"lr": [1e-4, 2e-4], "tie_output": [True, False]}


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("layers", "6", 6),
        ("lr", "2e-4", 2e-4),
        ("posenc", "false", False),
        ("posenc", "Yes", True),
        ("tokenizer", "whitespace", "whitespace"),
    ],
)
def test_parse_value_takes_the_fields_type(name, text, value) -> None:
    from embtool.training.config import parse_value

    assert parse_value(name, text, "--grid") == value


@pytest.mark.parametrize(
    ("name", "text", "message"), [("layers", "six", "not an integer"), ("posenc", "maybe", "boolean")]
)
def test_parse_value_errors_name_where(name, text, message) -> None:
    from embtool.training.config import parse_value

    with pytest.raises(BadInput, match=f"--grid {name}: .*{message}"):
        parse_value(name, text, f"--grid {name}")


def test_resolved_fills_the_tasks_defaults_from_the_registry() -> None:
    from embtool.tasks.registry import TASKS

    cfg = TrainConfig(task="iwslt2017").resolved()
    t = TASKS["iwslt2017"]
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.min_freq) == (t.epochs, t.batch_size, t.lr, 5)
    assert TrainConfig(task="sst2", epochs=2).resolved().epochs == 2


def test_from_dict_refuses_unknown_settings() -> None:
    with pytest.raises(BadInput, match="unknown training setting.*n_layers"):
        TrainConfig.from_dict({"n_layers": 2}, origin="x")
