"""Runs → the figures of the paper's Table 1 (mean (σ) over seeds) and Figure 1 (validation curves),
and Table 2 (the tables' range, mean (σ)): the report's data model. ``embtool.experiment.report.render`` writes
them as Markdown, CSV and JSON, ``embtool.experiment.report.plot`` draws Figure 1 as a PNG.

Runs are grouped by task and initialisation name (``embtool.tables.naming``); within a task, groups
whose models differ (embedding size or vocabulary sizes, e.g. Xavier of a GloVe experiment and
Xavier of a T5 one) stay apart, as the paper's experiment boxes do, and so do runs whose training
settings differ (an `experiment --grid`): their cells are labelled with the settings that differ.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embtool.core.atomic import sha256_file
from embtool.core.errors import BadInput
from embtool.experiment.report.runs import (
    RESULT_METRICS,
    Run,
    find_run_dirs,
    is_number,
    per_run_settings,
    read_run,
)
from embtool.tables.naming import XAVIER, sort_key
from embtool.training.runfolder import CONFIG


@dataclass
class Cell:
    """One (task, initialisation) group: the figures of one cell of Table 1."""

    task: str
    kind: str
    name: str
    runs: list[Run]
    mean: float | None = None
    std: float | None = None  # sample σ (ddof=1); None with one seed
    epoch: float | None = None
    mean2: float | None = None  # the second figure: MNLI mismatched, or translation's BLEU-tok
    std2: float | None = None
    epoch2: float | None = None  # MNLI's own best epoch (BLEU-tok is of the same model: None)
    best: bool = False
    best2: bool = False
    box: str | None = None  # the pretrained table of the cell's experiment (see build_report)
    notes: list[str] = field(default_factory=list)
    table: dict[str, Any] | None = None  # Table 2 figures of the encoder table
    val_loss: float | None = None  # Table 3: mean lowest validation loss …
    val_loss_epoch: float | None = None  # … and mean epoch of it
    diverged: int = 0  # runs whose training diverged: counted in n, left out of the mean
    stalled: int = 0  # runs that finished but learned nothing (runfolder.STALL_RULE): in the mean, marked

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]


@dataclass
class Report:
    cells: list[Cell]
    runs: list[Run]  # every run found, complete or not
    metric: str = "auto"  # what a run's result is (report.runs.METRICS)

    @property
    def left_out(self) -> list[Run]:
        return [r for r in self.runs if not r.complete]

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(c.task for c in self.cells))


# ----------------------------------------------------------------------------- aggregation


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample σ (ddof=1, as the paper's 'σ over seeds'); σ is None for one value."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    m = sum(values) / n
    if n == 1:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def curve(runs: list[Run], key: str) -> tuple[list[float], list[float], list[float]]:
    """Epochs, mean and σ over runs of ``key`` per epoch (σ 0 where one run has the epoch)."""
    per_epoch: dict[float, list[float]] = {}
    for r in runs:
        for row in r.metrics:
            v, epoch = row.get(key), row.get("epoch")
            if isinstance(v, (int, float)) and is_number(v) and isinstance(epoch, (int, float)):
                per_epoch.setdefault(float(epoch), []).append(float(v))
    epochs = sorted(per_epoch)
    means: list[float] = []
    stds: list[float] = []
    for e in epochs:
        m, s = mean_std(per_epoch[e])
        means.append(m)
        stds.append(s or 0.0)
    return epochs, means, stds


def build_report(
    paths: Sequence[str | os.PathLike[str]], table_stats: bool = True, metric: str = "auto"
) -> Report:
    """Read every run under ``paths`` and compute Table 1's cells (and Table 2's with ``table_stats``);
    ``metric`` (``report.runs.RESULT_METRICS``) chooses each run's result."""
    if metric not in RESULT_METRICS:
        raise BadInput(f"invalid --metric {metric!r}; valid choices: {list(RESULT_METRICS)}")
    runs = [read_run(p, metric) for p in find_run_dirs(paths)]
    if not any(r.complete for r in runs):
        raise BadInput(_nothing_to_report(runs))
    _label_settings([r for r in runs if r.complete])
    groups: dict[tuple[str, str, tuple[Any, ...]], list[Run]] = {}
    for r in runs:
        if r.complete:
            groups.setdefault((r.task, r.name, r.signature), []).append(r)
    # The paper's experiment boxes: the runs of one task with one model shape (D, vocabularies),
    # named after the pretrained table they compare against Xavier (GloVe, BERT, T5, …).
    bases: dict[tuple[str, tuple[Any, ...]], set[str]] = {}
    for task, name, sig in groups:
        if _base(name) != XAVIER:
            bases.setdefault((task, sig), set()).add(_base(name))
    shapes: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for task, name, sig in groups:
        shapes.setdefault((task, name), []).append(sig)
    cells: list[Cell] = []
    for (task, name, sig), members in groups.items():
        found = bases.get((task, sig), set())
        box = next(iter(found)) if len(found) == 1 else None
        label = name
        if len(shapes[(task, name)]) > 1:  # the same name in two boxes (e.g. Xavier): say which
            other_boxes = [bases.get((task, s), set()) for s in shapes[(task, name)]]
            unique = box is not None and sum(b == {box} for b in other_boxes) == 1
            label = f"{name} ({box} box)" if unique else f"{name} ({_describe(sig)})"
        cell = _cell(task, label, members)
        cell.box = box
        cells.append(cell)
    cells.sort(key=lambda c: (c.task, row_key(c)))
    _mark_best(cells)
    if table_stats:
        for c in cells:
            c.table = encoder_table_stats(c.runs)
    return Report(cells=cells, runs=runs, metric=metric)


