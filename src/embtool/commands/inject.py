"""embtool inject: a table as the input embedding of a local Hugging Face checkpoint (copied)."""

from __future__ import annotations

from typing import Optional

import typer

from embtool.commands._common import ALLOW_NONFINITE, IN_TABLE, SEED, read_table


def register(app: typer.Typer) -> None:
    app.command("inject")(inject)


def inject(
    table: str = IN_TABLE,
    model: str = typer.Option(..., "--model", help="Checkpoint folder (save_pretrained, safetensors)."),
    out: str = typer.Option(..., "-o", "--out", help="New folder: the checkpoint with the table's rows."),
    missing: str = typer.Option(
        "normal",
        "--missing",
        help="Rows of tokenizer ids the table lacks: normal (N(mean, σ) of the found rows), mean, zero, xavier.",
    ),
    tokenizer: Optional[str] = typer.Option(
        None,
        "--tokenizer",
        metavar="DIR",
        help="Folder of the checkpoint's tokenizer, when --model holds none (it maps ids to tokens).",
    ),
    seed: int = SEED,
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Copy a checkpoint folder with its input-embedding tensor replaced by a table's rows.

    Row i of the tensor becomes the table's row for the tokenizer's id i; nothing else changes.
    Links inside the folder are copied as links; a link that leaves it is refused.

    Example:

      embtool inject bert_x.safetensors --model ./bert-base-uncased -o ./bert-x
    """
    from embtool.commands._progress import say
    from embtool.formats.inject import inject as run
    from embtool.tables.filling import check_method

    check_method(missing)
    done = run(
        read_table(table, allow_nonfinite), model, out, missing=missing, seed=seed, tokenizer=tokenizer
    )
    say(
        f"inject: {done.tensor} ({done.rows} × {done.dim}, {done.file}) ← {done.coverage.found} table rows; "
        f"{done.coverage.missing} filled by {missing} → {out}"
    )
