"""embtool scale: multiply a table by √D or a number."""

from __future__ import annotations

import typer

from embtool.commands._common import (
    ALLOW_NONFINITE,
    IN_TABLE,
    OUT_TABLE,
    check_output,
    read_table,
    write_table,
)


def register(app: typer.Typer) -> None:
    app.command("scale")(scale)


def scale(
    table: str = IN_TABLE,
    by: str = typer.Option(
        "sqrt-dim", "--by", help="sqrt-dim (the transformer's input scaling) or a number."
    ),
    out: str = OUT_TABLE,
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Multiply every value by a factor.

    Example:

      embtool scale --by sqrt-dim < glove.safetensors | embtool stats -
    """
    from embtool.tables.transforms import scale as run

    check_output(out)
    write_table(run(read_table(table, allow_nonfinite), by=by), out)
