"""embtool resize: a table to another width, by PCA or padding."""

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


def register(app: typer.Typer) -> None:
    app.command("resize")(resize)


def resize(
    table: str = IN_TABLE,
    dim: int = typer.Option(..., "--dim", help="The new number of columns D."),
    method: str = typer.Option(
        "pca",
        "--method",
        help="pca: the D directions of most variance (narrows); pad: drawn columns (widens).",
    ),
    fill: str = typer.Option(
        "table",
        "--fill",
        help="pad's new columns: table (N(mean, σ) of the table's values) or xavier (U(−a, a)).",
    ),
    seed: int = SEED,
    out: str = OUT_TABLE,
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Give a table another width D, so that any table can start any model.

    The learned alternative is train's --input-dim projection. Standardize afterwards: the
    result's σ is no longer Xavier's for the new N × D.

    Examples:

      embtool resize glove.safetensors --dim 256 --method pca -o glove256.safetensors

      embtool resize glove.safetensors --dim 512 --method pad | embtool standardize --to xavier > glove512_x.safetensors
    """
    from embtool.commands._progress import say
    from embtool.tables.resize import resize as run

    check_output(out)
    source = read_table(table, allow_nonfinite)
    result, kept = run(source, dim, method, fill, seed)
    write_table(result, out)
    how = f"kept {100 * kept:.2f}% of the variance" if kept is not None else f"new columns drawn as {fill}"
    say(f"resize: {source.n} × {source.dim} → {result.n} × {result.dim} by {method}, {how} → {out}")
