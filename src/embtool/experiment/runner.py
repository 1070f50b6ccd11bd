"""One experiment of the paper (a box of its Table 1): every initialisation × every seed, then the report.

From one pretrained table (or one per side) it builds the variant tables of §3 (``embtool.experiment.variants``:
xavier, pretrained, standardized, shuffled, xavier_like), then trains each with `embtool.training.train` for each seed into ``OUT/runs/<variant>/s<seed>``,
and for each point of ``--grid NAME=V1,V2`` axes (any TrainConfig field) into
``OUT/runs/<variant>/<name>=<v>,…/s<seed>``.
A run whose folder holds ``test.json`` is skipped and an interrupted one is resumed, so running the
same command again finishes an interrupted grid without redoing work. ``OUT/experiment.json``
records the grid; a later call with other inputs or settings is refused rather than mixed in.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embtool._version import __version__
from embtool.core.errors import BadInput, EmbtoolError, WorkFailure
from embtool.experiment import variants
from embtool.experiment.gridaxes import GRID_FIELDS, paper_seeds, parse_grid, parse_seeds, point_label
from embtool.experiment.gridresources import Resources
from embtool.experiment.variants import RANDOM_VARIANTS, VARIANTS, parse_variants, variant_table

GRID_FILE = "experiment.json"
REPORT_MD, REPORT_PNG, REPORT_CSV = "report.md", "curves.png", "table1.csv"

Event = Callable[[str, dict[str, Any]], None]


@dataclass
class PlannedRun:
    variant: str
    seed: int
    out: Path  # the run folder
    tables: dict[str, Path]  # TrainConfig field ("emb" or "src_emb"/"tgt_emb") → variant table file
    state: str = "todo"  # "done" (test.json), "resume" (config.json, no test.json) or "todo"
    point: dict[str, Any] = field(default_factory=dict)  # this run's values of the --grid axes


@dataclass
class Grid:
    task: str
    out: Path
    inputs: dict[str, Path]  # "emb", or "src_emb" and/or "tgt_emb" → the pretrained table
    variants: list[str]
    seeds: list[int]
    settings: dict[str, Any] = field(default_factory=dict)  # other TrainConfig fields
    axes: dict[str, list[Any]] = field(default_factory=dict)  # --grid NAME=V1,V2: field → values
    runs: list[PlannedRun] = field(default_factory=list)

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the axes' values ([{}] without axes), in the order given."""
        names = list(self.axes)
        return [dict(zip(names, values)) for values in itertools.product(*self.axes.values())]

    def todo(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.state != "done"]


def _side_label(key: str) -> str:
    return {"emb": "emb", "src_emb": "src", "tgt_emb": "tgt"}[key]


def table_path(grid: Grid, key: str, variant: str, seed: int) -> Path:
    """Where the variant table for one side lives (the input itself for ``pretrained``)."""
    if variant == "pretrained":
        return grid.inputs[key]
    stem = f"{_side_label(key)}.{variant}"
    if variant in RANDOM_VARIANTS:
        stem += f".s{seed}"
    return grid.out / "tables" / f"{stem}.safetensors"


def plan(
    task: str,
    inputs: Mapping[str, str | os.PathLike[str]],
    out: str | os.PathLike[str],
    variants: Sequence[str] = VARIANTS,
    seeds: Sequence[int] | None = None,
    settings: dict[str, Any] | None = None,
    axes: dict[str, list[Any]] | None = None,
) -> Grid:
    """The runs of the grid and the state of each; checks the inputs, writes nothing. ``seeds``:
    None for the paper's count for the task (``gridaxes.paper_seeds``)."""
    from embtool.tables.table import read_metadata

    given = {k: Path(v) for k, v in inputs.items() if v}
    if not given:
        raise BadInput("give the pretrained table: --emb TABLE, or --src-emb/--tgt-emb")
    if "emb" in given and len(given) > 1:
        raise BadInput("give --emb (both sides) or --src-emb/--tgt-emb, not both")
    for key, path in given.items():
        if not path.is_file():
            raise BadInput(f"--{key.replace('_', '-')} {path}: no such table file")
        if "embtool.format" not in read_metadata(path):
            raise BadInput(
                f"--{key.replace('_', '-')} {path}: not an embtool table; make one with `embtool extract`"
            )
    bad = sorted(set(settings or {}) & GRID_FIELDS)
    if bad:
        raise BadInput(f"the grid sets {', '.join(bad)} itself; leave it out of the training settings")
    both = sorted(set(settings or {}) & set(axes or {}))
    if both:
        raise BadInput(f"{', '.join(both)}: give a setting once, as an option or as a --grid axis")
    grid = Grid(
        task=task,
        out=Path(out),
        inputs=given,
        variants=list(variants),
        seeds=list(seeds) if seeds is not None else paper_seeds(task),
        settings=dict(settings or {}),
        axes=dict(axes or {}),
    )
    for variant in grid.variants:
        for point in grid.points():
            for seed in grid.seeds:
                folder = grid.out / "runs" / variant
                if point:
                    folder = folder / point_label(point)
                run_dir = folder / f"s{seed}"
                tables = {key: table_path(grid, key, variant, seed) for key in given}
                grid.runs.append(PlannedRun(variant, seed, run_dir, tables, _state(run_dir), point))
    return grid


