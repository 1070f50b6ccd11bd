"""Figure 1 of the paper: validation curves per epoch, mean ± σ over seeds, one panel per task (PNG);
and the embedding dynamics train writes per epoch (``embtool.training.dynamics``), per variant.

matplotlib is imported inside the plotting functions so that importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from embtool.core.errors import BadInput
from embtool.experiment.report.cells import Report, curve
from embtool.experiment.report.runs import Run, is_number
from embtool.tables.statplot import save_figure
from embtool.tasks.registry import task_title

PANEL_INCHES = (4.8, 3.6)  # one panel's width and height
DPI = 100


# Figure 1's curve per translation --metric: the validation BLEU of the same kind as Table 1's
CURVES = {"bleu-tok": ("val_bleu_tok", "validation BLEU-tok (model's tokens)")}
BLEU_CURVE = ("val_bleu", "validation BLEU (sacreBLEU)")


def plot_curves(report: Report, path: str | os.PathLike[str]) -> list[str]:
    """Figure 1: validation BLEU (or accuracy) per epoch, mean over seeds with a ±σ band, one
    line per initialisation, one panel per task. Translation: sacreBLEU's detokenized BLEU, or
    BLEU-tok with ``--metric bleu-tok``. Writes a PNG; returns the panel titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    tasks = report.tasks
    if not tasks:
        raise BadInput("no complete runs: nothing to plot")
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(PANEL_INCHES[0] * len(tasks), PANEL_INCHES[1]), dpi=DPI, squeeze=False
    )
    titles = []
    for ax, task in zip(axes[0], tasks, strict=True):
        cells = [c for c in report.cells if c.task == task]
        key, ylabel = (
            CURVES.get(report.metric, BLEU_CURVE)
            if cells[0].kind == "translation"
            else ("val_acc", "validation accuracy (%)")
        )
        for c in cells:
            epochs, means, stds = curve(c.runs, key)
            if not epochs:
                continue
            m, s = means, stds
            (line,) = ax.plot(epochs, m, marker="o", markersize=3, label=f"{c.name} (n={c.n})")
            ax.fill_between(
                epochs,
                [a - b for a, b in zip(m, s, strict=True)],
                [a + b for a, b in zip(m, s, strict=True)],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
        title = task_title(task)
        titles.append(title)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # runs from before val_bleu_tok draw no BLEU-tok line
            ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, path, DPI)
    return titles


def dynamics_series(runs: list[Run], get: Callable[[dict[str, Any]], Any]) -> tuple[list[float], list[float]]:
    """Epochs and the mean over runs of ``get(metrics line)`` (lines where it is a number)."""
    per_epoch: dict[float, list[float]] = {}
    for r in runs:
        for row in r.metrics:
            try:
                v = get(row)
            except (KeyError, TypeError, IndexError):
                continue
            if is_number(v) and is_number(row.get("epoch")):
                per_epoch.setdefault(float(row["epoch"]), []).append(float(v))
    epochs = sorted(per_epoch)
    return epochs, [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs]


DYNAMICS = (  # (panel title, y label, {line style: value from a metrics line})
    (
        "encoder embedding drift",
        "‖E_t − E_0‖ / ‖E_0‖",
        {"-": lambda m: m["emb"]["src"]["drift"], ":": lambda m: m["emb"]["src"]["bands"]["rare"]["drift"]},
    ),
    ("cosine to the first rows", "mean cosine", {"-": lambda m: m["emb"]["src"]["cos"]}),
    (
        "residual-branch ratio",
        "mean ‖f(x)‖ / ‖x ⊙ ω‖",
        {"-": lambda m: sum(v := [x for s in m["branch_ratio"].values() for x in s]) / len(v)},
    ),
)


MARKERS = "os^Dv<>pPX*h"  # one per setting of a variant ("[norm=admin]", "[input-dim 64]", …)


def cell_styles(names: list[str]) -> dict[str, tuple[Any, str]]:
    """Colour and marker of each cell: one colour per initialisation (the name before " ["), one
    marker per bracketed setting, so a 3 × 4 grid reads as 3 colours × 4 markers, not 12 colours
    from a 10-colour cycle that repeats."""
    import matplotlib

    def split(name: str) -> tuple[str, str]:
        base, _, setting = name.partition(" [")
        return base, setting

    bases = list(dict.fromkeys(split(n)[0] for n in names))
    settings = list(dict.fromkeys(split(n)[1] for n in names))
    cmap = matplotlib.colormaps["tab10" if len(bases) <= 10 else "tab20"]
    return {
        n: (cmap(bases.index(split(n)[0]) % cmap.N), MARKERS[settings.index(split(n)[1]) % len(MARKERS)])
        for n in names
    }


def plot_dynamics(report: Report, path: str | os.PathLike[str]) -> list[str]:
    """Embedding dynamics per epoch, one line per cell (variant), mean over its seeds: the encoder
    embedding's drift (dotted: its rarest third), cosine to its first rows, and the mean residual-branch
    ratio (post-LN and Admin runs). One row of panels per task, one legend per row on its right.
    Writes a PNG; returns the task titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    tasks = report.tasks
    if not any("emb" in m for c in report.cells for r in c.runs for m in r.metrics):
        raise BadInput("no run has embedding dynamics in metrics.jsonl (runs of embtool before 0.2?)")
    width, height = PANEL_INCHES
    fig, axes = plt.subplots(
        len(tasks),
        len(DYNAMICS),
        figsize=(width * len(DYNAMICS), height * len(tasks)),
        dpi=DPI,
        squeeze=False,
        layout="constrained",
    )
    titles = []
    for row, task in zip(axes, tasks, strict=True):
        cells = [c for c in report.cells if c.task == task]
        styles = cell_styles([c.name for c in cells])
        handles: dict[str, Any] = {}
        for ax, (title, ylabel, lines) in zip(row, DYNAMICS, strict=True):
            for c in cells:
                color, marker = styles[c.name]
                for style, get in lines.items():
                    epochs, means = dynamics_series(c.runs, get)
                    if epochs:
                        (line,) = ax.plot(epochs, means, style, color=color, marker=marker, markersize=4)
                        if style == "-":
                            handles.setdefault(c.name, line)
            ax.set_title(f"{task_title(task)}: {title}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        if handles:
            handles["drift of the rarest third"] = Line2D([], [], color="grey", linestyle=":")
            row[-1].legend(
                list(handles.values()),
                list(handles),
                fontsize="x-small",
                loc="upper left",
                bbox_to_anchor=(1.02, 1),
            )
        titles.append(task_title(task))
    save_figure(fig, path, DPI)
    return titles
