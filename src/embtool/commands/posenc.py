"""embtool posenc: add sinusoidal position encodings, one random position per row."""

from __future__ import annotations

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
from embtool.tables.positional import DEFAULT_BASE, DEFAULT_MAX_LEN


def register(app: typer.Typer) -> None:
    app.command("posenc")(posenc)


def posenc(
    table: str = IN_TABLE,
    max_len: int = typer.Option(
        DEFAULT_MAX_LEN, "--max-len", help="Positions L to draw from (1 … 1,000,000)."
    ),
    base: float = typer.Option(DEFAULT_BASE, "--base", help="Wavelength base of the encoding."),
    seed: int = SEED,
    factor: str = typer.Option(
        "1",
        "--factor",
        help="Multiply the encodings by this number, or by sigma-ratio: σ_p/σ_x, the table's σ over "
        "Xavier's for its N×D (Table 4's last row).",
    ),
    out: str = OUT_TABLE,
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Add to each row the sinusoidal encoding of one uniformly drawn position (paper, footnote 6).

    Example:

      embtool scale --by sqrt-dim < glove.safetensors | embtool posenc --seed 1 > glove_pe.safetensors

      embtool posenc --factor sigma-ratio < glove.safetensors > glove_pe_scaled.safetensors
    """
    from embtool.tables.positional import check_max_len
    from embtool.tables.transforms import posenc as run

    check_output(out)
    check_max_len(max_len)  # before the table is read
    scale: str | float = factor if factor == "sigma-ratio" else _number(factor)
    write_table(
        run(read_table(table, allow_nonfinite), max_len=max_len, base=base, seed=seed, factor=scale), out
    )


def _number(text: str) -> float:
    from embtool.core.errors import UsageError

    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--factor {text!r}: give a number or sigma-ratio") from None