def _state(run_dir: Path) -> str:
    from embtool.training.runfolder import RunFolder

    return RunFolder(run_dir).state


def train_config(grid: Grid, run: PlannedRun) -> Any:
    """The TrainConfig of one run: the user's settings and grid point, plus the grid's task, seed,
    folder and tables (TrainConfig checks every value)."""
    from embtool.training.config import TrainConfig

    values: dict[str, Any] = {**grid.settings, **run.point, "task": grid.task, "seed": run.seed}
    values.update({"out": str(run.out), "resume": True})
    values.update({key: str(path) for key, path in run.tables.items()})
    values.setdefault("standardize", variants.variant_standardize(run.variant, list(grid.inputs.values())))
    # every variant in the pretrained table's Table 5 column (a Xavier table's source names none)
    values.setdefault("family", variants.input_family(next(iter(grid.inputs.values())), grid.task))
    return TrainConfig.from_dict(values, origin="training settings")


def build_tables(
    grid: Grid,
    runs: Sequence[PlannedRun] | None = None,
    event: Event | None = None,
    loaded: dict[str, Any] | None = None,
) -> list[Path]:
    """Write the variant tables the given runs (default: those not done) need and lack (``loaded``:
    the input tables, when the caller has read them)."""
    from embtool.tables.table import load, save

    event = event or (lambda name, info: None)
    (grid.out / "tables").mkdir(parents=True, exist_ok=True)
    loaded = dict(loaded or {})
    written: list[Path] = []
    for run in grid.todo() if runs is None else runs:
        for offset, (key, path) in enumerate(sorted(run.tables.items())):
            if path.exists():
                continue
            if key not in loaded:
                loaded[key] = load(grid.inputs[key])
            table = variant_table(loaded[key], run.variant, run.seed, side_offset=1000 * offset)
            save(table, path)
            written.append(path)
            event("table", {"path": str(path), "variant": run.variant, "seed": run.seed})
    return written


def grid_record(grid: Grid) -> dict[str, Any]:
    from embtool.core.atomic import sha256_file

    return {
        "embtool": __version__,
        "task": grid.task,
        "inputs": {k: {"path": str(p.resolve()), "sha256": sha256_file(p)} for k, p in grid.inputs.items()},
        "settings": grid.settings,
        "grid": grid.axes,
        "variants": grid.variants,
        "seeds": grid.seeds,
    }


def check_record(grid: Grid) -> dict[str, Any]:
    """The grid's record; refuses a folder that holds a grid with other inputs or settings."""
    record = grid_record(grid)
    path = grid.out / GRID_FILE
    if not path.is_file():
        return record
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: not readable JSON ({e}); remove it or give another --out") from None
    differ = []
    if old.get("task") != record["task"]:
        differ.append("task")
    if {k: v.get("sha256") for k, v in (old.get("inputs") or {}).items()} != {
        k: v["sha256"] for k, v in record["inputs"].items()
    }:
        differ.append("input table(s)")
    from embtool.training.config import fields_with_role

    free = fields_with_role("env")  # where and how runs execute may change between calls
    a = {k: v for k, v in (old.get("settings") or {}).items() if k not in free}
    b = {k: v for k, v in record["settings"].items() if k not in free}
    differ += sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if (old.get("grid") or {}) != record["grid"]:
        differ.append("--grid axes")
    if differ:
        raise BadInput(
            f"{grid.out} holds a grid with another {', '.join(differ)}; resume it with the same "
            "settings, or give another --out"
        )
    record["variants"] = list(dict.fromkeys([*old.get("variants", []), *grid.variants]))
    record["seeds"] = list(dict.fromkeys([*old.get("seeds", []), *grid.seeds]))
    return record


