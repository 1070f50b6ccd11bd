"""The paper's Table 3 (training and position encodings on or off, with the lowest validation loss and
its epoch) and Table 5 (each task column's parameters, epochs, batch, vocabularies, train size and
minutes per epoch, beside the paper's figures), as Markdown from a ``Report``."""

from __future__ import annotations

import io
from typing import Any

from embtool.experiment.report.cells import Cell, Report
from embtool.experiment.report.runs import Run, is_number
from embtool.tasks.registry import TASKS, task_title

_FROZEN, _NO_POS = "frozen", "no posenc"


def _flags(name: str) -> tuple[str, list[str]]:
    """("GloVe_Xavier", ["frozen", "no posenc"]) from a cell name "GloVe_Xavier [frozen, no posenc]"."""
    base, _, rest = name.partition(" [")
    return base, [f.strip() for f in rest.rstrip("]").split(",") if f.strip()]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |\n"


def _ms(c: Cell) -> str:
    if c.mean is None:
        return "–"
    return f"{c.mean:.1f}" + (f" ({c.std:.2f})" if c.std is not None else "")


def table3(report: Report) -> str:
    """Table 3 for each translation task whose runs switch embedding training or positions off."""
    out = io.StringIO()
    for task in report.tasks:
        cells = [c for c in report.cells if c.task == task and c.kind == "translation"]
        if not any(_flags(c.name)[1] for c in cells):
            continue
        out.write(f"## Table 3: {task_title(task)}, embeddings trained or not, position encodings or not\n\n")
        out.write(_row(["Initialisation", "Train/Pos.", "Val. Loss (epoch)", "BLEU (σ)", "Seeds"]))
        out.write(_row(["---", "---", "---:", "---:", "---:"]))
        order = {("no", "no"): 0, ("yes", "no"): 1, ("no", "yes"): 2, ("yes", "yes"): 3}
        rows = []
        for c in cells:
            base, flags = _flags(c.name)
            if set(flags) - {_FROZEN, _NO_POS}:
                continue  # another setting (a tied output layer …) is no row of Table 3
            train = "no" if _FROZEN in flags else "yes"
            pos = "no" if _NO_POS in flags else "yes"
            loss = (
                f"{c.val_loss:.2f} ({c.val_loss_epoch:.2f})"
                if c.val_loss is not None and c.val_loss_epoch is not None
                else "–"
            )
            rows.append(((base, order[(train, pos)]), [base, f"{train}/{pos}", loss, _ms(c), str(c.n)]))
        for _, row in sorted(rows, key=lambda r: r[0]):
            out.write(_row(row))
        out.write(
            "\nVal. Loss: the lowest validation loss of each run and its epoch, mean over seeds; "
            "BLEU: the test BLEU of the lowest-loss model (Table 3 of the paper), Table 1's first "
            "figure.\n\n"
        )
    return out.getvalue()


def _column(run: Run) -> tuple[str, str]:
    paper = run.config.get("paper") or {}
    return run.task, str(paper.get("family") or "-")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _vocab(config: dict[str, Any]) -> str:
    v = config.get("vocab") or {}
    src, tgt = v.get("src_size"), v.get("tgt_size")
    return f"{src}/{tgt}" if tgt else f"{src}"


def table5(report: Report) -> str:
    """Table 5 of the complete runs, one column per task and Table 5 column (family)."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in report.runs:
        if r.complete:
            groups.setdefault(_column(r), []).append(r)
    if not groups:
        return ""
    keys = list(groups)
    names = [f"{task_title(t)} {fam}" for t, fam in keys]
    lines: list[tuple[str, list[str]]] = []

    def paper(task: str, fam: str, attr: str) -> str:
        t = TASKS.get(task)
        col = next((c for c in t.table5 if c.family == fam), None) if t else None
        value = t.train_size if t and attr == "train_size" else getattr(col, attr, None)
        return f" ({value})" if value not in (None, "", 0) else ""

    def add(label: str, attr: str, value: Any) -> None:
        lines.append((label, [f"{value(groups[k])}{paper(*k, attr)}" for k in keys]))

    def params(runs: list[Run]) -> str:
        totals = [
            r.config["parameters"]["total"] for r in runs if "total" in (r.config.get("parameters") or {})
        ]
        return f"{totals[0] / 1e6:.1f}M" if totals else "–"

    def setting(key: str) -> Any:
        return lambda runs: "/".join(sorted({str((r.config.get("train") or {}).get(key)) for r in runs}))

    def minutes(runs: list[Run]) -> str:
        secs = [float(m["seconds"]) for r in runs for m in r.metrics if is_number(m.get("seconds"))]
        value = _mean(secs)
        return "–" if value is None else f"{value / 60:.2g}"

    add("Parameters", "params", params)
    add("Epochs", "epochs", setting("epochs"))
    add("Batch Size", "batch_size", setting("batch_size"))
    add("Vocab size", "vocab", lambda runs: "/".join(sorted({_vocab(r.config) for r in runs})))
    add(
        "Train size",
        "train_size",
        lambda runs: "/".join(sorted({str(r.config.get("train_examples", "?")) for r in runs})),
    )
    add("Min/Epoch", "min_per_epoch", minutes)
    out = io.StringIO()
    out.write("## Table 5: settings and sizes of the runs (the paper's in parentheses)\n\n")
    out.write(_row(["", *names]))
    out.write(_row(["---"] + ["---:"] * len(names)))
    for label, values in lines:
        out.write(_row([label, *values]))
    out.write(
        "\nColumns: task and the Table 5 column (embedding family) each run's config.json records. "
        "Vocab size: encoder/decoder. Min/Epoch: mean training time per epoch on this machine.\n\n"
    )
    return out.getvalue()
