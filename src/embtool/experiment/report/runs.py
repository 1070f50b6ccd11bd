"""Run folders as the report reads them: ``Run`` (settings, metrics, result) and finding them.

A run folder (DESIGN §4, ``embtool.training.runfolder``) is complete when it holds ``test.json``
and at least one epoch in ``metrics.jsonl``; a folder with ``config.json`` and no ``test.json`` (or
no epoch) is incomplete (still running, interrupted or crashed) and is listed, never averaged. A
complete run may have stalled (test.json's ``"status": "stalled"``): averaged, and marked.
``embtool.experiment.report.cells`` groups runs into Table 1's cells.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embtool.core.atomic import note_input
from embtool.core.errors import BadInput
from embtool.tables.naming import run_name
from embtool.training.runfolder import CONFIG, METRICS, TEST, RunFolder, migrate, read_json_object

# what a run's result is (``report --metric``); "auto": translation both BLEUs side by side (bleu,
# then bleu-tok as the second figure), classification acc (MNLI: matched, then mismatched)
RESULT_METRICS = ("auto", "bleu", "bleu-tok", "acc", "acc-at-loss")
METRIC_HELP = {
    "bleu": "test BLEU, sacreBLEU on the detokenized hypotheses against the references as written "
    "(tok:13a; case:lc where the target side is lower-cased, as Multi30k's by default, else case:mixed; "
    "the signature in test.json): the figure comparable across papers",
    "bleu-tok": "test BLEU on the model's own target tokens against the references split by the same "
    "tokenizer, lower-cased (sacreBLEU tok:none, case:lc): closest to the paper's pipeline (its Xavier "
    "runs score 37.3, 39.9 and 44.0 on Multi30k's one test set with GloVe's, mBERT's and mT5's tokens: "
    "BLEU on each model's tokens), comparable only between runs of one tokenizer",
    "acc": "the highest validation accuracy and its epoch (§5)",
    "acc-at-loss": "the validation accuracy at the lowest-validation-loss epoch",
}


def per_run_settings() -> frozenset[str]:
    """Train settings that may differ between the runs of one cell: the seed, where and how a run
    executes, and the input files (the tables are the cell's name already)."""
    from embtool.training.config import fields_with_role

    return fields_with_role("env") | fields_with_role("input") | {"seed"}


@dataclass
class Run:
    """One run folder as the report sees it."""

    path: Path
    # "complete"; "diverged" (a result: Liu et al.'s tables' "diverged"); "stalled" (complete, but it
    # learned nothing: runfolder.STALL_RULE); or "incomplete: …" / "failed: …"
    status: str
    task: str = "?"
    kind: str = "?"  # translation | classification
    seed: int | None = None
    name: str = "?"  # initialisation name, e.g. GloVe_Xavier [frozen]
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] = field(default_factory=dict)
    value: float | None = None  # test BLEU, or best validation accuracy in %
    value2: float | None = None  # the second figure: MNLI mismatched accuracy in %, or BLEU-tok (auto)
    epoch: float | None = None  # best epoch
    epoch2: float | None = None
    val_loss: float | None = None  # the lowest validation loss (Table 3) …
    val_loss_epoch: float | None = None  # … and its epoch
    signature: tuple[Any, ...] = ()  # model shape: runs of one cell share it

    @property
    def complete(self) -> bool:
        """Finished: with a result (stalled or not), or diverged (counted in its cell, not averaged)."""
        return self.status in ("complete", "diverged", "stalled")

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    @property
    def stalled(self) -> bool:
        return self.status == "stalled"


# ----------------------------------------------------------------------------- reading runs


def find_run_dirs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Run folders (holding config.json) among ``paths`` and below them, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise BadInput(f"{p}: no such run folder")
        if p.is_file():
            if p.name != CONFIG:
                raise BadInput(f"{p}: not a run folder; give a folder holding {CONFIG}, or a folder of runs")
            p = p.parent
        if (p / CONFIG).is_file():
            found.append(p)
            continue
        below = sorted(c.parent for c in p.rglob(CONFIG) if _looks_like_run(c.parent))
        if not below:
            raise BadInput(f"{p}: no run folders ({CONFIG}) in it; give `embtool train` output folders")
        found.extend(below)
    unique: dict[Path, Path] = {}
    for p in found:  # a folder given twice, or given with a folder of it, is read once
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def _looks_like_run(folder: Path) -> bool:
    """A folder found by searching is a run when its config.json is train's (not, say, a checkpoint's)."""
    if (folder / METRICS).is_file() or (folder / TEST).is_file():
        return True
    try:
        config = read_json_object(folder / CONFIG)
    except (OSError, ValueError):
        return False
    return "task" in config and "train" in config


