"""embtool standardize: Eq. 1 (to Xavier) and Eq. 4 (to another table's distribution)."""

from __future__ import annotations

from typing import Optional

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
    app.command("standardize")(standardize)


def standardize(
    table: str = IN_TABLE,
    to: str = typer.Option(
        "xavier",
        "--to",
        help="Target: xavier (mean 0, σ=√(2/(N+D))), normal:STD (mean 0, σ=STD), or a TABLE file "
        "whose mean and σ to match.",
    ),
    fan: Optional[int] = typer.Option(
        None, "--fan", help="Use N=FAN rows instead of the table's own in Xavier's σ."
    ),
    out: str = OUT_TABLE,
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Shift and scale a table to a target mean and σ: x* = (x − mean(X)) · σ_target/σ(X).

    Examples:

      embtool standardize --to xavier < glove.safetensors > glove_x.safetensors

      embtool standardize xavier.safetensors --to bert.safetensors -o xavier_bert.safetensors
    """
    from embtool.tables.transforms import parse_target
    from embtool.tables.transforms import standardize as run

    check_output(out)
    kind, _ = parse_target(to)
    if kind == "table" and to == "-" and table == "-":
        raise typer.BadParameter(
            "stdin can feed only one table; give TABLE or --to as a file", param_hint="--to"
        )
    target = read_table(to) if kind == "table" else to
    if kind == "table" and fan is not None:
        raise typer.BadParameter("--fan applies to --to xavier only", param_hint="--fan")
    # Eq. 1 stays pending in the result: save streams it from the memory-mapped input
    write_table(run(read_table(table, allow_nonfinite), target, fan=fan), out)
