"""The train options of `train` and `experiment`, made from TrainConfig's fields (one place).

``TrainOptions`` is a command class (typer's ``cls=``) that gives a command one option per
TrainConfig field: the same name (``batch_size`` → ``--batch-size``; a boolean that defaults to True
is ``--x/--no-x``), the field's help text and panel; and ``--config FILE``, whose keys become the
options' defaults (click's ``default_map``), so that an option on the command line overrides it
(``commands/_configfile`` reads the file). `train` takes the fields' defaults; `experiment` takes
every option as "not given" (None) so that its grid records only what the user set. The command
reads the values with ``train_settings(ctx)``.
"""

from __future__ import annotations

from dataclasses import Field, dataclass
from typing import Any, ClassVar, Optional

import typer
from typer.main import _get_param  # typer's own conversion of a declared option (it has no public one)
from typer.models import ParamMeta

from embtool.commands._common import Command
from embtool.training.checks import option_name
from embtool.training.config import config_fields, field_default, field_type

SETTINGS = "embtool.train_settings"  # ctx.meta key of the TrainSettings the command reads


@dataclass(frozen=True)
class TrainSettings:
    values: dict[str, Any]  # by field name (``optional``: only the options given, here or in --config)
    given: frozenset[str]  # the options given on the command line (not defaults, not --config)
    config: str | None  # the --config file, if one was given


def train_settings(ctx: typer.Context) -> TrainSettings:
    """The train options a ``TrainOptions`` command was given."""
    return ctx.meta[SETTINGS]  # type: ignore[no-any-return]


def _declaration(f: Field[Any], base: type) -> list[str]:
    name = option_name(f.name)
    if base is bool:
        return [f"{name}/--no-{name[2:]}"]
    return [name, "-o"] if f.name == "out" else [name]


def _shown(value: Any, base: type, name: str) -> str:
    if base is bool:
        return option_name(name) if value else f"--no-{option_name(name)[2:]}"
    return "none" if value is None else str(value)


def _option(f: Field[Any], optional: bool, panel_prefix: str) -> Any:
    """The click option of one TrainConfig field, as typer makes it from a declared ``typer.Option``."""
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
    return _get_param(ParamMeta(name=f.name, default=info, annotation=annotation))


def _load_config(ctx: typer.Context, value: Optional[str]) -> Optional[str]:
    """--config FILE (eager: before every other option): its settings become the options' defaults."""
    if value and not ctx.resilient_parsing:
        from embtool.commands._configfile import read_settings

        command = ctx.command
        assert isinstance(command, TrainOptions)
        keys, dropped = command.file_keys(ctx), command.run_bookkeeping()
        ctx.default_map = {**(ctx.default_map or {}), **read_settings(value, keys, dropped, ctx)}
    return value


CONFIG_OPTION = typer.Option(
    None,
    "--config",
    help="Take the settings from a TOML, YAML or JSON file: keys are the options' names as config.json "
    "has them (batch_size = 64); a run folder's config.json repeats that run. Options given here "
    "override the file.",
    metavar="FILE",
    is_eager=True,
    callback=_load_config,
)


class TrainOptions(Command):
    """A command with an option per TrainConfig field (but ``exclude`` and its own parameters'
    names) and --config, after its own options. Subclasses say how (the class attributes)."""

    optional: ClassVar[bool] = False  # every option "not given" (None) by default, not the field's default
    exclude: ClassVar[frozenset[str]] = frozenset()
    panel_prefix: ClassVar[str] = ""
    not_in_file: ClassVar[frozenset[str]] = frozenset()  # own parameters a --config file may not set

    def __init__(self, *args: Any, params: list[Any], **kwargs: Any) -> None:
        taken = {p.name for p in params}
        fields = [f for f in config_fields() if f.name not in self.exclude and f.name not in taken]
        self.fields = tuple(f.name for f in fields)
        config = _get_param(ParamMeta(name="config", default=CONFIG_OPTION, annotation=Optional[str]))  # noqa: UP045
        generated = [_option(f, self.optional, self.panel_prefix) for f in fields]
        super().__init__(*args, params=[*params, config, *generated], **kwargs)

    def file_keys(self, ctx: typer.Context) -> dict[str, Any]:
        """The keys a --config file may hold: parameter name → its click parameter."""
        skip = {"config", "help", *self.not_in_file}
        return {p.name: p for p in self.get_params(ctx) if p.name and p.expose_value and p.name not in skip}

    def run_bookkeeping(self) -> frozenset[str]:
        """The keys of a run folder's config.json that are not this command's settings: what names
        the run itself (its folder, resume) and the fields the command leaves out."""
        from embtool.training.config import BOOKKEEPING, fields_on_resume

        return frozenset(fields_on_resume(BOOKKEEPING)) | self.exclude

    def invoke(self, ctx: Any) -> Any:
        values = {name: ctx.params.pop(name) for name in self.fields}
        if self.optional:
            values = {k: v for k, v in values.items() if v is not None}
        given = frozenset(
            k for k in values if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"
        )
        ctx.meta[SETTINGS] = TrainSettings(values, given, ctx.params.pop("config"))
        return super().invoke(ctx)
