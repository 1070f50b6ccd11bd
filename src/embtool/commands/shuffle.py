"""embtool shuffle: keep a table's distribution, destroy its semantics."""

from __future__ import annotations

from enum import Enum

import typer

from embtool.commands._common import (
    ALLOW_NONFINITE,
    IN_TABLE,
    OUT_TABLE,
    SEED,
    check_output,
    read_table,
    write_table,
)


class Axis(str, Enum):
    both = "both"
    rows = "rows"
    cols = "cols"
    all = "all"


def register(app: typer.Typer) -> None:
    app.command("shuffle")(shuffle)


def shuffle(
    table: str = IN_TABLE,
    axis: Axis = typer.Option(
        Axis.both, "--axis", help="both: rows then columns (Pre-trained_Shuffled); all: every element."
    ),
    seed: int = SEED,
    out: str = OUT_TABLE,
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Permute the values of a table; row i keeps token i, so the multiset of values stays.

    Example:

      embtool shuffle glove.safetensors --seed 3 -o glove_shuffled.safetensors
    """
    from embtool.tables.transforms import shuffle as run

    check_output(out)
    write_table(run(read_table(table, allow_nonfinite), axis=axis.value, seed=seed), out)