def _nothing_to_report(runs: list[Run]) -> str:
    """Why no run is complete, naming the first broken one (else the first incomplete one)."""
    first = next((r for r in runs if r.status.startswith("failed")), runs[0])
    why = first.status.removeprefix("failed: ")
    return (
        f"no complete runs to report: {len(runs)} run(s) skipped, the first {first.path}: {why}; "
        "fix or remove the broken files, or give runs that have finished"
    )


def _settings(run: Run) -> dict[str, str]:
    """The run's training settings that change what it learns, as JSON text by field name."""
    skip = per_run_settings()
    train = {**_defaults("train"), **(run.config.get("train") or {})}
    return {k: json.dumps(v, sort_keys=True) for k, v in train.items() if k not in skip}


def _defaults(section: str) -> dict[str, Any]:
    """A config section's defaults: a run written before a setting existed had its default."""
    from dataclasses import MISSING, fields

    from embtool.training.config import TrainConfig

    if section != "train":
        return {}
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def _label_settings(runs: list[Run]) -> None:
    """Runs of one name whose settings differ (an `experiment --grid`) get the differing settings in
    their name, so that each setting point is a cell of its own: ``GloVe_Xavier [layers=6]``."""
    by_name: dict[tuple[str, str, tuple[Any, ...]], list[Run]] = {}
    for r in runs:
        by_name.setdefault((r.task, r.name, r.signature), []).append(r)
    for members in by_name.values():
        settings = [_settings(r) for r in members]
        keys = sorted({k for s in settings for k in s if len({s2.get(k) for s2 in settings}) > 1})
        if not keys:
            continue
        for r, s in zip(members, settings, strict=True):
            label = ", ".join(f"{k}={json.loads(s[k]) if k in s else '?'}" for k in keys)
            r.name = f"{r.name} [{label}]"


def _base(name: str) -> str:
    """The pretrained table an initialisation name is about: GloVe_Xavier → GloVe, Xavier_T5 → T5."""
    parts = name.split(" [")[0].split(" (")[0].split("_")
    return parts[1] if parts[0] == XAVIER and len(parts) > 1 else parts[0]


def row_key(cell: Cell) -> tuple[Any, ...]:
    """Rows box by box, each in the paper's order (Xavier, X, X_Xavier, X_Shuffled, Xavier_X)."""
    return ((cell.box or "").lower(), sort_key(cell.name.split(" (")[0]), cell.name)


def _describe(sig: tuple[Any, ...]) -> str:
    d, src, tgt = sig
    vocab = f"{src}/{tgt}" if tgt is not None and tgt != src else f"{src}"
    return f"D={d}, V={vocab}"


def _cell(task: str, name: str, runs: list[Run]) -> Cell:
    runs = sorted(runs, key=lambda r: (r.seed is None, r.seed or 0, str(r.path)))
    cell = Cell(task=task, kind=runs[0].kind, name=name, runs=runs)
    cell.diverged = sum(r.diverged for r in runs)
    cell.stalled = sum(r.stalled for r in runs)
    finished = [r.value for r in runs if r.value is not None]
    if finished:
        cell.mean, cell.std = mean_std(finished)
    epochs = [r.epoch for r in runs if r.epoch is not None]
    cell.epoch = sum(epochs) / len(epochs) if epochs else None
    losses = [(r.val_loss, r.val_loss_epoch) for r in runs if r.val_loss is not None and r.val_loss_epoch]
    if losses:
        cell.val_loss = sum(v for v, _ in losses) / len(losses)
        cell.val_loss_epoch = sum(e or 0.0 for _, e in losses) / len(losses)
    second = [r.value2 for r in runs if r.value2 is not None]
    if second:
        cell.mean2, cell.std2 = mean_std(second)
        if len(second) != len(runs):
            what = "BLEU-tok" if cell.kind == "translation" else "mismatched accuracy"
            cell.notes.append(f"{what} from {len(second)} of {len(runs)} runs")
        epochs2 = [r.epoch2 for r in runs if r.epoch2 is not None]
        cell.epoch2 = sum(epochs2) / len(epochs2) if epochs2 else None
    seeds = [r.seed for r in runs]
    if len(set(seeds)) != len(seeds):
        cell.notes.append(f"repeated seed(s) {sorted({s for s in seeds if seeds.count(s) > 1}, key=str)}")
    differ = _differing_settings(runs)
    if differ:
        cell.notes.append(f"runs differ in {', '.join(differ)}")
    return cell


