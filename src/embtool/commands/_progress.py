"""Progress on stderr: a transient bar for the source commands (vocab, extract, align) and the
per-epoch display that ``train`` and ``experiment`` share.

Imported inside command bodies only: rich's progress module is not needed for ``--help``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from embtool.commands._common import STATE, err_console, info

if TYPE_CHECKING:
    from embtool.training.config import TrainConfig


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; the bar is drawn on a terminal only (not in logs or pipes, not with -q)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = err_console()
    if STATE.quiet or not console.is_terminal:  # nothing to draw on: a log file or a pipe
        yield lambda n: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


@contextmanager
def byte_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """Yield ``update(done, total)`` in bytes; a bar on a terminal once a file reports its size."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    console = err_console()
    if STATE.quiet or not console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:  # fmt: skip
        task = progress.add_task(label, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def say(message: str) -> None:
    """One summary line on stderr, unless --quiet: no wrapping, no markup (tokens like [PAD] stay)."""
    if not STATE.quiet:
        err_console().print(message, soft_wrap=True, markup=False, highlight=False)


class TrainingProgress:
    """Turns the trainer's progress events into a rich bar per epoch and a line per epoch."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.run_dir: str | None = cfg.out
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def _bar(self) -> Any:
        # started at the first epoch, so that an early error stays the only line on stderr
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.3f} · {task.fields[tps]:,.0f} tok/s"),
                TimeElapsedColumn(),
                console=err_console(),
                transient=True,
                disable=STATE.quiet,
            )
            self.progress.__enter__()
        return self.progress

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "log":
            if self.progress is None:
                info(data["message"])
            else:
                self.progress.console.print(data["message"])
            return
        if event == "run":
            self.run_dir = data["path"]
            return
        p = self._bar()
        if event == "epoch_start":
            if self.task is not None:
                p.remove_task(self.task)
            self.task = p.add_task(
                f"epoch {data['epoch']}/{data['epochs']}", total=data["steps"], loss=0.0, tps=0.0
            )
        elif event == "step" and self.task is not None:
            p.update(self.task, completed=data["step"], loss=data["loss"], tps=data["tokens_per_s"])
        elif event == "epoch":
            score = (
                f"val BLEU {data['val_bleu']:.2f}" if "val_bleu" in data else f"val acc {data['val_acc']:.2f}"
            )
            p.console.print(
                f"epoch {data['epoch']}: train loss {data['train_loss']:.3f}, val loss {data['val_loss']:.3f}, "
                f"{score}, {data['seconds']:.1f}s, {data['tokens_per_s']:,.0f} tok/s"
            )
