"""embtool similarity: Spearman's ρ of cosines against human word-similarity scores."""

from __future__ import annotations

from typing import List, Optional  # typer reads the annotations

import typer

from embtool.commands._common import ALLOW_NONFINITE, IN_TABLE, read_table
from embtool.core import jsonout
from embtool.eval.benchmarks import DEFAULT_RESTRICT  # stdlib only: numpy is imported when scoring


def register(app: typer.Typer) -> None:
    app.command("similarity")(similarity)


def similarity(
    table: str = IN_TABLE,
    pairs: Optional[List[str]] = typer.Option(
        None,
        "--pairs",
        help="Pairs file ('word<TAB>word<TAB>score', '#' comments); repeat for several. "
        "Default: WordSim-353 and SimLex-999 as gensim ships them.",
        metavar="FILE",
    ),
    restrict: int = typer.Option(
        DEFAULT_RESTRICT, "--restrict", min=1, help="Only the first N rows count as known."
    ),
    case_sensitive: bool = typer.Option(
        False,
        "--case-sensitive",
        help="Match words as written (default: upper-case both, first variant wins).",
    ),
    count_oov: bool = typer.Option(
        False, "--count-oov", help="Score pairs with unknown words as 0 instead of skipping them."
    ),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per pairs file, one per line."),
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Spearman's ρ (and Pearson's r) between cosine similarity and human judgements.

    Same conventions and numbers as gensim's KeyedVectors.evaluate_word_pairs; pairs with a word outside the first --restrict rows are skipped and counted.

    Example:

      embtool similarity w2v.safetensors

      embtool similarity w2v.safetensors --pairs my_pairs.tsv --json
    """
    from embtool.eval.similarity import evaluate_similarity

    results = evaluate_similarity(
        read_table(table, allow_nonfinite),
        list(pairs) if pairs else None,
        restrict=restrict,
        case_sensitive=case_sensitive,
        count_oov=count_oov,
    )
    if json_out:
        for r in results:
            typer.echo(jsonout.dumps(r.as_dict(), ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    view = Table(title="word similarity: " + ("<stdin>" if table == "-" else table))
    for name in ("pairs file", "Spearman ρ", "Pearson r", "pairs", "unknown"):
        view.add_column(name, justify="left" if name == "pairs file" else "right")
    for r in results:
        view.add_row(
            r.name, f"{r.spearman:.4f}", f"{r.pearson:.4f}", str(r.pairs), f"{r.oov} ({r.oov_ratio:.1f}%)"
        )
    console = Console()
    console.print(view)
    for r in results:
        console.print(r.signature, style="dim", soft_wrap=True, markup=False, highlight=False)
