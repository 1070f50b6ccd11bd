"""A run watched live in TensorBoard and/or Weights & Biases (``--report-to``), through their own writers.

What is written mirrors the run folder, so a chart and metrics.jsonl never disagree:

- every ``epoch.SHOW_EVERY`` steps of an epoch (and at its last step): ``train/loss``, the mean
  training loss of the steps since the last point (from the running loss the loop reads on the host
  at those steps anyway: no extra device sync), ``train/lr`` and ``train/tokens_per_s``;
- every epoch: each figure of its metrics.jsonl line under its own key path (``epoch/val_loss``,
  ``epoch/val_bleu`` or ``epoch/val_acc``, ``emb/src/std``, ``emb/tgt/bands/rare/drift``,
  ``branch_ratio/enc/0`` …); a figure metrics.jsonl holds as null (NaN) is left out;
- the run's settings (config.json's ``train`` and ``model``) as hyper-parameters (TensorBoard's
  hparams, W&B's config), and at the end test.json's figures (``test/bleu`` …).

Every point sits at the run's optimizer step (``global_step``), so one x-axis serves all.
TensorBoard's event files go to ``RUN/tensorboard/``: ``tensorboard --logdir runs/`` shows a grid's
runs side by side. A resumed run writes on in the same folder, purging what a killed attempt wrote
after the last committed epoch (``purge_step``). W&B: one W&B run per embtool run, its id kept in
``RUN/tracking.json`` so a resumed run continues it (``resume="allow"``); its local files in
``RUN/wandb/``; project ``$WANDB_PROJECT`` (default "embtool"); group: the experiment's folder name
for a run of ``embtool experiment``; offline with ``WANDB_MODE=offline`` (``wandb sync RUN/wandb/…``
later). Only rank 0 of a torchrun group writes.

The packages are optional (``pip install 'embtool[tracking]'``); ``require`` says which one is missing
before a run starts. Nothing here imports torch, tensorboard or wandb until a run needs them.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from embtool.core import atomic
from embtool.core.errors import BadInput
from embtool.tasks.registry import TRANSLATION

if TYPE_CHECKING:
    from embtool.training.runfolder import RunFolder

BACKENDS = ("tensorboard", "wandb")
REPORT_TO_CHOICES = ("none", "tensorboard", "wandb", "tensorboard,wandb")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}  # backend → the package it needs
INSTALL = "pip install 'embtool[tracking]'"
TENSORBOARD_DIR = "tensorboard"  # RUN/tensorboard/: the event files
WANDB_DIR = "wandb"  # RUN/wandb/: what wandb.init(dir=RUN) writes locally
TRACKING = "tracking.json"  # RUN/tracking.json: {"wandb_id": …}, so a resumed run continues its W&B run
# experiment.runner.GRID_FILE: a run folder under one is a grid's run (training never imports experiment)
GRID_FILE = "experiment.json"
DEFAULT_PROJECT = "embtool"

Progress = Callable[[str, dict[str, Any]], None]


def parse_report_to(text: str) -> tuple[str, ...]:
    """``--report-to`` as backends in ``BACKENDS`` order: "none" → (), "wandb,tensorboard" → both."""
    parts = [p.strip() for p in text.split(",")]
    if text.strip() == "none":
        return ()
    if not all(p in BACKENDS for p in parts) or len(set(parts)) != len(parts):
        raise BadInput(f"invalid --report-to {text!r}; valid choices: {list(REPORT_TO_CHOICES)}")
    return tuple(b for b in BACKENDS if b in parts)


def require(report_to: str) -> None:
    """BadInput naming the package a backend of ``report_to`` needs and lacks (before a run starts)."""
    for backend in parse_report_to(report_to):
        try:
            importlib.import_module(PACKAGES[backend])
        except ImportError:
            raise BadInput(
                f"--report-to {backend}: the {PACKAGES[backend]} package is not installed; "
                f"{INSTALL} (or pip install {PACKAGES[backend]})"
            ) from None


# ----------------------------------------------------------------------------- what is written


def scalars(line: dict[str, Any], prefix: str = "epoch") -> dict[str, float]:
    """A metrics.jsonl line (or test.json) as ``{key path: value}``: top-level figures under
    ``prefix/``, nested ones under their own path (``emb/src/bands/rare/cos``; a list's items by
    index). Strings, booleans, ``epoch`` itself and values that are not finite are left out."""
    out: dict[str, float] = {}

    def walk(path: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{path}/{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{path}/{i}", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[path] = float(value)

    for key, value in line.items():
        if key == "epoch" and prefix == "epoch":
            continue
        walk(key if isinstance(value, (dict, list, tuple)) else f"{prefix}/{key}", value)
    return out


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """config.json's settings as flat hyper-parameters: the ``train`` fields by name, the model's as
    ``model.<field>``, and the run's own top-level facts (embtool, device, amp, world_size …)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, (str, int, float, bool)):
            flat[key] = value
    flat.update({f"model.{k}": v for k, v in config.get("model", {}).items() if _plain(v)})
    flat.update({k: v for k, v in config.get("train", {}).items() if _plain(v)})
    return flat


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def grid_of(run_dir: Path) -> tuple[str | None, str]:
    """(the experiment's name, the run's name in it) for a run folder inside an experiment's folder
    (one holding ``experiment.json``: ``OUT/runs/<variant>/…/s<seed>``); (None, folder name) otherwise."""
    path = run_dir.resolve()
    for parent in path.parents:
        if (parent / GRID_FILE).is_file():
            inner = path.relative_to(parent)
            if inner.parts and inner.parts[0] == "runs":
                inner = Path(*inner.parts[1:])
            return parent.name, inner.as_posix()
    return None, path.name


