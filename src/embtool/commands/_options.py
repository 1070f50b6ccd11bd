"""The train options of `train` and `experiment`, made from TrainConfig's fields (one place).

``with_train_options`` gives a command one option per TrainConfig field: the same name
(``batch_size`` → ``--batch-size``; a boolean that defaults to True is ``--x/--no-x``), the field's
help text and panel. `train` takes the fields' defaults; `experiment` takes every option as
"not given" (None) so that its grid records only what the user set. The command receives the given
values as one dict, ``settings``, of field names.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import Field
from typing import Any, Optional

import typer

from embtool.training.checks import option_name
from embtool.training.config import config_fields, field_default, field_type


def _declaration(f: Field[Any], base: type) -> list[str]:
    name = option_name(f.name)
    if base is bool:
        return [f"{name}/--no-{name[2:]}"]
    return [name, "-o"] if f.name == "out" else [name]


def _parameter(f: Field[Any], optional: bool, panel_prefix: str) -> inspect.Parameter:
    base = field_type(f.name)
    default = None if optional else field_default(f)
    help_text = f.metadata["help"]
    if optional and field_default(f) is not None:
        help_text += f" (train's default: {_shown(field_default(f), base, f.name)})"
    info = typer.Option(
        default,
        *_declaration(f, base),
        help=help_text,
        metavar="" if base is bool else f.metadata.get("metavar"),  # a flag takes no value
        rich_help_panel=panel_prefix + f.metadata["panel"],
        show_default=not optional,
    )
    annotation = Optional[base] if optional or default is None else base  # noqa: UP045 - typer reads it
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def _shown(value: Any, base: type, name: str) -> str:
    if base is bool:
        return option_name(name) if value else f"--no-{option_name(name)[2:]}"
    return "none" if value is None else str(value)


_CTX = "_typer_context"  # the click context, to tell given options from defaults


def with_train_options(
    *, optional: bool, exclude: frozenset[str] = frozenset(), panel_prefix: str = ""
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add an option per TrainConfig field (but ``exclude``) to a typer command.

    The command's own parameters come first; it must take ``settings: dict[str, Any]``, the given
    values by field name (with ``optional``: only the options the user gave). A command that also
    takes ``given`` receives the names of the options given on the command line.
    """

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command, eval_str=True)
        own_params = [p for name, p in own.parameters.items() if name != "settings"]
        taken = {p.name for p in own_params}
        generated = [
            _parameter(f, optional, panel_prefix)
            for f in config_fields()
            if f.name not in exclude and f.name not in taken
        ]
        names = {p.name for p in generated}

        wants_given = "given" in own.parameters

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            ctx = kwargs.pop(_CTX)
            settings = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            if optional:
                settings = {k: v for k, v in settings.items() if v is not None}
            if wants_given:  # the options on the command line, not defaults (`train --resume` checks them)
                source = ctx.get_parameter_source
                kwargs["given"] = frozenset(
                    k for k in settings if getattr(source(k), "name", "") == "COMMANDLINE"
                )
            return command(**kwargs, settings=settings)

        own_params = [p for p in own_params if p.name != "given"]
        context = inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        params = [*own_params, *generated, context]
        run.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        del run.__wrapped__  # typer must read the new signature, not the command's
        return run

    return wrap
