"""A transient rich progress bar on stderr for the source commands (vocab, extract, align).

Imported inside command bodies only: rich's progress module is not needed for ``--help``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from embtool.commands._common import STATE


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; the bar is drawn on a terminal only (not in logs or pipes, not with -q)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from embtool.commands._common import err_console

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


def say(message: str) -> None:
    """One summary line on stderr, unless --quiet: no wrapping, no markup (tokens like [PAD] stay)."""
    if not STATE.quiet:
        from embtool.commands._common import err_console

        err_console().print(message, soft_wrap=True, markup=False, highlight=False)
