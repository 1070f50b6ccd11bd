"""The typer app: registers the commands and turns errors into one line. No logic lives here."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from embtool._version import __version__
from embtool.commands import (
    _common,
    align,
    analogy,
    experiment,
    extract,
    init,
    posenc,
    report,
    scale,
    shuffle,
    similarity,
    standardize,
    stats,
    train,
    vocab,
)
from embtool.errors import EmbtoolError

# typer ≥ 0.20 vendors click; find its exception classes through the public names either way
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
_ClickUsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)

app = typer.Typer(
    name="embtool",
    help=(
        "Initialise transformer embeddings from pretrained tables (Kim et al., arXiv 2407.12514).\n\n"
        "Every command reads and writes one safetensors embedding table, so tables pipe:\n\n"
        "embtool vocab multi30k --side tgt --tokenizer spacy:en -o en.vocab\n"
        "embtool extract glove:glove.6B.300d.txt --vocab en.vocab | embtool standardize --to xavier > glove_x.safetensors\n"
        "embtool train multi30k --tgt-emb glove_x.safetensors --out runs/glove_x\n"
        "embtool report runs/"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)

# Order here is the order of `embtool --help`.
# sources, then transforms, then measures, then training and its reports
COMMANDS = (
    vocab, extract, align,
    init, stats, standardize, shuffle, scale, posenc,
    analogy, similarity,
    train, experiment, report,
)  # fmt: skip
for module in COMMANDS:
    module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"embtool {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress or summaries on stderr."),
) -> None:
    _common.STATE.debug = debug or _common.STATE.debug
    _common.STATE.quiet = quiet


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app; return the exit status (0 ok, 1 failure while working, 2 bad input or usage)."""
    _common.STATE.debug = os.environ.get("EMBTOOL_DEBUG", "") not in ("", "0")
    try:
        rv = app(args=list(argv) if argv is not None else None, prog_name="embtool", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except EmbtoolError as e:
        if _common.STATE.debug:
            raise
        print(f"embtool: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except _ClickException as e:
        hint = ""
        if isinstance(e, _ClickUsageError) and getattr(e, "ctx", None) is not None:
            hint = f" (see '{e.ctx.command_path} --help')"  # type: ignore[attr-defined]
        message = e.format_message()  # type: ignore[attr-defined]
        print(f"embtool: error: {_one_line(message)}{hint}", file=sys.stderr)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        print("embtool: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - the one place that turns crashes into a line
        if _common.STATE.debug:
            raise
        print(
            f"embtool: error: {type(e).__name__}: {_one_line(str(e))} (run with --debug for details)",
            file=sys.stderr,
        )
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
