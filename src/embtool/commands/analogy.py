"""embtool analogy: Mikolov word-analogy accuracy, the paper's Table 4."""

from __future__ import annotations

from typing import Optional

import typer

from embtool.commands._common import ALLOW_NONFINITE, IN_TABLE, STATE, read_table
from embtool.core import jsonout
from embtool.eval.benchmarks import DEFAULT_RESTRICT  # stdlib only: numpy is imported when scoring


def register(app: typer.Typer) -> None:
    app.command("analogy")(analogy)


def analogy(
    table: str = IN_TABLE,
    questions: Optional[str] = typer.Option(
        None,
        "--questions",
        help="Questions file (': section' lines, then 'a b c d' lines). "
        "Default: Mikolov's questions-words.txt as gensim ships it.",
        metavar="FILE",
    ),
    method: str = typer.Option(
        "add", "--method", help="add: 3CosAdd (gensim's answers exactly); mul: 3CosMul (Levy & Goldberg)."
    ),
    restrict: int = typer.Option(
        DEFAULT_RESTRICT, "--restrict", min=1, help="Only the first N rows are candidates and count as known."
    ),
    case_sensitive: bool = typer.Option(
        False,
        "--case-sensitive",
        help="Match words as written (default: upper-case both, first variant wins).",
    ),
    count_oov: bool = typer.Option(
        False, "--count-oov", help="Count questions with unknown words as wrong instead of skipping them."
    ),
    device: str = typer.Option(
        "cpu", "--device", help="Where the similarity product runs: cpu, cuda, cuda:1 …"
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the numbers as one JSON object."),
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Word-analogy accuracy (a : b :: c : ?) per section and in total.

    Counts only questions whose four words are among the first --restrict rows (the rest are reported as skipped). 3CosAdd gives exactly the counts of gensim's KeyedVectors.evaluate_word_analogies with its defaults, in a fraction of its time.

    Example:

      embtool analogy w2v.safetensors

      embtool standardize --to xavier < w2v.safetensors | embtool analogy --method mul --json
    """
    from embtool.eval.analogy import evaluate_analogies

    data = read_table(table, allow_nonfinite)
    with _status("answering analogy questions"):
        result = evaluate_analogies(
            data,
            questions,
            method=method,
            restrict=restrict,
            case_sensitive=case_sensitive,
            count_oov=count_oov,
            device=device,
        )
    if json_out:
        out = result.as_dict()
        out["table"] = table
        typer.echo(jsonout.dumps(out, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    view = Table(title=f"word analogies ({'3CosAdd' if method == 'add' else '3CosMul'}): {_label(table)}")
    view.add_column("section")
    view.add_column("correct/answered (%)", justify="right")
    view.add_column(
        "unknown words (counted wrong)" if count_oov else "skipped (unknown words)", justify="right"
    )
    for s in [*result.sections, result.total]:
        view.add_row(
            s.name, _cell(s.correct, s.answered), str(s.skipped), end_section=s is result.sections[-1]
        )
    console = Console()
    console.print(view)
    console.print(result.signature, style="dim", soft_wrap=True, markup=False, highlight=False)


def _cell(correct: int, answered: int) -> str:
    pct = 100.0 * correct / answered if answered else 0.0
    return f"{correct}/{answered} ({pct:.1f})"


def _label(path: str) -> str:
    from pathlib import Path

    return "<stdin>" if path == "-" else Path(path).name


def _status(message: str):  # type: ignore[no-untyped-def]
    """A spinner on stderr while working (nothing with -q or when stderr is not a terminal)."""
    from contextlib import nullcontext

    from embtool.commands._common import err_console

    console = err_console()
    if STATE.quiet or not console.is_terminal:
        return nullcontext()
    return console.status(message)
