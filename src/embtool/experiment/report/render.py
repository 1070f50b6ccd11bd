"""A ``Report`` as text: the paper's Tables 1, 2 (and 3, 5: ``report.tables``) in Markdown, Table 1 as CSV, everything as JSON.

The figures come from ``embtool.experiment.report.cells`` (grouping and averaging the runs); this module only
formats them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from embtool.experiment.report.cells import Cell, Report, row_key
from embtool.experiment.report.runs import METRIC_HELP
from embtool.experiment.report.tables import table3, table5
from embtool.tables.naming import XAVIER
from embtool.tasks.registry import task_title
from embtool.training.runfolder import STALL_RULE


def _f1(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def _ms(mean: float | None, std: float | None, bold: bool) -> str:
    if mean is None:
        return "–"
    text = f"{mean:.1f} ({'–' if std is None else f'{std:.1f}'})"
    return f"**{text}**" if bold else text


def _num(x: float) -> str:
    """Table 2's style: a few significant digits, whole numbers when large."""
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.2g}"


def metric_text(metric: str) -> str:
    """What the report's results are, for its notes."""
    if metric != "auto":
        return METRIC_HELP[metric]
    return (
        f"translation, side by side: BLEU, {METRIC_HELP['bleu']}; BLEU-tok, {METRIC_HELP['bleu-tok']}; "
        f"classification: {METRIC_HELP['acc']}"
    )


def result_header(kind: str, second: bool, metric: str = "auto") -> str:
    """Table 1's column title; ``second``: the cells have a second figure (MNLI mismatched, BLEU-tok)."""
    if kind == "translation":
        first = "BLEU-tok (σ)" if metric == "bleu-tok" else "BLEU (σ)"
        return first + ("/BLEU-tok (σ)" if second else "")
    return "Match (σ)/Mismatch (σ)" if second else "Acc (σ)"


def signatures(report: Report) -> list[str]:
    """Per translation task, the sacreBLEU signatures its complete runs' test.json give, each BLEU's:
    exactly what was computed (more than one: runs scored differently are mixed)."""
    lines = []
    for task in report.tasks:
        runs = [r for c in report.cells if c.task == task and c.kind == "translation" for r in c.runs]
        for name, key in (("BLEU", "signature"), ("BLEU-tok", "signature_tok")):
            found: dict[str, int] = {}
            for r in runs:
                if isinstance(r.test.get(key), str):
                    found[r.test[key]] = found.get(r.test[key], 0) + 1
            if found:
                listed = "; ".join(
                    f"`{sig}`" + (f" ({n} runs)" if len(found) > 1 else "") for sig, n in found.items()
                )
                lines.append(f"{task_title(task)} {name}: {listed}")
    return lines


def _cell_texts(c: Cell | None) -> tuple[str, str, str]:
    if c is None:
        return "–", "–", "–"
    result = _ms(c.mean, c.std, c.best)
    epoch = _f1(c.epoch)
    if c.mean2 is not None:
        result += "/" + _ms(c.mean2, c.std2, c.best2)
    if c.epoch2 is not None:  # MNLI's mismatched best epoch (BLEU-tok is of the same model)
        epoch += "/" + _f1(c.epoch2)
    if c.diverged:  # Liu et al.'s tables: "diverged"; the others' mean over those that finished
        result = "diverged" if c.diverged == c.n else f"{result}; {c.diverged} of {c.n} diverged"
    if c.stalled:  # in the mean (a result like any), marked: see the footnote
        result += f"; {c.stalled} of {c.n} stalled"
    return result, epoch, str(c.n)