def check(grid: Grid) -> tuple[dict[str, Any], dict[int, Any]]:
    """Check the grid against its folder and every run's training settings, before any work.

    Returns the grid's record and the TrainConfig of each run not done (keyed by ``id(run)``).
    """
    record = check_record(grid)
    configs = {id(r): train_config(grid, r) for r in grid.todo()}
    from embtool.training.spec import RunSpec

    inputs = {key: str(path) for key, path in grid.inputs.items()}  # the variants keep the input's D
    for cfg in configs.values():
        RunSpec.of(dataclasses.replace(cfg, **inputs))  # what `train` resolves and checks first
    return record, configs


def start_grid(grid: Grid, event: Event | None = None) -> dict[int, Any]:
    """Check the grid, write its record and the missing variant tables; return the TrainConfig of
    each run not done (by ``id(run)``). What every way of running a grid does first."""
    from embtool.core import atomic
    from embtool.tables.table import load

    record, configs = check(grid)
    # every input read whole (values checked) before the record names it: a broken input fails here
    # and leaves no record that would refuse the same command once the input is repaired
    loaded = {key: load(path) for key, path in grid.inputs.items()} if grid.todo() else {}
    grid.out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(grid.out / GRID_FILE, json.dumps(record, indent=2) + "\n")
    build_tables(grid, event=event, loaded=loaded)
    return configs


