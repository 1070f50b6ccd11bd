"""The typer app: registers the commands and turns errors into one line. No logic lives here.

A run registers only the command it runs (``embtool scale …`` never imports the trainer's command
modules): table commands are piped several at a time, so each one's start-up counts.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from typer._click.exceptions import ClickException, UsageError  # typer carries its own click

from embtool._version import __version__
from embtool.commands import _common
from embtool.core import atomic
from embtool.core.errors import EmbtoolError

APP_SETTINGS: dict[str, Any] = dict(
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
    cls=_common.Group,
)

# Modules of embtool.commands; order here is the order of `embtool --help`.
# sources, then transforms, then measures, then training and its reports
COMMANDS = (
    "vocab", "extract", "align",
    "init", "stats", "standardize", "shuffle", "scale", "posenc", "resize",
    "doctor", "export", "inject",
    "analogy", "similarity",
    "train", "experiment", "report",
)  # fmt: skip
_ROOT_FLAGS = ("--debug", "-q", "--quiet")  # root options that may come before the command


def _version(value: bool) -> None:
    if value:
        typer.echo(f"embtool {__version__}")
        raise typer.Exit()


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


def build_app(names: Sequence[str] = COMMANDS) -> typer.Typer:
    """The typer app with the commands ``names`` (all by default: help, completion, docs)."""
    app = _common.App(**APP_SETTINGS)
    app.callback()(root)
    for name in names:
        importlib.import_module(f"embtool.commands.{name}").register(app)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole app, for docgen and tests
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command(args: Sequence[str]) -> str | None:
    """The command ``args`` run, when it is one of COMMANDS (None for help, version, completion)."""
    if os.environ.get("_EMBTOOL_COMPLETE"):
        return None
    for arg in args:
        if arg not in _ROOT_FLAGS:
            return arg if arg in COMMANDS else None
    return None


_STOPPED: dict[int, tuple[str, int]] = {
    signal.SIGINT: ("interrupted", 130),
    signal.SIGTERM: ("terminated", 143),
}


@contextmanager
def _signals_stop() -> Iterator[list[int]]:
    """SIGINT and SIGTERM raise KeyboardInterrupt (so every writer cleans up on the way out); the
    list yielded names the signal that came. The old handlers are put back afterwards."""
    came: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        came.append(signum)
        raise KeyboardInterrupt

    old = {}
    try:
        for signum in _STOPPED:
            old[signum] = signal.signal(signum, stop)
    except ValueError:  # not the main thread: leave signals as they are
        pass
    try:
        yield came
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


def _stopped(came: list[int]) -> int:
    word, code = _STOPPED[came[0] if came else signal.SIGINT]
    print(f"embtool: {word}", file=sys.stderr)
    return code


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Our own warnings (``embtool.*``) as one line ``embtool: warning: …`` on stderr, without
    Python's file:line prefix and source line; the process's warning settings are put back after."""
    import warnings

    shown = warnings.showwarning

    def show(
        message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        if category.__module__.startswith("embtool") or filename == "embtool" or "/embtool/" in filename:
            print(f"embtool: warning: {_one_line(str(message))}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app; return the exit status (0 ok, 1 failure while working, 2 bad input or usage,
    130 interrupted, 143 terminated)."""
    with _signals_stop() as came, _warnings_as_lines(), atomic.command_inputs():
        try:
            return _main(argv, came)
        except KeyboardInterrupt:  # a signal, while working or while an error was being reported
            return _stopped(came)


def _main(argv: Sequence[str] | None, came: list[int]) -> int:
    _common.STATE.debug = os.environ.get("EMBTOOL_DEBUG", "") not in ("", "0")
    args = list(argv) if argv is not None else sys.argv[1:]
    command = _command(args)
    try:
        app = build_app((command,) if command else COMMANDS)
        rv = app(args=args, prog_name="embtool", standalone_mode=False)
        if came or rv == 130:  # typer returns 130 for a KeyboardInterrupt it caught
            return _stopped(came)
        return rv if isinstance(rv, int) else 0
    except EmbtoolError as e:
        if _common.STATE.debug:
            raise
        print(f"embtool: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except ClickException as e:
        hint = ""
        if isinstance(e, UsageError) and e.ctx is not None:
            hint = f" (see '{e.ctx.command_path} --help')"
        message = e.format_message()
        print(f"embtool: error: {_one_line(message)}{hint}", file=sys.stderr)
        return 2
    except typer.Abort:
        return _stopped(came)
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
