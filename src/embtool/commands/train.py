"""embtool train: the paper's transformer on a task, with embeddings from tables (or Xavier).

Its options are TrainConfig's fields (``commands/_options``): defined once, in training/config.py.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from embtool.commands._common import info
from embtool.commands._options import with_train_options


def register(app: typer.Typer) -> None:
    app.command("train")(train)


@with_train_options(optional=False, exclude=frozenset({"resume"}))
def train(
    task: Optional[str] = typer.Argument(
        None, help="multi30k, iwslt2017 (de→en), sst2, mnli, or files (with --src/--tgt).", metavar="[TASK]"
    ),
    resume: Optional[str] = typer.Option(
        None,
        "--resume",
        help="Continue this run folder from its last completed epoch (its settings are kept).",
        metavar="RUN_DIR",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print test.json on stdout at the end."),
    settings: dict[str, Any] | None = None,
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

      embtool train multi30k --emb w2v64.safetensors --input-dim 64 --d-model 128 --norm admin
    """
    from embtool.commands._progress import TrainingProgress
    from embtool.errors import UsageError, WorkFailure
    from embtool.training import TrainConfig, resume_config
    from embtool.training import train as run_training

    settings = dict(settings or {})
    if resume:
        cfg = resume_config(resume)
    else:
        if task is None:
            if not settings.get("src"):
                raise UsageError("give a TASK (multi30k, iwslt2017, sst2, mnli, files) or --resume RUN_DIR")
            task = "files"
        cfg = TrainConfig(task=task, **settings)
    reporter = TrainingProgress(cfg)
    try:
        with reporter:
            result = run_training(cfg, progress=reporter)
    except KeyboardInterrupt:
        if reporter.run_dir:
            info(f"stopped; continue with: embtool train --resume {reporter.run_dir}")
        raise
    if as_json:
        typer.echo(json.dumps(result.test, indent=2))
    if result.test.get("status") == "diverged":
        t = result.test
        raise WorkFailure(
            f"training diverged at epoch {t['epoch']}, step {t['step']} (loss {t['loss']}); "
            f"{result.path} is marked diverged in test.json"
        )
    info(result.summary())