def run_grid(
    grid: Grid,
    event: Event | None = None,
    train: Callable[..., Any] | None = None,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[tuple[PlannedRun, str]]:
    """Build the missing tables and train every run not done, one after another in this process;
    return the failed runs and why (``run_experiment(executor="inline")`` without the report).

    ``event(name, info)`` hears "table", "skip", "start", "done" and "failed".
    ``progress`` is passed to `embtool.training.train`. A run that fails while working is
    recorded and the grid goes on; bad input stops it (it would fail every run). A run another
    process trains (``gridjobs.in_use``) is left to it ("busy").
    """
    configs = start_grid(grid, event)
    return _run_inline(grid, configs, event, train, progress)


def _run_inline(
    grid: Grid,
    configs: dict[int, Any],
    event: Event | None = None,
    train: Callable[..., Any] | None = None,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[tuple[PlannedRun, str]]:
    from embtool.experiment.gridjobs import in_use

    event = event or (lambda name, info: None)
    if train is None:
        from embtool.training import train as train_fn

        train = train_fn
    failures: list[tuple[PlannedRun, str]] = []
    total = len(grid.runs)
    for i, run in enumerate(grid.runs, start=1):
        info = {
            "index": i,
            "total": total,
            "variant": run.variant,
            "seed": run.seed,
            "out": str(run.out),
            "point": point_label(run.point),
        }
        if _state(run.out) == "done":
            event("skip", info)
            continue
        if in_use(run.out):  # another worker on this grid trains it
            event("busy", info)
            continue
        event("start", {**info, "resume": run.state == "resume"})
        try:
            train(configs[id(run)], progress) if progress else train(configs[id(run)])
        except BadInput:
            raise
        except (EmbtoolError, RuntimeError, ValueError, OSError) as e:
            failures.append((run, f"{type(e).__name__}: {e}"))
            event("failed", {**info, "error": str(e)})
            continue
        run.state = "done"
        event("done", info)
    return failures


def write_report(grid: Grid) -> dict[str, Path]:
    """``OUT/report.md``, ``OUT/curves.png`` and ``OUT/table1.csv`` for the grid's runs."""
    from embtool.core import atomic
    from embtool.experiment.report.cells import build_report
    from embtool.experiment.report.plot import plot_curves
    from embtool.experiment.report.render import markdown, to_csv

    rep = build_report([grid.out / "runs"])
    paths = {"markdown": grid.out / REPORT_MD, "csv": grid.out / REPORT_CSV}
    atomic.write_text(paths["markdown"], markdown(rep, title=f"embtool experiment: {grid.task}"))
    atomic.write_text(paths["csv"], to_csv(rep))
    if rep.cells:
        plot_curves(rep, grid.out / REPORT_PNG)
        paths["plot"] = grid.out / REPORT_PNG
    return paths


def require_runs(grid: Grid) -> None:
    """Raise when no run of the grid has finished (nothing to report)."""
    if not any(_state(r.out) == "done" for r in grid.runs):
        raise WorkFailure(f"no run of the grid in {grid.out} has finished; nothing to report")


EXECUTORS = ("inline", "pool", "submitit")


def run_experiment(
    task: str,
    inputs: Mapping[str, str | os.PathLike[str]],
    out: str | os.PathLike[str],
    variants: Sequence[str] = VARIANTS,
    seeds: Sequence[int] | None = None,
    settings: dict[str, Any] | None = None,
    axes: dict[str, list[Any]] | None = None,
    *,
    executor: str = "inline",
    resources: Resources | None = None,
    event: Event | None = None,
    train: Callable[..., Any] | None = None,
) -> tuple[dict[str, Path], list[tuple[PlannedRun, str]]]:
    """`embtool experiment` as one call: plan, build the tables, train every run not done, report.

    ``inputs``: {"emb": path} or {"src_emb": …, "tgt_emb": …}; ``settings``: TrainConfig fields for
    every run; ``axes``: {field: [values]} to vary (``--grid``); ``seeds``: None for the paper's count
    for the task (4 Multi30k and IWSLT2017, 5 SST-2, 3 MNLI). ``executor``: "inline" (one run after
    another in this process; ``train(cfg)`` trains one, `embtool.training.train` by default), "pool"
    (``resources.jobs`` worker processes at once on this machine, each slot on its GPUs:
    ``gridjobs.run_pool``) or "submitit" (a job array on ``resources.cluster``: ``gridjobs.run_submitit``).
    ``event(name, info)`` hears each run's "table", "skip", "start", "busy", "submitted", "done" and
    "failed". Returns the report's files and the runs that failed (with why); raises WorkFailure when
    every run failed or none has finished, BadInput (before any work) for resources the machine lacks.
    """
    from embtool.experiment import gridjobs

    if executor not in EXECUTORS:
        raise BadInput(f"invalid executor {executor!r}; valid choices: {', '.join(EXECUTORS)}")
    resources = resources or Resources()
    if resources.jobs < 1:
        raise BadInput(f"--jobs must be at least 1, got {resources.jobs}")
    grid = plan(task, inputs, out, variants, seeds, settings, axes)
    slots = resources.slots(str(grid.settings.get("device", "auto"))) if executor == "pool" else []
    resources.slurm.minutes()  # a bad time limit stops it before any work
    configs = start_grid(grid, event)  # checked, tables built: then the runs
    for run in grid.runs:
        if id(run) not in configs and event is not None and executor != "inline":
            event("skip", gridjobs.run_info(grid, run, 0, ()))
    if executor == "inline":
        failures = _run_inline(grid, configs, event, train)
    elif executor == "pool":
        ranks = resources.slurm.ranks()
        failures = gridjobs.run_pool(grid, configs, resources.workers(slots), slots, event, ranks)
    else:
        failures = gridjobs.run_submitit(grid, configs, resources.cluster, resources.slurm, event)
    if failures and not any(r.state == "done" for r in grid.runs):
        listed = "; ".join(f"{r.variant} seed {r.seed} ({why})" for r, why in failures)
        raise WorkFailure(f"every run failed: {listed}")
    require_runs(grid)
    return write_report(grid), failures


__all__ = [
    "EXECUTORS", "GRID_FIELDS", "RANDOM_VARIANTS", "VARIANTS", "Grid", "PlannedRun", "Resources", "build_tables",
    "check", "parse_grid",
    "paper_seeds", "parse_seeds", "parse_variants", "plan", "run_experiment", "run_grid", "variant_table",
    "write_report",
]  # fmt: skip
