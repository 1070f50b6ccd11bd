"""embtool train: the paper's transformer on a task, with embeddings from tables (or Xavier).

Its options are TrainConfig's fields (``commands/_options``): defined once, in training/config.py.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from embtool.commands._common import info
from embtool.commands._options import TrainOptions, train_settings
from embtool.core import jsonout


class TrainCommand(TrainOptions):
    exclude = frozenset({"resume"})  # --resume RUN_DIR is train's own
    not_in_file = frozenset({"resume", "as_json", "dry_run"})


def register(app: typer.Typer) -> None:
    app.command("train", cls=TrainCommand)(train)


def train(
    ctx: typer.Context,
    task: Optional[str] = typer.Argument(
        None, help="multi30k, iwslt2017 (de→en), sst2, mnli, or files (with --src/--tgt).", metavar="[TASK]"
    ),
    resume: Optional[str] = typer.Option(
        None,
        "--resume",
        help="Continue this run folder from its last completed epoch (its settings are kept; "
        "--epochs (more), --device, --amp, --compile, --threads and --report-to may change).",
        metavar="RUN_DIR",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print test.json on stdout at the end (with --dry-run: the plan)."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Resolve every setting (Table 5 column, vocabularies, model), print them with the "
        "parameter counts, and train nothing.",
    ),
    nproc: int = typer.Option(
        1,
        "--nproc",
        help="Processes for one DistributedDataParallel run (one per GPU; gloo on CPU), started "
        "through torchrun's launcher: the same as `torchrun --nproc-per-node N -m embtool train …`.",
        metavar="N",
        min=1,
    ),
) -> None:
    """Train the paper's vanilla transformer and write a run folder.

    Translation (multi30k, iwslt2017, files) trains a post-LN encoder-decoder and reports
    sacrebleu BLEU on the test split; classification (sst2, mnli) an encoder with a pooled
    linear layer and its best validation accuracy. Every vocabulary token takes its row from
    the table by token string; tokens the table lacks are filled like `extract --missing`.
    The run folder holds config.json, metrics.jsonl (one line per epoch), best/last
    checkpoints, state.pt (for --resume), test.json and hyps.test.txt.
    Beyond the paper: --norm pre|admin (Admin's ω profiled before training), --input-dim and
    --output-dim (decoupled embeddings), --optimizer, --lr-schedule, --warmup; a run whose loss
    diverges stops, is marked "diverged" in test.json, and train exits 1.

    Examples:

      embtool train multi30k --data-dir ../shared/data --emb glove_x.safetensors -o runs/glove_x

      embtool train files --src train.de --tgt train.en --tokenizer whitespace --epochs 5

      embtool train --resume runs/glove_x

      embtool train multi30k --data-dir ../shared/data --device cuda --nproc 4 -o runs/ddp

      embtool train multi30k --emb w2v64.safetensors --input-dim 64 --d-model 128 --norm admin

      embtool train sst2 --emb bert.safetensors --dry-run
    """
    from embtool.commands._progress import TrainingProgress
    from embtool.core.errors import UsageError
    from embtool.training import TrainConfig
    from embtool.training import train as run_training
    from embtool.training.parallel import CONFIG_ENV, World, follow_launcher, launch, rank_config
    from embtool.training.runfolder import resume_with

    given = train_settings(ctx)
    settings = dict(given.values)
    if given.config and resume:
        raise UsageError("--config and --resume: a run continues with its own settings; give one of them")
    world = World.from_env()
    handed = rank_config()
    if handed is not None:  # started by a launcher (`train --nproc`'s torchrun, `experiment --jobs`)
        follow_launcher()  # with `experiment --jobs`: stop when the experiment ends
        cfg = TrainConfig.from_dict(handed, origin=f"${CONFIG_ENV}")
    elif resume:
        cfg, changed = resume_with(resume, {k: settings[k] for k in given.given})
        for note in changed:
            info(f"resume: {note}")
    else:
        if task is None:
            if not settings.get("src"):
                raise UsageError("give a TASK (multi30k, iwslt2017, sst2, mnli, files) or --resume RUN_DIR")
            task = "files"
        cfg = TrainConfig(task=task, **settings)
    if dry_run:
        from embtool.training.plan import plan

        _print_plan(plan(cfg), as_json)
        return
    if nproc > 1 and not world.distributed:
        from embtool.training.loop import default_out

        launch(nproc, cfg.to_dict(), _worker_args(as_json), str(cfg.out or default_out(cfg)))
        return
    if world.distributed:
        _run_rank(world, cfg, as_json)
        return
    reporter = TrainingProgress(cfg)
    try:
        with reporter:
            result = run_training(cfg, progress=reporter)
    except KeyboardInterrupt:
        if reporter.run_dir:
            info(f"stopped; continue with: embtool train --resume {reporter.run_dir}")
        raise
    _finish(result, as_json)


def _finish(result: Any, as_json: bool) -> None:
    """test.json on stdout (--json), a diverged run as a failure, else the one-line summary."""
    from embtool.core.errors import WorkFailure

    if as_json:
        typer.echo(jsonout.dumps(result.test, indent=2))
    if result.test.get("status") == "diverged":
        t = result.test
        raise WorkFailure(
            f"training diverged at epoch {t['epoch']}, step {t['step']} (loss {t['loss']}); "
            f"{result.path} is marked diverged in test.json"
        )
    info(result.summary())


def _print_plan(p: dict[str, Any], as_json: bool) -> None:
    """The plan of ``train --dry-run``: JSON on stdout, or aligned lines."""
    if as_json:
        typer.echo(jsonout.dumps(p, indent=2))
        return
    paper, model, train, vocab = p["paper"], p["model"], p["train"], p["vocab"]
    col = f"{p['task']} {paper['family']} (Table 5: {paper['params']})" if "family" in paper else "none"
    lines = [
        ("preset", paper["preset"]),
        ("Table 5 column", f"{col}; {paper['reason']}"),
        (
            "vocabulary",
            f"src {vocab['src_size']}" + (f", tgt {vocab['tgt_size']}" if vocab["tgt_size"] else ""),
        ),
        (
            "model",
            f"D {model['d_model']}, heads {model['n_heads']}, layers {model['n_layers']}, "
            f"FFN {model['d_ff']}, dropout {model['dropout']} (attention weights {model['attn_dropout']}, "
            f"inside the FFN {model['ffn_dropout']})",
        ),
        (
            "optimisation",
            f"epochs {train['epochs']}, batch {train['batch_size']}, lr {train['lr']:g}, "
            f"Adam β ({train['adam_beta1']}, {train['adam_beta2']}), ε {train['adam_eps']:g}",
        ),
        (
            "where and how",
            f"device {train['device']}, amp {train['amp']}, compile {'on' if train['compile'] else 'off'}, "
            f"threads {train['threads'] or 'default'}, report to {train['report_to']}",
        ),
    ]
    lines += [(f"parameters: {k.replace('_', ' ')}", f"{v:,}") for k, v in p["parameters"].items()]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key:<{width}}  {value}")


def _worker_args(as_json: bool) -> list[str]:
    """The arguments of each torchrun worker: `train` and how it shows its output. Its settings
    are the run's TrainConfig itself, which ``parallel.launch`` hands over (never options: a rank
    would take their defaults for changes to a resumed run)."""
    from embtool.commands._common import STATE

    flags = [*(["-q"] if STATE.quiet else []), *(["--debug"] if STATE.debug else [])]
    return [*flags, "train", *(["--json"] if as_json else [])]


def _run_rank(world: Any, cfg: Any, as_json: bool) -> None:
    """One rank of a torchrun group: rank 0 shows progress and the result; a rank's crash (often
    a lost peer: the rank that died is named by torchrun's launcher) is one line naming it."""
    from embtool.commands._progress import TrainingProgress
    from embtool.core.errors import EmbtoolError, WorkFailure
    from embtool.training import train as run_training

    try:
        if not world.main:
            run_training(cfg)
            return
        with TrainingProgress(cfg) as reporter:
            result = run_training(cfg, progress=reporter)
    except EmbtoolError:
        raise
    except Exception as e:  # noqa: BLE001 - one line per rank, not a traceback per rank
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise WorkFailure(f"rank {world.rank}: {type(e).__name__}: {first}") from e
    _finish(result, as_json)
