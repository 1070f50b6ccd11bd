"""What every command shares: global flags, table I/O at the edge, stderr output.

Kept light: importing this must not import torch or numpy (``embtool --help`` stays fast), and the
table commands never import torch at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from rich.console import Console

    from embtool.tables.table import EmbeddingTable


@dataclass
class State:
    debug: bool = False
    quiet: bool = False


STATE = State()


class _FlagsTakeNoValue:
    """typer prints an option's type beside it in --help (``--debug <bool>``), a flag's too, as if it
    took a value. A flag without a metavar of its own shows none: ours, and typer's --help and
    completion flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_FlagsTakeNoValue, TyperCommand):
    """Every embtool command's class (``App.command``)."""


class Group(_FlagsTakeNoValue, TyperGroup):
    """The ``embtool`` group's class."""


class App(typer.Typer):
    """The typer app whose commands are ``Command`` unless they name a class of their own."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or Command, **kwargs)


# Shared option declarations, so every command spells them the same way.
OUT_TABLE = typer.Option("-", "-o", "--out", help="Output table file, or - for stdout.", metavar="OUT")
IN_TABLE = typer.Argument("-", help="Input table file, or - for stdin.", metavar="TABLE")
ALLOW_NONFINITE = typer.Option(False, "--allow-nonfinite", help="Accept NaN/Inf values instead of stopping.")
SEED = typer.Option(
    0, "--seed", min=0, max=2**63 - 1, help="Random seed (every random step is reproducible)."
)


_BIG = 128 * 2**20  # bytes: tables this large take a second or more to read or write


def read_table(path: str, allow_nonfinite: bool = False) -> EmbeddingTable:
    import os

    from embtool.tables.table import load

    big = path != "-" and os.path.isfile(path) and os.path.getsize(path) > _BIG
    with working(f"reading {path}", show=big):
        return load(path, allow_nonfinite=allow_nonfinite)


def write_table(table: EmbeddingTable, out: str) -> None:
    from embtool.tables.table import save

    with working(f"writing {out}", show=table.nbytes > _BIG and out != "-"):
        save(table, out)


@contextmanager
def working(message: str, show: bool = True) -> Iterator[None]:
    """A spinner on stderr while slow work runs (only on a terminal, never with --quiet)."""
    import sys

    if not show or STATE.quiet or not sys.stderr.isatty():
        yield
        return
    with err_console().status(message):
        yield


def check_output(out: str) -> None:
    """Fail before any work when the output would be a terminal (DESIGN §2)."""
    import sys

    from embtool.core.errors import UsageError

    if out == "-" and sys.stdout.isatty():
        raise UsageError("refusing to write a binary table to a terminal: use -o FILE or redirect stdout")


def check_stdin_once(paths: list[str]) -> None:
    """Fail before reading when ``-`` (stdin) is given more than once: it holds one table."""
    from embtool.core.errors import UsageError

    if paths.count("-") > 1:
        raise UsageError("stdin (-) is given more than once; it holds one table: give the others as files")


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, quiet=STATE.quiet)


def info(message: Any) -> None:
    """A summary line on stderr, unless --quiet."""
    if not STATE.quiet:
        err_console().print(message)
