"""embtool doctor: the paper's checks on tables, a verdict each with its figure and the fixing command."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from embtool.commands._common import read_table
from embtool.tables.positional import DEFAULT_MAX_LEN

_MARK = {"ok": "✓", "note": "·", "warning": "!", "finding": "✗"}


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(
    tables: List[str] = typer.Argument(..., help="Table files (- for stdin).", metavar="TABLE"),
    dim: Optional[int] = typer.Option(
        None, "--dim", min=1, help="The model's D, when it differs from the table's."
    ),
    vocab: Optional[str] = typer.Option(
        None, "--vocab", help="Vocabulary file: how many of its tokens (and corpus tokens) the table covers."
    ),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per table, one per line."),
    strict: bool = typer.Option(False, "--strict", help="Warnings count as findings too (for CI)."),
    max_len: int = typer.Option(
        DEFAULT_MAX_LEN, "--max-len", help="Positions L of the reference position encoding (1 … 1,000,000)."
    ),
) -> None:
    """Check tables against the paper's lessons; exit 0 when nothing is wrong, 1 with findings.

    σ against Xavier's σ_x for N × D; the ×√D values against the position encoding; NaN/Inf; all-zero,
    duplicate and outlier rows; filled rows' scale; coverage of --vocab; the table's history. Each
    finding names the command that fixes it.

    Examples:

      embtool doctor glove.safetensors glove_x.safetensors

      embtool doctor glove.safetensors --dim 512 --vocab en.vocab --json
    """
    from embtool.commands._progress import say
    from embtool.tables.doctor import diagnose
    from embtool.tables.positional import check_max_len
    from embtool.text.vocabfile import read_vocab

    check_max_len(max_len)
    voc = read_vocab(vocab) if vocab is not None else None
    found = 0
    for path in tables:
        name = "-" if path == "-" else path
        d = diagnose(read_table(path, allow_nonfinite=True), name, dim=dim, vocab=voc, vocab_name=vocab or "V",
                     max_len=max_len)  # fmt: skip
        bad = d.findings(strict)
        found += len(bad)
        if json_out:
            typer.echo(json.dumps(d.as_dict(strict), ensure_ascii=False))
            continue
        verdict = f"{len(bad)} finding(s)" if bad else "ok"
        typer.echo(f"{'<stdin>' if path == '-' else path} ({d.n} × {d.dim}): {verdict}")
        for c in d.checks:
            typer.echo(f"  {_MARK[c.level]} {c.name}: {c.message}")
            if c.fix and c.level in ("finding", "warning"):
                typer.echo(f"      fix: {c.fix}")
        typer.echo(f"  see the distribution: {d.plot}")
    if found and not json_out:
        say(f"doctor: {found} finding(s) in {len(tables)} table(s)")
    if found:
        raise typer.Exit(1)