# ----------------------------------------------------------------------------- the writers


class Writer(Protocol):
    def config(self, hparams: dict[str, Any], config: dict[str, Any], metrics: list[str]) -> None: ...
    def scalars(self, values: dict[str, float], step: int) -> None: ...
    def result(self, test: dict[str, Any], step: int) -> None: ...
    def close(self, failed: bool) -> None: ...


class TensorBoardWriter:
    """``torch.utils.tensorboard.SummaryWriter`` on ``RUN/tensorboard/``; a resumed run purges the
    steps after ``step`` (what a killed attempt wrote past the last committed epoch)."""

    def __init__(self, run_dir: Path, step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=step + 1)

    def config(self, hparams: dict[str, Any], config: dict[str, Any], metrics: list[str]) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        file_writer = self.writer._get_file_writer()  # add_hparams would make a run folder per call
        for summary in hparams_summary(hparams, dict.fromkeys(metrics, 0.0)):
            file_writer.add_summary(summary)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def result(self, test: dict[str, Any], step: int) -> None:
        self.scalars(scalars(test, "test"), step)
        self.writer.flush()

    def close(self, failed: bool) -> None:
        self.writer.close()


class WandbWriter:
    """One W&B run per embtool run: the id from ``RUN/tracking.json`` (made on the first start), so
    a resumed run continues it; files in ``RUN/wandb/``. Every point carries ``global_step``, the
    x-axis of every chart (W&B's own ``_step`` just counts calls)."""

    def __init__(self, run_dir: Path) -> None:
        import wandb
        from wandb.sdk.lib.runid import generate_id

        created = [p for p in (run_dir / TRACKING, run_dir / WANDB_DIR) if not p.exists()]
        store = _read_tracking(run_dir)
        run_id = store.get("wandb_id") or generate_id()
        group, name = grid_of(run_dir)
        atomic.write_text(run_dir / TRACKING, json.dumps({**store, "wandb_id": run_id}, indent=2) + "\n")
        (run_dir / WANDB_DIR).mkdir(exist_ok=True)
        try:
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                id=run_id,
                resume="allow",
                dir=str(run_dir),
                group=group,
                name=name,
                settings=wandb.Settings(console="off"),  # the CLI's own output stays as it is
            )
        except Exception as e:  # no login (online), a bad $WANDB_* setting: nothing left behind
            for path in created:
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            raise BadInput(
                f"--report-to wandb: W&B did not start ({type(e).__name__}: {e}); `wandb login`, "
                "or WANDB_MODE=offline to log to the run folder"
            ) from None
        self.run.define_metric("global_step")
        self.run.define_metric("*", step_metric="global_step")

    def config(self, hparams: dict[str, Any], config: dict[str, Any], metrics: list[str]) -> None:
        # config.json's objects as W&B config (a resumed run may have more epochs: the value changes)
        self.run.config.update(
            {k: config[k] for k in ("train", "model") if k in config}, allow_val_change=True
        )
        self.run.config.update(
            {k: v for k, v in hparams.items() if "." not in k and k not in config.get("train", {})},
            allow_val_change=True,
        )

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log({**values, "global_step": step})

    def result(self, test: dict[str, Any], step: int) -> None:
        figures = scalars(test, "test")
        self.run.log({**figures, "global_step": step})
        self.run.summary.update({f"test/{k}": v for k, v in test.items() if _plain(v)})

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def _read_tracking(run_dir: Path) -> dict[str, Any]:
    path = run_dir / TRACKING
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: not readable ({e}); remove it to start a new W&B run") from None
    if not isinstance(value, dict):
        raise BadInput(f"{path}: not a JSON object; remove it to start a new W&B run")
    return value


