"""Figure 1 of the paper: validation curves per epoch, mean ± σ over seeds, one panel per task (PNG).

matplotlib is imported inside ``plot_curves`` so that importing this module stays cheap.
"""

from __future__ import annotations

import os
from pathlib import Path

from embtool.errors import BadInput
from embtool.report.cells import Report, curve
from embtool.tasks.registry import task_title

PANEL_INCHES = (4.8, 3.6)  # one panel's width and height
DPI = 100


def plot_curves(report: Report, path: str | os.PathLike[str]) -> list[str]:
    """Figure 1: validation BLEU (or accuracy) per epoch, mean over seeds with a ±σ band, one
    line per initialisation, one panel per task. Writes a PNG; returns the panel titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from embtool.atomic import atomic_path

    tasks = report.tasks
    if not tasks:
        raise BadInput("no complete runs: nothing to plot")
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(PANEL_INCHES[0] * len(tasks), PANEL_INCHES[1]), dpi=DPI, squeeze=False
    )
    titles = []
    for ax, task in zip(axes[0], tasks, strict=True):
        cells = [c for c in report.cells if c.task == task]
        key = "val_bleu" if cells[0].kind == "translation" else "val_acc"
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
        ax.set_ylabel("validation BLEU" if key == "val_bleu" else "validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    suffix = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix, dpi=DPI)
    plt.close(fig)
    return titles
