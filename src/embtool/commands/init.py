"""embtool init: the random baseline table."""

from __future__ import annotations

from enum import Enum

import typer

from embtool.commands._common import OUT_TABLE, SEED, check_output, info, write_table


class Method(str, Enum):
    xavier = "xavier"


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(
    method: Method = typer.Argument(
        ..., help="Initialisation: xavier (uniform, Glorot & Bengio).", metavar="METHOD"
    ),
    vocab: str = typer.Option(..., "--vocab", help="Vocabulary file (one token per line)."),
    dim: int = typer.Option(..., "--dim", min=1, help="Embedding dimension D."),
    seed: int = SEED,
    out: str = OUT_TABLE,
) -> None:
    """Make a table of random rows: Xavier-uniform U(−a, a), a = √(6/(N+D)).

    Example:

      embtool init xavier --vocab de.vocab --dim 512 --seed 1 -o xavier.safetensors
    """
    from embtool.tables.transforms import xavier
    from embtool.text.vocabfile import read_vocab

    check_output(out)
    table = xavier(read_vocab(vocab), dim, seed=seed)
    write_table(table, out)
    info(f"init {method.value}: {table.n} × {table.dim} → {out}")