def _differing_settings(runs: list[Run]) -> list[str]:
    keys: set[str] = set()
    skip = per_run_settings()
    for section in ("train", "model"):
        values = [{**_defaults(section), **(r.config.get(section) or {})} for r in runs]
        for key in sorted(set().union(*values)):
            if key in skip:
                continue
            seen = {json.dumps(v.get(key), sort_keys=True) for v in values}
            if len(seen) > 1:
                keys.add(key)
    return sorted(keys)


def _mark_best(cells: list[Cell]) -> None:
    # the paper bolds the best result of each experiment; here: of each task
    for task in dict.fromkeys(c.task for c in cells):
        mine = [c for c in cells if c.task == task]
        top = max((c.mean for c in mine if c.mean is not None), default=None)
        top2 = max((c.mean2 for c in mine if c.mean2 is not None), default=None)
        for c in mine:
            c.best = top is not None and c.mean is not None and math.isclose(c.mean, top, abs_tol=1e-12)
            c.best2 = top2 is not None and c.mean2 is not None and math.isclose(c.mean2, top2, abs_tol=1e-12)


def encoder_table_stats(runs: list[Run]) -> dict[str, Any] | None:
    """Table 2's figures (range, mean, σ) of the encoder embedding the runs started from.

    From the table file the config names (checked against its sha256); for a run with no table,
    Xavier's figures for its N × D: ±√(6/(N+D)), mean 0, σ √(2/(N+D)).
    """
    from embtool.tables.stats import xavier_bound, xavier_std

    figures: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: set[str] = set()
    for r in runs:
        info = _encoder_table(r.config)
        if info is None:
            n = (r.config.get("vocab") or {}).get("src_size")
            d = (r.config.get("model") or {}).get("d_model")
            if not isinstance(n, int) or not isinstance(d, int):
                problems.append(f"{r.path}: no vocab.src_size/model.d_model for Xavier's figures")
                continue
            a, s = xavier_bound(n, d), xavier_std(n, d)
            key = f"xavier:{n}x{d}"
            if key not in seen:
                seen.add(key)
                figures.append(
                    {
                        "min": -a,
                        "max": a,
                        "mean": 0.0,
                        "std": s,
                        "n": n,
                        "dim": d,
                        "sha256": None,
                        "path": None,
                    }
                )
            continue
        digest = str(info.get("sha256") or "")
        if digest and digest in seen:
            continue
        seen.add(digest)
        got = _file_stats(info, r.path)
        if isinstance(got, str):
            problems.append(got)
        else:
            figures.append(got)
    if not figures:
        return {"problems": problems} if problems else None
    out: dict[str, Any] = {
        "min": min(f["min"] for f in figures),
        "max": max(f["max"] for f in figures),
        "mean": sum(f["mean"] for f in figures) / len(figures),
        "std": sum(f["std"] for f in figures) / len(figures),
        "tables": len(figures),
        "sha256": [f["sha256"] for f in figures if f["sha256"]],
        "paths": [f["path"] for f in figures if f["path"]],
        "problems": problems,
    }
    return out


def _encoder_table(config: dict[str, Any]) -> dict[str, Any] | None:
    tables = config.get("tables") or {}
    if "src" in tables:
        return tables["src"] or None
    for value in tables.values():
        if value:
            return dict(value)
    return None


def _file_stats(info: dict[str, Any], run_dir: Path) -> dict[str, Any] | str:
    from embtool.tables.stats import table_stats
    from embtool.tables.table import load

    raw = info.get("path")
    if not raw:
        return f"{run_dir}: the table entry in {CONFIG} has no path"
    path = Path(raw)
    if not path.is_absolute() and not path.exists():
        path = run_dir / raw
    if not path.is_file():
        return f"{raw}: table file not found (used by {run_dir}); Table 2 left blank"
    want = info.get("sha256")
    if want and sha256_file(path) != want:
        return f"{raw}: sha256 differs from the one {run_dir} recorded; the file changed since the run"
    s = table_stats(load(path))
    return {
        "min": s.min,
        "max": s.max,
        "mean": s.mean,
        "std": s.std,
        "n": s.n,
        "dim": s.dim,
        "sha256": want,
        "path": str(raw),
    }
