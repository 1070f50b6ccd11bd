"""The checks every TrainConfig passes before anything is written: each names its option."""

from __future__ import annotations

import pytest

from embtool.core.errors import BadInput
from embtool.training import TrainConfig
from embtool.training.checks import check_config, option_name


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"task": "wmt"}, "valid choices: multi30k, iwslt2017"),
        ({"device": "tpu"}, "valid choices: ['auto', 'cpu', 'cuda']"),
        ({"amp": "fp8"}, "--amp"),
        ({"task": "files"}, "--src FILE and --tgt FILE"),
        ({"emb": "a", "src_emb": "b"}, "not both"),
        ({"task": "sst2", "tgt_emb": "t"}, "no target side"),
        ({"beam": 0}, "--beam"),
        ({"missing": "random"}, "valid choices: ['normal'"),
        ({"lr": float("nan")}, "--lr must be a finite number, got nan"),
        ({"clip_norm": float("inf")}, "--clip-norm must be a finite number, got inf"),
        ({"dropout": float("nan")}, "--dropout must be a finite number"),
        ({"epochs": 10**9}, "--epochs must be at most 100,000"),
        ({"batch_size": 10**12}, "--batch-size must be at most 1,048,576"),
        ({"layers": 5000}, "--layers must be at most 1,000"),
        ({"d_model": 30, "heads": 4}, "--heads 4 must divide --d-model 30"),
    ],
    ids=["task", "device", "amp", "files", "emb-twice", "sst2-tgt", "beam", "missing", "lr-nan", "clip-inf",
         "dropout-nan", "epochs-huge", "batch-huge", "layers-huge", "heads-divide"],
)  # fmt: skip
def test_config_errors(kw, message):
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        TrainConfig(**kw)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"tie_output": True, "d_model": 32, "output_dim": 64}, "--tie-output needs one width"),
        ({"tie_output": True, "out_emb": "o.safetensors"}, "--out-emb with --tie-output"),
        ({"task": "sst2", "output_dim": 64}, "classification task with no output embedding"),
        ({"max_len": 2}, "--max-len must be between 4 and 100000"),
        ({"max_tokens": 10, "max_len": 64}, "--max-tokens 10 must be at least --max-len 64"),
        ({"norm": "rms"}, "invalid --norm 'rms'"),
        ({"seed": 2**63}, "--seed must be below 2\\*\\*63"),
        ({"output_head": "mlp"}, "invalid --output-head 'mlp'; valid choices: \\['chung', 'linear'\\]"),
        ({"ffn_dropout": 1.0}, "--ffn-dropout must be in \\[0, 1\\), got 1.0"),
        ({"ffn_dropout": float("nan")}, "--ffn-dropout must be a finite number"),
    ],
    ids=["tie-widths", "tie-out-emb", "cls-output-dim", "max-len", "max-tokens", "norm", "seed", "output-head",
         "ffn-dropout", "ffn-dropout-nan"],
)  # fmt: skip
def test_combinations_are_refused_naming_the_options(kw, message) -> None:
    with pytest.raises(BadInput, match=message):
        TrainConfig(**kw)


def test_check_config_passes_the_defaults_and_names_options_by_field() -> None:
    check_config(TrainConfig())  # no exception: the defaults are a valid run
    assert option_name("batch_size") == "--batch-size" and option_name("lr") == "--lr"


def test_the_choices_checked_without_torch_are_the_models() -> None:
    """One definition: the model's layers and the config's checks name the same tuples, from a
    module that loads no torch (TrainConfig is checked by `report` and `experiment --dry-run`)."""
    import subprocess
    import sys

    from embtool.model import choices, layers, pooling
    from embtool.training import checks

    assert checks.NORMS is layers.NORMS is choices.NORMS and checks.POOLS is pooling.POOLS
    assert checks.OUTPUT_HEADS is layers.OUTPUT_HEADS and layers.NORMS == ("post", "pre", "admin")
    code = "import sys, embtool.training.checks; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )
