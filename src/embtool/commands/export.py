"""embtool export: a table as another trainer's embedding file (word2vec, GloVe, fairseq, OpenNMT-py, npy),
or as a folder for TensorBoard's embedding projector."""

from __future__ import annotations

from typing import Optional

import typer

from embtool.commands._common import ALLOW_NONFINITE, IN_TABLE, read_table
from embtool.formats.export import DEFAULT_DIGITS

FORMAT_HELP = (
    "word2vec (text, 'N D' header), word2vec-binary, glove (no header), fairseq (--encoder-embed-path: "
    "word2vec text, its header line is skipped), opennmt (GloVe text; the settings are printed), "
    "npy (+ a tokens file), tensorboard (a folder -o DIR for TensorBoard's embedding projector: tensors.tsv, "
    "metadata.tsv with the tokens as labels, projector_config.pbtxt)."
)


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    table: str = IN_TABLE,
    fmt: str = typer.Option(..., "--format", "-f", help=FORMAT_HELP, metavar="FORMAT"),
    out: str = typer.Option(
        "-", "-o", "--out", help="Output file, or - for stdout (tensorboard: a folder).", metavar="OUT"
    ),
    tokens: Optional[str] = typer.Option(
        None, "--tokens", help="npy only: the token file, one per line (default: OUT's stem + .tokens.txt)."
    ),
    space_as: Optional[str] = typer.Option(
        None,
        "--space-as",
        help="Replace whitespace inside tokens by this text (text formats cannot hold it; without this "
        "such a token is an error).",
    ),
    digits: int = typer.Option(
        DEFAULT_DIGITS,
        "--digits",
        help="Significant digits per value in text formats (9: the same float32 back).",
    ),
    allow_nonfinite: bool = ALLOW_NONFINITE,
) -> None:
    """Write a table as a word-vector file that other trainers and gensim read, or for TensorBoard's projector.

    Examples:

      embtool export glove_x.safetensors --format word2vec -o glove_x.vec

      embtool export glove_x.safetensors --format fairseq -o glove_x.fairseq.txt

      embtool standardize --to xavier < t5.safetensors | embtool export --format npy -o t5_x.npy

      embtool export glove_x.safetensors --format tensorboard -o projector/ && tensorboard --logdir projector/
    """
    from embtool.commands._progress import say
    from embtool.formats.export import check_format
    from embtool.formats.export import export as run

    check_format(fmt)  # before the table is read
    done = run(
        read_table(table, allow_nonfinite), fmt, out, tokens_out=tokens, space_as=space_as, digits=digits
    )
    names = " + ".join("<stdout>" if f == "-" else f for f in done.files)
    held = {"npy": "line breaks", "tensorboard": "tabs or line breaks"}.get(fmt, "whitespace")  # --space-as
    renamed = f", {done.renamed} token(s) with {held} replaced" if done.renamed else ""
    say(f"export: {done.rows} × {done.dim} as {fmt} → {names}{renamed}")
    for line in done.flags():
        say(line)
