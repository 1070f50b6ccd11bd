"""embtool align: reorder tables to a vocabulary and fill the tokens they lack."""

from __future__ import annotations

from typing import List, Optional

import typer

from embtool.commands._common import (
    ALLOW_NONFINITE,
    OUT_TABLE,
    SEED,
    check_output,
    check_stdin_once,
    read_table,
    write_table,
)
from embtool.commands.extract import MISSING_HELP


def register(app: typer.Typer) -> None:
    app.command("align")(align)


def align(
    tables: Optional[List[str]] = typer.Argument(
        None,
        help="Input table(s), or - for stdin; a token's row comes from the first that has it.",
        metavar="TABLE",
    ),
    vocab: str = typer.Option(..., "--vocab", help="Vocabulary file whose order the rows take."),
    missing: str = typer.Option(
        "normal",
        "--missing",
        help=MISSING_HELP + " subword: the mean of the rows of the token's pieces "
        "(split by the table's hf: tokenizer) where the table has them all, else normal.",
    ),
    case_fallback: bool = typer.Option(
        True,
        "--case-fallback/--no-case-fallback",
        help="Try the lower-cased token when the exact one is absent.",
    ),
    seed: int = SEED,
    out: str = OUT_TABLE,
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Reorder a table to a vocabulary's order; fill what it lacks; keep its history.

    Examples:

      embtool align glove.safetensors --vocab de.vocab -o glove_de.safetensors

      embtool extract t5 --vocab v.txt | embtool align --vocab other.vocab --missing zero > t5_other.safetensors

      embtool align mt5.safetensors --vocab words.vocab --missing subword -o mt5_words.safetensors
    """
    from embtool.commands._progress import say
    from embtool.formats.alignment import ALIGN_METHODS, check_method
    from embtool.formats.alignment import align as run
    from embtool.text.vocabfile import read_vocab

    check_output(out)
    check_method(missing, ALIGN_METHODS)
    voc = read_vocab(vocab)
    check_stdin_once(tables or [])
    loaded = [read_table(t, allow_nonfinite) for t in (tables or ["-"])]
    table, cov = run(loaded, voc, missing=missing, seed=seed, case_fallback=case_fallback)
    write_table(table, out)
    say(f"align: {cov.line()}; {table.n} × {table.dim}, missing filled by {missing} → {out}")
