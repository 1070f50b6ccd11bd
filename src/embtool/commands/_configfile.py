"""--config FILE: training settings from a TOML, YAML or JSON file, as defaults of the options.

Keys are the options' names as config.json has them (TrainConfig's field names: ``batch_size``, and
``task``, and a command's own options: experiment's ``variants``, ``seeds``, ``grid``). Three kinds
of file are read:
- settings written by hand: ``epochs = 10``, ``[grid] layers = [3, 6]``, ``seeds = [1, 2]``;
- a run folder's config.json: its ``train`` object (the run's resolved settings), without what names
  the run's own folder (``out``, ``resume``; experiment's ``seed``): ``train --config RUN/config.json
  -o NEW`` trains the same run again;
- a grid folder's experiment.json (experiment only): its task, input tables, settings, axes,
  variants and seeds.
A key no option has is one error naming the nearest option; a value of the wrong kind, one error
naming the file and the key. Nothing is read into the command before the whole file has passed.
"""

from __future__ import annotations

import difflib
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any

from embtool.core.errors import BadInput

SUFFIXES = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".json": "JSON"}


def read_settings(path: str, keys: dict[str, Any], dropped: frozenset[str], ctx: Any) -> dict[str, Any]:
    """The file's settings by parameter name, checked against ``keys`` (name → click parameter) and
    each value against its option; BadInput naming the file for anything else. ``dropped``: the keys
    of a run's config.json to leave out (what names that run: its folder, its seed in a grid)."""
    values = _flatten(path, read_file(path), dropped)
    settings: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in keys:
            raise BadInput(f"--config {path}: unknown setting {key!r}{_nearest(name, keys)}")
        settings[name] = _checked(path, name, _as_option_value(name, value), ctx)
    return settings


def read_file(path: str) -> dict[str, Any]:
    """The file's top-level table, by its suffix (.toml, .yaml/.yml, .json)."""
    kind = SUFFIXES.get(Path(path).suffix.lower())
    if kind is None:
        raise BadInput(f"--config {path}: give a .toml, .yaml/.yml or .json file")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"--config {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    try:
        value = _parse(kind, text)
    except ValueError as e:
        raise BadInput(f"--config {path}: not valid {kind} ({' '.join(str(e).split())})") from None
    if not isinstance(value, dict):
        raise BadInput(f"--config {path}: not a table of settings (key = value)")
    return value


def _parse(kind: str, text: str) -> Any:
    if kind == "JSON":
        return json.loads(text)
    if kind == "TOML":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]

        return tomllib.loads(text)
    try:
        import yaml
    except ImportError:
        raise BadInput("--config: a YAML file needs PyYAML: pip install pyyaml") from None
    try:
        return yaml.safe_load(text)  # plain data only: never constructs Python objects
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None


def _flatten(path: str, raw: dict[str, Any], run_keys: frozenset[str]) -> dict[str, Any]:
    """Settings by key from a file of settings, a run's config.json or a grid's experiment.json."""
    if isinstance(raw.get("train"), dict) and "embtool" in raw:  # a run folder's config.json
        from embtool.training.runfolder import migrate

        try:
            train = migrate(raw)["train"]  # a folder of any config_version, as --resume reads it
        except ValueError as e:
            raise BadInput(f"--config {path}: {e}") from None
        return {k: v for k, v in train.items() if k not in run_keys}
    if isinstance(raw.get("inputs"), dict) and isinstance(raw.get("settings"), dict) and "embtool" in raw:
        values: dict[str, Any] = {"task": raw.get("task")}  # a grid folder's experiment.json
        for side, table in raw["inputs"].items():
            values[side] = table.get("path") if isinstance(table, dict) else table
        values.update(raw["settings"])
        values.update(grid=raw.get("grid") or {}, variants=raw.get("variants"), seeds=raw.get("seeds"))
        return {k: v for k, v in values.items() if v is not None}
    return raw


def _as_option_value(name: str, value: Any) -> Any:
    """A list or table where the option takes text: variants/devices ``[a, b]`` → "a,b", seeds
    ``[1, 2]`` → "1,2," (a list, not a count), grid ``{layers = [3, 6]}`` → ["layers=3,6"]."""
    if name == "grid" and isinstance(value, dict):
        return [
            f"{k}={','.join(_text(v) for v in (vs if isinstance(vs, list) else [vs]))}"
            for k, vs in value.items()
        ]
    if name == "seeds" and isinstance(value, list):
        return ",".join(_text(v) for v in value) + ","
    if name == "seeds" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if name in ("variants", "devices") and isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return value


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _checked(path: str, name: str, value: Any, ctx: Any) -> Any:
    """``value`` if it fits option ``name``: a TrainConfig field's type, else the type the command's
    own parameter declares (int, str, bool, a list of str)."""
    from embtool.training.config import check_type, settable_fields

    where = f"--config {path}"
    if name in settable_fields():
        check_type(name, value, where)  # one line: the file, the key, what it takes
        return value
    hint = typing.get_type_hints(inspect.unwrap(ctx.command.callback))[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = args[0]
    if typing.get_origin(hint) is list:
        ok, expected = isinstance(value, list) and all(isinstance(v, str) for v in value), "a list of text"
    elif hint is int:
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif hint is bool:
        ok, expected = isinstance(value, bool), "true or false"
    else:
        ok, expected = isinstance(value, str), "text"
    if not ok:
        raise BadInput(f"{where}: {name} = {json.dumps(value)}: expected {expected}")
    return value


def _nearest(name: str, keys: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(keys), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(sorted(keys))}"