def read_run(path: Path, metric: str = "auto") -> Run:
    """Read one run folder; problems become the run's status, never an exception.

    ``metric`` (``RESULT_METRICS``) says which figure is the run's result."""
    run = Run(path=path, status="complete")
    folder = RunFolder(path)
    for name in (CONFIG, METRICS, TEST):  # what a report reads: no output of it may replace them
        note_input(folder.file(name))
    try:
        config = folder.read_config()
    except (OSError, ValueError) as e:
        run.status = f"failed: {CONFIG} is not readable JSON ({e})"
        return run
    try:
        config = migrate(config)  # an old folder reads as the current version, as its resume does
    except ValueError as e:
        run.status = f"failed: {CONFIG}: {e}"
        return run
    run.config = config
    run.task = str(config.get("task", "?"))
    seed = config.get("seed", (config.get("train") or {}).get("seed"))
    run.seed = int(seed) if isinstance(seed, (int, float)) else None
    train = config.get("train") or {}
    if isinstance(train, dict) and train.get("output_dim"):  # before issue 25: the linear head
        train.setdefault("output_head", "linear")
    run.kind = str(config.get("kind") or "?")
    tables = config.get("tables") or {}
    if run.kind == "classification":  # one side only: its "tgt" is no Xavier decoder
        tables = {"src": tables.get("src")}
    run.name = run_name(tables)
    flags = _flags(train)
    if flags:
        run.name += f" [{', '.join(flags)}]"
    run.signature = _signature(config)
    try:
        run.metrics = folder.read_metrics()
    except ValueError as e:
        run.status = f"failed: {e}"
        return run
    test_path = path / TEST
    if not test_path.is_file():
        run.status = f"incomplete: {len(run.metrics)} epoch(s) in {METRICS}, no {TEST}"
        return run
    if not run.metrics:  # a result with no epoch behind it: a run that never trained one
        run.status = f"incomplete: no epoch in {METRICS} (empty or missing), though {TEST} exists"
        return run
    try:
        test = folder.read_test()
    except (OSError, ValueError) as e:
        run.status = f"failed: {TEST} is not readable JSON ({e})"
        return run
    run.test = test
    if run.kind == "?":
        run.kind = "translation" if "bleu" in test else "classification"
    losses = [m for m in run.metrics if is_number(m.get("val_loss"))]
    if losses:
        low = min(losses, key=lambda m: float(m["val_loss"]))
        run.val_loss, run.val_loss_epoch = float(low["val_loss"]), float(low["epoch"])
    _fill_result(run, metric)
    if run.status == "complete" and test.get("status") == "stalled":
        run.status = "stalled"
    return run


def _flags(train: dict[str, Any]) -> list[str]:
    """Settings that change what a cell means, shown in its label (the paper's Table 3)."""
    flags = []
    if train.get("freeze_emb"):
        flags.append("frozen")
    if train.get("posenc") is False:
        flags.append("no posenc")
    if train.get("tie_output"):
        flags.append("tied output")
    if train.get("input_dim"):  # decoupled embeddings: another model shape
        flags.append(f"input-dim {train['input_dim']}")
    if train.get("output_dim"):  # Chung et al.'s head, or the one that says it is linear
        linear = train.get("output_head") == "linear"
        flags.append(f"output-dim {train['output_dim']}" + (" linear" if linear else ""))
    return flags


def _fill_result(run: Run, metric: str = "auto") -> None:
    test = run.test
    if test.get("status") == "diverged":
        run.status = "diverged"
        return
    if run.kind == "translation":
        key = "bleu_tok" if metric == "bleu-tok" else "bleu"
        if metric in ("acc", "acc-at-loss"):
            run.status = f"failed: --metric {metric} is for classification runs"
            return
        if not is_number(test.get(key)):
            run.status = f"failed: {TEST} has no number {key!r}" + (
                " (a run from before tokenized BLEU; use --metric bleu)" if key == "bleu_tok" else ""
            )
            return
        run.value = float(test[key])
        if metric == "auto" and is_number(test.get("bleu_tok")):  # both BLEUs, side by side
            run.value2 = float(test["bleu_tok"])
        run.epoch = _epoch(test.get("best_epoch"), run.metrics, "val_loss", lowest=True)
        return
    if metric in ("bleu", "bleu-tok"):
        run.status = f"failed: --metric {metric} is for translation runs"
        return
    if not is_number(test.get("best_val_acc")):
        run.status = f"failed: {TEST} has no number 'best_val_acc'"
        return
    at_loss = test.get("at_lowest_val_loss")
    if metric == "acc-at-loss" or "selection" not in test:
        # a run from before §5's selection recorded the accuracy at the lowest loss as best_val_acc
        if isinstance(at_loss, dict) and is_number(at_loss.get("val_acc")):
            test = {"best_val_acc": at_loss["val_acc"], "best_epoch": at_loss.get("epoch"),
                    "best_val_acc_mismatched": at_loss.get("val_acc_mismatched")}  # fmt: skip
        if metric != "acc-at-loss":  # the paper's: the highest accuracy in metrics.jsonl
            test = _highest(run.metrics) or test
    run.value = float(test["best_val_acc"])  # train writes accuracy in %
    run.epoch = _epoch(test.get("best_epoch"), run.metrics, "val_loss", lowest=True)
    if is_number(test.get("best_val_acc_mismatched")):
        run.value2 = float(test["best_val_acc_mismatched"])
        given = test.get("best_epoch_mismatched", test.get("best_epoch"))
        run.epoch2 = _epoch(given, run.metrics, "val_loss", lowest=True)


def _highest(metrics: list[dict[str, Any]]) -> dict[str, Any] | None:
    """§5's figures recomputed from metrics.jsonl: the highest accuracies and their epochs."""
    out: dict[str, Any] = {}
    for key, name, epoch in (
        ("val_acc", "best_val_acc", "best_epoch"),
        ("val_acc_mismatched", "best_val_acc_mismatched", "best_epoch_mismatched"),
    ):
        rows = [m for m in metrics if is_number(m.get(key))]
        if rows:
            top = max(rows, key=lambda m: (float(m[key]), -float(m["epoch"])))
            out.update({name: float(top[key]), epoch: top["epoch"]})
    return out if "best_val_acc" in out else None


def _epoch(given: Any, metrics: list[dict[str, Any]], key: str, lowest: bool = False) -> float | None:
    if is_number(given):
        return float(given)
    rows = [m for m in metrics if is_number(m.get(key))]
    if not rows:
        return None
    pick = min if lowest else max
    return float(pick(rows, key=lambda m: float(m[key]))["epoch"])


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _signature(config: dict[str, Any]) -> tuple[Any, ...]:
    model = config.get("model") or {}
    vocab = config.get("vocab") or {}
    return (model.get("d_model"), vocab.get("src_size"), vocab.get("tgt_size"))