def markdown(report: Report, title: str = "embtool report") -> str:
    """The whole report as Markdown: Table 1, Table 2, notes, runs left out, and every run."""
    out = io.StringIO()
    w = out.write
    complete = [r for r in report.runs if r.complete]
    w(
        f"# {title}\n\n{len(report.runs)} run(s): {len(complete)} complete, "
        f"{len(report.left_out)} incomplete or failed (listed below, left out of every figure).\n\n"
    )
    tasks = report.tasks
    first: dict[str, Cell] = {}
    for c in report.cells:
        first.setdefault(c.name, c)
    names = sorted(first, key=lambda n: row_key(first[n]))
    by = {(c.task, c.name): c for c in report.cells}
    if report.cells:
        w("## Table 1: test BLEU or best validation accuracy, mean (σ) over seeds\n\n")
        header = ["Initialisation"]
        for t in tasks:
            kinds = [c for c in report.cells if c.task == t]
            second = any(c.mean2 is not None for c in kinds)
            header += [
                f"{task_title(t)} {result_header(kinds[0].kind, second, report.metric)}",
                "Epoch",
                "Seeds",
            ]
        w(_md_row(header) + _md_row(["---"] + ["---:"] * (len(header) - 1)))
        for name in names:
            row = [name]
            for t in tasks:
                row += list(_cell_texts(by.get((t, name))))
            w(_md_row(row))
        w(
            "\nBold: the best mean of each task. σ: sample standard deviation over seeds (ddof=1), "
            "– with one seed. Epoch: mean best epoch (translation: the lowest validation loss, the "
            "model tested; classification: as the accuracy is chosen). Accuracy in %. "
            f"Results: {metric_text(report.metric)}.\n\n"
        )
        sigs = signatures(report)
        if sigs:
            w("sacreBLEU signatures (test.json): " + "; ".join(sigs) + ".\n\n")
        if any(c.stalled for c in report.cells):
            w(f"Stalled: {STALL_RULE}; finite, it learned nothing, yet its result counts in the mean.\n\n")
        w("## Table 2: the encoder embedding tables the runs started from\n\n")
        header = ["Initialisation"]
        for t in tasks:
            header += [f"{task_title(t)} Range", "Mean (σ)"]
        w(_md_row(header) + _md_row(["---"] + ["---:"] * (len(header) - 1)))
        for name in names:
            row = [name]
            for t in tasks:
                found = by.get((t, name))
                s = found.table if found is not None else None
                if s is None or "min" not in s:
                    row += ["–", "–"]
                else:
                    mean = "≈0" if abs(s["mean"]) < 0.01 * s["std"] else _num(s["mean"])
                    row += [f"{_num(s['min'])}, {_num(s['max'])}", f"{mean} ({_num(s['std'])})"]
            w(_md_row(row))
        w(
            "\nRange: the minimum and maximum value; mean and σ (ddof=1) of all values. "
            "Runs with no table: Xavier's U(−a, a), a = √(6/(N+D)), σ = √(2/(N+D)).\n\n"
        )
    w(table3(report))
    w(table5(report))
    notes = [(c, n) for c in report.cells for n in c.notes]
    notes += [(c, p) for c in report.cells if c.table for p in c.table.get("problems", [])]
    if notes:
        w("## Notes\n\n")
        for c, n in notes:
            w(f"- {task_title(c.task)} / {c.name}: {n}\n")
        w("\n")
    if report.left_out:
        w("## Runs left out\n\n")
        w(_md_row(["Run", "Task", "Initialisation", "Seed", "Status"]) + _md_row(["---"] * 5))
        for r in report.left_out:
            w(_md_row([_show(r.path), r.task, r.name, str(r.seed), r.status]))
        w("\n")
    if complete:
        w("## Runs\n\n")
        w(
            _md_row(["Run", "Task", "Initialisation", "Seed", "Result", "Best epoch", "Tables (sha256)"])
            + _md_row(["---", "---", "---", "---:", "---:", "---:", "---"])
        )
        for r in complete:
            result = _f1(r.value) + ("" if r.value2 is None else "/" + _f1(r.value2))
            if r.diverged:
                result = f"diverged (epoch {r.test.get('epoch')}, step {r.test.get('step')})"
            elif r.stalled:
                result += " (stalled)"
            epoch = _f1(r.epoch) + ("" if r.epoch2 is None else "/" + _f1(r.epoch2))
            w(_md_row([_show(r.path), r.task, r.name, str(r.seed), result, epoch, _table_ids(r.config)]))
    return out.getvalue()


def _show(path: Path) -> str:
    """A run folder as the reader typed it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _table_ids(config: dict[str, Any]) -> str:
    parts = []
    for side, info in (config.get("tables") or {}).items():
        if info:
            parts.append(
                f"{side}: {Path(str(info.get('path', '?'))).name} {str(info.get('sha256', ''))[:12]}"
            )
    return "; ".join(parts) or XAVIER


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |\n"


CSV_FIELDS = [
    "task",
    "kind",
    "initialisation",
    "seeds",
    "diverged",
    "stalled",
    "mean",
    "std",
    "best",
    "epoch",
    "mean_mismatched",
    "std_mismatched",
    "best_mismatched",
    "epoch_mismatched",
    "mean_bleu_tok",
    "std_bleu_tok",
    "best_bleu_tok",
    "table_min",
    "table_max",
    "table_mean",
    "table_std",
    "runs",
]


def to_csv(report: Report) -> str:
    """One line per Table 1 cell (CSV_FIELDS); σ is empty with one seed. A translation cell's second
    figure (BLEU-tok, ``--metric auto``) is in the ``*_bleu_tok`` fields, MNLI's in ``*_mismatched``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in cell_dicts(report):
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


def cell_dicts(report: Report) -> list[dict[str, Any]]:
    rows = []
    for c in report.cells:
        t = c.table if c.table and "min" in c.table else {}
        second = "bleu_tok" if c.kind == "translation" else "mismatched"
        rows.append(
            {
                "task": c.task,
                "kind": c.kind,
                "initialisation": c.name,
                "seeds": c.n,
                "diverged": c.diverged,
                "stalled": c.stalled,
                "mean": c.mean,
                "std": c.std,
                "best": c.best,
                "epoch": c.epoch,
                f"mean_{second}": c.mean2,
                f"std_{second}": c.std2,
                f"best_{second}": c.best2 if c.mean2 is not None else None,
                "epoch_mismatched": c.epoch2,
                "val_loss": c.val_loss,
                "val_loss_epoch": c.val_loss_epoch,
                "table_min": t.get("min"),
                "table_max": t.get("max"),
                "table_mean": t.get("mean"),
                "table_std": t.get("std"),
                "runs": " ".join(str(r.path) for r in c.runs),
            }
        )
    return rows


def to_json(report: Report) -> dict[str, Any]:
    """Everything in the report as plain JSON types."""
    cells = cell_dicts(report)
    for row, c in zip(cells, report.cells, strict=True):
        row["runs"] = [str(r.path) for r in c.runs]
        row["seed_values"] = c.seeds
        row["notes"] = c.notes
        row["table"] = c.table
    return {
        "cells": cells,
        "runs": [
            {
                "path": str(r.path),
                "status": r.status,
                "complete": r.complete,
                "task": r.task,
                "kind": r.kind,
                "initialisation": r.name,
                "seed": r.seed,
                "value": r.value,
                f"value_{'bleu_tok' if r.kind == 'translation' else 'mismatched'}": r.value2,
                "best_epoch": r.epoch,
                "best_epoch_mismatched": r.epoch2,
                "tables": {
                    k: (None if not v else {"path": v.get("path"), "sha256": v.get("sha256")})
                    for k, v in (r.config.get("tables") or {}).items()
                },
            }
            for r in report.runs
        ],
    }
