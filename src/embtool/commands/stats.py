"""embtool stats: the paper's Tables 2 and 6 for one or more tables, side by side."""

from __future__ import annotations

from typing import List, Optional  # typer reads the annotation

import typer

from embtool.commands._common import ALLOW_NONFINITE, check_stdin_once, read_table
from embtool.core import jsonout
from embtool.tables.positional import DEFAULT_MAX_LEN


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)


_ROWS = [  # (label, field, format)
    ("N × D", None, ""),
    ("min", "min", ".4g"),
    ("max", "max", ".4g"),
    ("mean", "mean", ".4g"),
    ("σ (ddof=1)", "std", ".4g"),
    ("Xavier bound ±a", "xavier_bound", ".4g"),
    ("Xavier σ_x", "xavier_std", ".4g"),
    ("Xavier scaled ×√D ±a", "xavier_scaled_bound", ".4g"),
    ("Xavier scaled ×√D σ", "xavier_scaled_std", ".4g"),
    ("σ / σ_x", "std_ratio", ".3g"),
    ("scaled ×√D min", "scaled_min", ".4g"),
    ("scaled ×√D max", "scaled_max", ".4g"),
    ("scaled ×√D mean", "scaled_mean", ".4g"),
    ("scaled ×√D σ", "scaled_std", ".4g"),
    ("pos. enc. min", "posenc_min", ".3g"),
    ("pos. enc. max", "posenc_max", ".3g"),
    ("pos. enc. mean", "posenc_mean", ".3g"),
    ("pos. enc. σ", "posenc_std", ".3g"),
    ("absorption σ_scaled/σ_pe", "absorption", ".3g"),
    ("source", "source", ""),
    ("tokenizer", "tokenizer", ""),
    ("history", "history", ""),
]


def stats(
    tables: List[str] = typer.Argument(..., help="Table files (- for stdin).", metavar="TABLE"),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per table, one per line."),
    max_len: int = typer.Option(
        DEFAULT_MAX_LEN, "--max-len", help="Positions L of the reference position encoding (1 … 1,000,000)."
    ),
    plot: Optional[str] = typer.Option(
        None,
        "--plot",
        help="Also draw the value histograms against Xavier's and the position encoding (PNG).",
        metavar="PNG",
    ),
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Range, mean and σ of tables, against Xavier's and the position encoding's.

    The rows of the paper's Table 6 for each table: its range and mean (σ), the same scaled by √D;
    Xavier's range ±a and σ_x for the same N×D, and scaled by √D; the position encoding's range and
    mean (σ). A last line says why Table 6's "Pos. Encoding" 0.131 (0.67) is no one --max-len's:
    mean² + σ² = ½ at every length, so the mean 0.131 (L 5,000) gives σ 0.695; 0.67 is L 1,000's σ.

    Example:

      embtool stats glove.safetensors glove_x.safetensors xavier.safetensors

      embtool stats glove.safetensors glove_x.safetensors --plot glove.png
    """
    from rich.console import Console
    from rich.table import Table

    from embtool.tables.positional import check_max_len
    from embtool.tables.stats import table6_posenc_finding, table_stats

    check_max_len(max_len)  # before any table is read
    check_stdin_once(tables)
    loaded = [read_table(path, allow_nonfinite) for path in tables]
    results = [table_stats(t, name=_label(p), max_len=max_len) for t, p in zip(loaded, tables)]
    if plot is not None:
        from embtool.commands._progress import say
        from embtool.tables.statplot import plot_tables

        plot_tables(loaded, results, plot)
        say(f"stats: histograms of {len(loaded)} table(s) → {plot}")
    if json_out:
        for r in results:
            typer.echo(jsonout.dumps(r.as_dict(), ensure_ascii=False))
        return
    view = Table(title=f"embedding statistics (position encoding: {max_len} positions)")
    view.add_column("")
    for r in results:
        view.add_column(r.name, justify="right", overflow="fold")
    for label, name, fmt in _ROWS:
        cells = []
        for r in results:
            value = f"{r.n} × {r.dim}" if name is None else getattr(r, name)
            cells.append(format(value, fmt) if fmt else str(value))
        view.add_row(label, *cells)
    Console().print(view)
    typer.echo(table6_posenc_finding().text())


def _label(path: str) -> str:
    from pathlib import Path

    return "<stdin>" if path == "-" else Path(path).name