# ----------------------------------------------------------------------------- the listener


class Clock(Protocol):
    """The run's step clock (``schedule.Schedule``): the tracker reads it at each point."""

    step: int  # optimizer steps taken so far, over the whole run
    opt: Any  # its param_groups' "lr": the rate of the step just taken (a host float)


class Tracker:
    """A ``Progress`` listener: passes every event on to ``progress`` and writes the figures of
    "step", "epoch" and "test" events to ``writers`` (see the module docstring)."""

    def __init__(self, clock: Clock, writers: list[Writer], progress: Progress, every: int) -> None:
        self.clock, self.writers, self.progress, self.every = clock, writers, progress, every
        self.mark = (0.0, 0)  # (loss sum, units) at the last point this epoch

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        self.progress(event, info)
        if event == "epoch_start":
            self.mark = (0.0, 0)
        elif event == "step" and (info["step"] % self.every == 0 or info["step"] == info["steps"]):
            self._step(info)
        elif event == "epoch":
            self._write({"epoch": info["epoch"], **scalars(info)}, flush=True)
        elif event == "test":
            for w in self.writers:
                w.result(info, self.clock.step)

    def _step(self, info: dict[str, Any]) -> None:
        # info["loss"] is the epoch's running mean over info["units"] scored units: the mean of the
        # steps since the last point is the difference of the sums over the difference of the units
        total, units = info["loss"] * info["units"], info["units"]
        loss = (total - self.mark[0]) / max(units - self.mark[1], 1)
        self.mark = (total, units)
        lr = float(self.clock.opt.param_groups[0]["lr"])
        self._write({"train/loss": loss, "train/lr": lr, "train/tokens_per_s": info["tokens_per_s"]})

    def _write(self, values: dict[str, float], flush: bool = False) -> None:
        for w in self.writers:
            w.scalars(values, self.clock.step)
            if flush and isinstance(w, TensorBoardWriter):
                w.writer.flush()


def val_metric_tags(config: dict[str, Any]) -> list[str]:
    """The figures the hparams view shows beside the settings."""
    kind = config.get("kind", TRANSLATION)
    if kind == TRANSLATION:
        return ["epoch/val_loss", "epoch/val_bleu", "epoch/val_bleu_tok", "test/bleu", "test/bleu_tok"]
    return ["epoch/val_loss", "epoch/val_acc", "test/best_val_acc"]


@contextmanager
def tracked(
    report_to: str, folder: RunFolder, clock: Clock, progress: Progress, every: int, main: bool = True
) -> Iterator[Progress]:
    """``progress`` wrapped in a ``Tracker`` writing to the backends of ``report_to`` (``progress``
    itself for "none", and where not ``main``: rank 0 alone writes); a training point every ``every``
    steps of an epoch (``epoch.SHOW_EVERY``: the steps at which the loop reads the running loss on the
    host). The writers are closed on the way out, a W&B run marked failed when an exception leaves.
    Call it once config.json is written."""
    backends = parse_report_to(report_to) if main else ()
    if not backends:
        yield progress
        return
    config = folder.read_config()
    writers: list[Writer] = []
    try:
        if "wandb" in backends:  # first: the one that can refuse to start
            writers.append(WandbWriter(folder.path))
        if "tensorboard" in backends:
            writers.append(TensorBoardWriter(folder.path, clock.step))
        for w in writers:
            w.config(hyperparameters(config), config, val_metric_tags(config))
    except BaseException:
        for w in writers:
            w.close(failed=True)
        raise
    failed = True
    try:
        yield Tracker(clock, writers, progress, every)
        failed = False
    finally:
        for w in writers:
            w.close(failed)
