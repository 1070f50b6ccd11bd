"""embtool experiment: one box of the paper's Table 1 — every initialisation × every seed, then the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional  # typer reads the annotations

import typer

from embtool.commands._common import info
from embtool.commands._options import TrainOptions, train_settings
from embtool.experiment.gridresources import CPUS_PER_GPU

LAUNCHERS = ("none", "local", "slurm")  # this machine; submitit's local executor; a Slurm job array
PANEL = "Where the runs go"
# train options the grid sets itself: one seed per run from --seeds; every run is resumed when found
GRID_SETS = frozenset({"seed", "resume"})


class ExperimentCommand(TrainOptions):
    optional = True  # the grid records only the settings given
    exclude = GRID_SETS
    panel_prefix = "Training: "
    not_in_file = frozenset({"dry_run"})


def register(app: typer.Typer) -> None:
    app.command("experiment", cls=ExperimentCommand)(experiment)


def experiment(
    ctx: typer.Context,
    task: str = typer.Argument(
        ..., help="multi30k, iwslt2017, sst2, mnli, or files (with --src/--tgt).", metavar="TASK"
    ),
    emb: Optional[str] = typer.Option(
        None, "--emb", help="The pretrained table (both sides).", metavar="TABLE"
    ),
    src_emb: Optional[str] = typer.Option(
        None, "--src-emb", help="The pretrained table of the encoder side.", metavar="TABLE"
    ),
    tgt_emb: Optional[str] = typer.Option(
        None, "--tgt-emb", help="The pretrained table of the decoder side.", metavar="TABLE"
    ),
    seeds: Optional[str] = typer.Option(
        None,
        "--seeds",
        help="How many seeds (3 → 1,2,3), or a list (1,5,7); default: the paper's count for the task "
        "(4 multi30k and iwslt2017, 5 sst2, 3 mnli).",
    ),
    variants: str = typer.Option(
        "xavier,pretrained,standardized,shuffled,xavier_like",
        "--variants",
        help="Which initialisations: xavier, pretrained, standardized (Eq. 1), shuffled, xavier_like (Eq. 4).",
    ),
    grid: List[str] = typer.Option(
        [],
        "--grid",
        help="Vary any training setting: NAME=V1,V2 (repeatable; the runs are every combination), "
        "e.g. --grid layers=3,6 --grid lr=1e-4,2e-4.",
        metavar="NAME=V1,V2",
    ),
    out: Optional[str] = typer.Option(
        None, "-o", "--out", help="Grid folder (default: experiments/TASK-TABLE)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the runs and their state; build and train nothing."
    ),
    jobs: int = typer.Option(
        1,
        "--jobs",
        min=1,
        help="Runs at once on this machine, each in its own process.",
        rich_help_panel=PANEL,
    ),
    devices: Optional[str] = typer.Option(
        None,
        "--devices",
        help="GPU ids for the workers, one run per GPU or per --gpus-per-run GPUs (CUDA_VISIBLE_DEVICES); "
        "--jobs defaults to one worker each. Default for runs on CUDA: every visible GPU.",
        metavar="0,1,…",
        rich_help_panel=PANEL,
    ),
    launcher: str = typer.Option(
        "none",
        "--launcher",
        help="none (this process, or --jobs workers), slurm (a submitit job array), local (submitit's local executor).",
        rich_help_panel=PANEL,
    ),
    partition: Optional[str] = typer.Option(
        None, "--partition", help="--launcher slurm: the partition.", rich_help_panel=PANEL
    ),
    gpus_per_run: int = typer.Option(
        1,
        "--gpus-per-run",
        min=0,
        help="GPUs per run: a run given N > 1 trains on N ranks (DDP, as train --nproc N); "
        "--jobs workers take N GPUs each, --launcher slurm asks for N per task.",
        rich_help_panel=PANEL,
    ),
    cpus_per_run: int = typer.Option(
        0,
        "--cpus-per-run",
        min=0,
        help=f"--launcher slurm: CPUs per task (0: {CPUS_PER_GPU} per GPU).",
        rich_help_panel=PANEL,
    ),
    time: str = typer.Option(
        "12:00:00", "--time", help="--launcher slurm: time limit per run (HH:MM:SS).", rich_help_panel=PANEL
    ),
) -> None:
    """Build the variant tables of one pretrained table, train each for each seed, and write the report.

    Variants: xavier (§3.1), pretrained (the table), standardized (Eq. 1, Pre-trained_Xavier), shuffled (rows and columns permuted), xavier_like (Eq. 4, Xavier_Pre-trained). Every option of `embtool train` is accepted and passed to each run (--seeds replaces --seed; the grid resumes its runs itself). Runs go to OUT/runs/VARIANT/sSEED (OUT/runs/VARIANT/NAME=V,…/sSEED with --grid); a run already complete is skipped and an interrupted one resumed, so the same command finishes an interrupted grid. OUT/report.md, OUT/curves.png and OUT/table1.csv hold the report.

    Example:

      embtool experiment multi30k --emb w2v.safetensors --seeds 3 --epochs 10 --device cuda -o grid/

      embtool experiment multi30k --emb w2v.safetensors --grid layers=3,6 --dry-run

      embtool experiment multi30k --emb w2v.safetensors --devices 0,1,2,3 -o grid/

      embtool experiment iwslt2017 --emb mt5.safetensors --launcher slurm --partition gpu --time 12:00:00
    """
    from embtool.core.errors import UsageError, WorkFailure
    from embtool.experiment import runner as lib
    from embtool.experiment.gridresources import Resources, Slurm, parse_devices

    settings = dict(train_settings(ctx).values)
    for key in ("src", "tgt", "val_src", "val_tgt", "test_src", "test_tgt", "data_dir"):
        if key in settings:  # run folders may be resumed from elsewhere: keep paths absolute
            settings[key] = str(Path(settings[key]).resolve())
    table = emb or src_emb or tgt_emb
    folder = out or str(Path("experiments") / f"{task}-{Path(table).name.split('.')[0] if table else 'none'}")
    inputs = {k: v for k, v in {"emb": emb, "src_emb": src_emb, "tgt_emb": tgt_emb}.items() if v}
    runs = (
        task,
        inputs,
        folder,
        lib.parse_variants(variants),
        lib.parse_seeds(seeds) if seeds is not None else None,  # None: the task's paper count
        settings,
        lib.parse_grid(grid),
    )
    if dry_run:
        plan = lib.plan(*runs)
        lib.check(plan)  # the same checks as a real run: settings, and the folder's earlier grid
        _print_plan(plan)
        return
    if launcher not in LAUNCHERS:
        raise UsageError(f"invalid --launcher {launcher!r}; valid choices: {list(LAUNCHERS)}")
    resources = Resources(
        jobs, parse_devices(devices), Slurm(partition, gpus_per_run, time, cpus_per_run), cluster=launcher
    )
    if launcher != "none":
        executor = "submitit"
    else:  # --jobs, --devices or a run on several GPUs: worker processes, each on its slot's GPUs
        executor = "pool" if jobs > 1 or resources.devices or gpus_per_run > 1 else "inline"
    try:
        paths, failures = lib.run_experiment(
            *runs, executor=executor, resources=resources, event=_event, train=_train_one
        )
    except KeyboardInterrupt:
        info("stopped; run the same command again to resume the grid (complete runs are kept)")
        raise
    typer.echo(
        paths["markdown"].read_text(encoding="utf-8").split("\n## Notes")[0].split("\n## Runs")[0], nl=False
    )
    info(f"experiment: report → {', '.join(str(p) for p in paths.values())}")
    if failures:
        raise WorkFailure(
            f"{len(failures)} run(s) failed: {_listed(failures)}; run the same command again to retry them"
        )


def _listed(failures: list[Any]) -> str:
    return "; ".join(f"{r.variant} seed {r.seed} ({why})" for r, why in failures)


def _print_plan(grid: Any) -> None:
    states = [r.state for r in grid.runs]
    points = len(grid.points())
    axes = f" × {points} grid point(s)" if grid.axes else ""
    typer.echo(
        f"experiment {grid.task}: {len(grid.variants)} variant(s){axes} × {len(grid.seeds)} seed(s) = "
        f"{len(grid.runs)} run(s) in {grid.out} ({states.count('done')} done, "
        f"{states.count('resume')} to resume, {states.count('todo')} to run)"
    )
    typer.echo(f"{'state':<7} {'variant':<13} {'seed':>4}  {'run folder':<30} tables")
    for r in grid.runs:
        tables = " ".join(f"{k}={p}" for k, p in r.tables.items())
        typer.echo(f"{r.state:<7} {r.variant:<13} {r.seed:>4}  {str(r.out):<30} {tables}")


def _event(name: str, data: dict[str, Any]) -> None:
    if name == "table":
        info(f"table: {data['variant']} seed {data['seed']} → {data['path']}")
    elif name == "skip":
        info(f"[{data['index']}/{data['total']}] {data['variant']} seed {data['seed']}: complete, skipped")
    elif name == "start":
        verb = "resuming" if data.get("resume") else "training"
        point = f" {data['point']}" if data.get("point") else ""
        info(
            f"[{data['index']}/{data['total']}] {verb} {data['variant']}{point} seed {data['seed']} → {data['out']}"
        )
    elif name == "failed":
        info(f"[red]{data['variant']} seed {data['seed']} failed:[/red] {data['error']}")
    elif name == "busy":
        info(f"[{data['index']}/{data['total']}] {data['out']}: another worker holds it, left to it")
    elif name == "submitted":
        info(f"[{data['index']}/{data['total']}] submitted {data['out']} as job {data['job']}")


def _train_one(cfg: Any) -> Any:
    """One run with `train`'s progress display (a bar per epoch, a line per epoch)."""
    from embtool.commands._progress import TrainingProgress
    from embtool.training import train

    with TrainingProgress(cfg) as reporter:
        return train(cfg, progress=reporter)
