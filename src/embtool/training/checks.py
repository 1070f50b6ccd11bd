"""The checks a TrainConfig passes before anything is written: choices, signs, bounds, combinations.

Each failure is one BadInput naming the command-line option. The choices live here (the model's
named ones in ``embtool.model.choices``, without torch), not in ``config``, so that config imports
this module and not the other way round. The widths and head count are ``widths.check_widths``'s.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import TYPE_CHECKING

from embtool.core.errors import BadInput
from embtool.model.choices import NORMS, OUTPUT_HEADS, POOLS
from embtool.tasks.registry import CLASSIFICATION, FAMILIES, TRANSLATION, get_task

if TYPE_CHECKING:
    from embtool.training.config import TrainConfig

DEVICES = ("auto", "cpu", "cuda")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
MISSING_FILLS = ("normal", "xavier", "zero", "mean")
# Upper bounds: far above any real run, low enough that a typo fails here, not in the allocator.
LIMITS = {
    "epochs": 100_000, "batch_size": 1 << 20, "max_tokens": 1 << 24, "max_train_examples": 1 << 40,
    "max_eval_examples": 1 << 40, "min_freq": 1 << 40, "d_model": 1 << 16, "heads": 1 << 10,
    "layers": 1_000, "ff": 1 << 20, "beam": 1_000, "threads": 4_096, "clip_norm": 1e9,
}  # fmt: skip
PRESETS = ("paper", "fast", "clinic")  # embtool.training.paper: what each fills in
OPTIMIZERS = ("adam", "adamw", "radam")
SCHEDULES = ("constant", "inverse-sqrt", "cosine")


def option_name(name: str) -> str:
    """The command-line option of a TrainConfig field: ``batch_size`` → ``--batch-size``."""
    return "--" + name.replace("_", "-")


CHOICES = {
    "device": DEVICES, "amp": AMP_CHOICES, "missing": MISSING_FILLS, "preset": PRESETS,
    "family": (None, *FAMILIES), "norm": NORMS, "output_head": OUTPUT_HEADS, "pool": POOLS,
    "optimizer": OPTIMIZERS, "lr_schedule": SCHEDULES,
}  # fmt: skip
NOT_NEGATIVE = (
    "epochs", "batch_size", "max_tokens", "min_freq", "max_train_examples", "max_eval_examples",
    "d_model", "heads", "ff", "threads", "seed", "enc_layers", "dec_layers", "input_dim",
    "output_dim", "warmup",
)  # fmt: skip
RATES = ("dropout", "attn_dropout", "ffn_dropout", "label_smoothing")  # in [0, 1)


def check_config(cfg: TrainConfig) -> None:
    """BadInput naming the option for a setting no run can have (before anything is written);
    the widths are ``widths.check_widths``'s."""
    get_task(cfg.task)  # BadInput listing the valid tasks
    _check_numbers(cfg)
    for name, choices in CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise BadInput(
                f"invalid {option_name(name)} {getattr(cfg, name)!r}; valid choices: {list(choices)}"
            )
    _check_inputs(cfg)
    _check_ranges(cfg)
    _check_task_fit(cfg)
    if cfg.out_emb and cfg.tie_output:
        raise BadInput("--out-emb with --tie-output: the output layer is the input embedding; give one")
    _check_rates(cfg)


def _check_inputs(cfg: TrainConfig) -> None:
    """The tables and files a run reads: one way to give the tables, the files task's pairs."""
    if cfg.emb and (cfg.src_emb or cfg.tgt_emb):
        raise BadInput("give --emb (both sides) or --src-emb/--tgt-emb, not both")
    if cfg.kind == CLASSIFICATION and cfg.tgt_emb:
        raise BadInput(f"--tgt-emb: {cfg.task} is a classification task and has no target side")
    if cfg.task == "files" and not (cfg.src and cfg.tgt):
        raise BadInput("task files needs --src FILE and --tgt FILE (parallel sentences)")


def _check_ranges(cfg: TrainConfig) -> None:
    """Counts not negative, and the few with a floor or ceiling of their own."""
    for name in NOT_NEGATIVE:
        if getattr(cfg, name) < 0:
            raise BadInput(f"{option_name(name)} must not be negative, got {getattr(cfg, name)}")
    if cfg.seed >= 2**63:
        raise BadInput(f"--seed must be below 2**63, got {cfg.seed}")
    if cfg.layers < 1:
        raise BadInput(f"--layers must be at least 1, got {cfg.layers}")
    if cfg.beam < 1:
        raise BadInput(f"--beam must be at least 1, got {cfg.beam}")
    if cfg.lr < 0 or cfg.clip_norm < 0:
        raise BadInput("--lr and --clip-norm must not be negative")
    if cfg.weight_decay < 0:
        raise BadInput(f"--weight-decay must not be negative, got {cfg.weight_decay}")


def _check_task_fit(cfg: TrainConfig) -> None:
    """Options that one kind of task has and the other lacks."""
    if cfg.kind == TRANSLATION and (cfg.pool != "mean" or cfg.segments):
        raise BadInput(f"--pool/--segments set the classifier (sst2, mnli); {cfg.task} is a translation task")
    if cfg.segments and len(cfg.task_info.fields) < 2:
        raise BadInput(f"--segments: {cfg.task} has one sentence an example; segments are for pairs (mnli)")
    if cfg.kind == CLASSIFICATION and (cfg.output_dim or cfg.out_emb):
        raise BadInput(
            f"--output-dim/--out-emb: {cfg.task} is a classification task with no output embedding"
        )


def _check_rates(cfg: TrainConfig) -> None:
    """Dropout and smoothing rates in [0, 1), Adam's βs and ε, and the lengths."""
    for name in RATES:
        if getattr(cfg, name) is not None and not 0.0 <= getattr(cfg, name) < 1.0:
            raise BadInput(f"{option_name(name)} must be in [0, 1), got {getattr(cfg, name)}")
    if not (0.0 <= cfg.adam_beta1 < 1.0 and 0.0 <= cfg.adam_beta2 < 1.0) or cfg.adam_eps <= 0:
        raise BadInput("--adam-beta1/--adam-beta2 must be in [0, 1) and --adam-eps positive")
    if not 4 <= cfg.max_len <= 100_000:
        raise BadInput(f"--max-len must be between 4 and 100000, got {cfg.max_len}")
    if cfg.max_tokens and cfg.max_tokens < cfg.max_len:
        raise BadInput(f"--max-tokens {cfg.max_tokens} must be at least --max-len {cfg.max_len}")


def _check_numbers(cfg: TrainConfig) -> None:
    """Every number finite and within LIMITS (float() takes "nan" and "inf"; torch would too)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise BadInput(f"{option_name(f.name)} must be a finite number, got {value}")
        if isinstance(value, (int, float)) and f.name in LIMITS and value > LIMITS[f.name]:
            raise BadInput(f"{option_name(f.name)} must be at most {LIMITS[f.name]:,}, got {value:,}")
