"""embtool report: the paper's Table 1, Table 2 and Figure 1 from run folders."""

from __future__ import annotations

from typing import List, Optional  # typer reads the annotations

import typer

from embtool.commands._common import info
from embtool.core import jsonout


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    runs: List[str] = typer.Argument(
        ...,
        help="Run folders (holding config.json), or folders of them, searched recursively.",
        metavar="RUN_OR_DIR...",
    ),
    out: Optional[str] = typer.Option(None, "-o", "--out", help="Write the Markdown here instead of stdout."),
    plot: Optional[str] = typer.Option(
        None, "--plot", help="Write Figure 1 (validation curves, one panel per task) to this PNG."
    ),
    plot_dynamics: Optional[str] = typer.Option(
        None,
        "--plot-dynamics",
        help="Write the embedding dynamics (drift, cosine to the first rows, residual-branch ratio "
        "per epoch, one line per variant) to this PNG.",
        metavar="PNG",
    ),
    csv_path: Optional[str] = typer.Option(None, "--csv", help="Write one CSV line per Table 1 cell here."),
    json_out: bool = typer.Option(
        False, "--json", help="Print the report as JSON on stdout (Markdown still goes to -o)."
    ),
    metric: str = typer.Option(
        "auto",
        "--metric",
        help="Each run's result: auto (translation: both BLEUs side by side, BLEU/BLEU-tok; "
        "classification: acc), bleu (sacreBLEU on detokenized text against the references as written, "
        "case-insensitive where the task is lower-cased: comparable across papers), bleu-tok (on the "
        "model's own tokens, lower-cased: closest to the paper's pipeline, comparable only within one "
        "tokenizer), acc (highest validation accuracy, §5), acc-at-loss (at the lowest validation loss).",
    ),
    no_table_stats: bool = typer.Option(
        False, "--no-table-stats", help="Skip Table 2 (reading the tables the runs used)."
    ),
) -> None:
    """Mean (σ) over seeds of test BLEU or best validation accuracy, per task and initialisation.

    Translation cells show both BLEUs a run's test.json holds, side by side: BLEU, sacreBLEU on the detokenized hypotheses (the figure to compare with other papers), then BLEU-tok, on the model's own tokens (closest to the paper's pipeline); the footnote gives each one's sacreBLEU signature.

    Runs are grouped by task and by the initialisation name read from each run's tables (Xavier, GloVe, GloVe_Xavier, GloVe_Shuffled, Xavier_GloVe, …): the paper's Table 1 (best per task in bold, seeds per cell), Table 2 (range, mean (σ) of the tables the runs started from), Table 3 (when runs freeze embeddings or drop position encodings: the lowest validation loss and its epoch beside BLEU), Table 5 (parameters, epochs, batch, vocabularies, minutes per epoch beside the paper's) and, with --plot, Figure 1 (validation BLEU or accuracy per epoch, mean ± σ over seeds, one panel per task); with --plot-dynamics, the embedding dynamics train records per epoch. A run whose training diverged shows as "diverged" in its cell, which averages the seeds that finished and counts those that diverged. Incomplete or failed runs (no test.json) are listed and left out of every figure.

    Example:

      embtool report runs/ -o report.md --plot curves.png --csv table1.csv

      embtool report runs/glove_x runs/xavier --json

      embtool report runs/ --metric bleu-tok
    """
    from embtool.core import atomic
    from embtool.core.errors import UsageError
    from embtool.experiment.report import plot as plots
    from embtool.experiment.report.cells import build_report
    from embtool.experiment.report.plot import plot_curves
    from embtool.experiment.report.render import markdown, to_csv, to_json

    for option, path in (("--plot", plot), ("--csv", csv_path)):
        if path == "-":  # stdout carries the Markdown (or --json); a file named "-" is no one's intent
            raise UsageError(f"{option} -: give a file name; stdout holds the report")
    rep = build_report(runs, table_stats=not no_table_stats, metric=metric)
    if plot:
        titles = plot_curves(rep, plot)
        info(f"report: Figure 1 ({len(titles)} panel(s): {', '.join(titles)}) → {plot}")
    if plot_dynamics:
        titles = plots.plot_dynamics(rep, plot_dynamics)
        info(f"report: embedding dynamics ({', '.join(titles)}) → {plot_dynamics}")
    if csv_path:
        atomic.write_text(csv_path, to_csv(rep))
        info(f"report: {len(rep.cells)} cell(s) → {csv_path}")
    text = markdown(rep)
    to_file = bool(out and out != "-")
    if to_file:
        atomic.write_text(str(out), text)
        info(
            f"report: {len(rep.cells)} cell(s) from {len(rep.runs) - len(rep.left_out)} complete run(s), "
            f"{len(rep.left_out)} left out → {out}"
        )
    if json_out:
        typer.echo(jsonout.dumps(to_json(rep), ensure_ascii=False, indent=1))
    elif not to_file:
        typer.echo(text, nl=False)
