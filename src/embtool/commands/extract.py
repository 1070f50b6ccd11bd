"""embtool extract: a vocabulary's rows out of a checkpoint's input embedding or a word-vector file."""

from __future__ import annotations

from typing import Optional

import typer

from embtool.commands._common import ALLOW_NONFINITE, OUT_TABLE, SEED, check_output, write_table

MISSING_HELP = (
    "Fill for tokens found nowhere: normal (random, the found rows' mean and σ), mean (their mean "
    "row), zero, xavier (U(−a, a), a=√(6/(N+D)))."
)


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)


def extract(
    source: str = typer.Argument(
        ...,
        help="An alias (bert, mbert, t5, mt5, xlmr), a Hugging Face id or checkpoint folder (hf: forces "
        "it), or a vector file: glove:PATH, word2vec:PATH, fasttext:PATH, or PATH (detected); "
        ".gz and .zip (ARCHIVE.zip#MEMBER) are read as they are.",
        metavar="SOURCE",
    ),
    vocab: str = typer.Option(..., "--vocab", help="Vocabulary file (one token per line)."),
    tensor: Optional[str] = typer.Option(
        None, "--tensor", help="Checkpoint tensor to read (full name or suffix); default: found by name."
    ),
    compose: str = typer.Option(
        "mean",
        "--compose",
        help="A word that is no piece of a sub-word model: mean of its pieces' rows, or none.",
    ),
    case_fallback: bool = typer.Option(
        True,
        "--case-fallback/--no-case-fallback",
        help="Try the lower-cased token when the exact one is absent.",
    ),
    missing: str = typer.Option("normal", "--missing", help=MISSING_HELP),
    seed: int = SEED,
    out: str = OUT_TABLE,
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Pull the rows for a vocabulary out of a pretrained source; report coverage on stderr.

    Only the input-embedding tensor is read (never the whole model), and only its needed rows.

    Examples:

      embtool extract mt5 --vocab vocab.txt -o mt5.safetensors

      embtool extract ./my-bert-checkpoint --vocab de.vocab --compose none -o bert.safetensors

      embtool extract glove:glove.6B.300d.txt --vocab en.vocab --missing zero -o glove.safetensors

      embtool extract glove:glove.840B.300d.zip --vocab en.vocab -o glove840.safetensors
    """
    from embtool.commands._progress import byte_progress, say
    from embtool.formats.sources import extract as run
    from embtool.text.vocabfile import read_vocab

    check_output(out)
    voc = read_vocab(vocab)
    with byte_progress(f"reading {source}") as progress:
        table, cov = run(source, voc, tensor=tensor, compose=compose, case_fallback=case_fallback,
                         missing=missing, seed=seed, progress=progress, allow_nonfinite=allow_nonfinite)  # fmt: skip
    write_table(table, out)
    say(f"extract {table.source}: {cov.line()}; {table.n} × {table.dim}, missing filled by {missing} → {out}")
