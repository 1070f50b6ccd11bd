"""The trainer: ``train(TrainConfig) -> RunResult``, writing a run folder (DESIGN §4).

``train`` is four steps: ``open_run`` (the folder, the settings with the task's defaults, resume or
refuse), ``build`` (data, vocabularies, model, optimizer, the ``Engine`` that runs it (device, ranks,
precision, the compiled/DDP step), config.json; a resumed run's state), ``fit`` (the epochs:
train, validate, checkpoint, then state.pt, the commit point, and metrics.jsonl) and ``finish``
(the task kind's test result, test.json). What differs between translation and classification is
the run's ``kinds.Kind``. A run killed before state.pt is replaced resumes from the epoch before.
Process-wide state it touches (the global RNG, threads, glibc's allocator) is put back when it returns.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embtool._version import __version__
from embtool.core.errors import BadInput
from embtool.model.transformer import Classifier, ModelConfig, Seq2Seq, parameter_counts
from embtool.model.transformer import build as build_model
from embtool.training import checkpoint as ckpt
from embtool.training import parallel, tracking
from embtool.training.amp import Precision
from embtool.training.building import init_embeddings, profile_admin
from embtool.training.config import TrainConfig
from embtool.training.cpu import process_settings
from embtool.training.data import SEP, SPECIALS
from embtool.training.dynamics import epoch_dynamics, snapshot
from embtool.training.engine import Engine, Progress, quiet
from embtool.training.epoch import SHOW_EVERY, Diverged, TrainData, pick_device, train_epoch
from embtool.training.kinds import Kind, kind_of
from embtool.training.objective import prepare as prepare_step
from embtool.training.objective import sdpa_info
from embtool.training.parallel import World
from embtool.training.runfolder import (
    BEST,
    CONFIG,
    LAST,
    STATE,
    TEST,
    VOCAB,
    RunFolder,
    RunResult,
    config_json,
    resumed,
    stalled,
)
from embtool.training.schedule import Schedule
from embtool.training.setup import Prepared, load_text, prepare
from embtool.training.spec import RunSpec

SPECIAL_TOKENS = {*SPECIALS, SEP}


@dataclass
class Run:
    """One run while it trains: its settings, folder, engine, data, model and progress so far."""

    cfg: TrainConfig  # resolved: the task's defaults filled in
    folder: RunFolder
    engine: Engine  # device, ranks, precision, the training step
    kind: Kind  # translation or classification
    prep: Prepared
    model: Seq2Seq | Classifier
    schedule: Schedule  # the optimizer and the step clock
    meta: dict[str, Any]  # stored in every weights file
    start_epoch: int = 1
    best_loss: float = math.inf
    best_epoch: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl
    diverged: dict[str, Any] | None = None  # {"epoch", "step", "loss"} when training diverged
    emb0: dict[str, torch.Tensor] = field(default_factory=dict)  # the embeddings' first rows
    specials: dict[str, int] = field(default_factory=dict)  # leading special rows per embedding
    probe: Any = None  # a fixed validation batch for the residual-branch ratios


def train(cfg: TrainConfig, progress: Progress | None = None) -> RunResult:
    """Train as ``cfg`` says; write the run folder and return its result (DESIGN §4).

    ``progress(event, info)`` hears "run" ({"path"}), "log" ({"message"}), "epoch_start", "step",
    "epoch" (the metrics line) and "test" (under torchrun: on rank 0). With ``cfg.resume``,
    continues the run in ``cfg.out`` from its last completed epoch (a finished run is returned as it is).
    """
    world = World.from_env()  # under torchrun: this process's rank in the group
    progress = (progress or quiet) if world.main else quiet
    spec, folder, complete = open_run(cfg, progress, world)
    cfg = spec.cfg
    if complete:
        return folder.result()
    device = parallel.device_for(world, pick_device(cfg.device))
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    parallel.init(world, device)
    try:
        parallel.barrier(world)  # every rank has checked the folder before rank 0 writes to it
        with _claimed(folder, cfg, world):
            with torch.random.fork_rng(devices=rng_devices), process_settings(device, cfg.threads):
                run = build(spec, folder, device, progress, world)
                track = tracking.tracked(
                    cfg.report_to, folder, run.schedule, run.engine.progress, SHOW_EVERY, world.main
                )
                with track as run.engine.progress:  # --report-to: TensorBoard, W&B (rank 0)
                    fit(run)
                    return finish(run)
    finally:
        parallel.close(world)


@contextmanager
def _claimed(folder: RunFolder, cfg: TrainConfig, world: World) -> Iterator[None]:
    """Rank 0 holds the folder's lock while the run trains (one process trains in a folder); a
    failed start leaves nothing behind (a run that started can resume)."""
    if not world.main:
        yield
        return
    with folder.lock():
        if not cfg.resume and folder.file(CONFIG).exists():  # another run took it meanwhile
            raise BadInput(f"run folder {folder.path} exists; give another --out")
        try:
            yield
        except Exception:
            if not cfg.resume and not folder.file(STATE).exists():
                folder.discard()
            raise


def default_out(cfg: TrainConfig) -> Path:
    table = cfg.emb or cfg.src_emb or cfg.tgt_emb
    name = Path(table).name.split(".")[0] if table else "xavier"
    return Path("runs") / f"{cfg.task}-{name}-s{cfg.seed}"


def open_run(
    cfg: TrainConfig, progress: Progress, world: World | None = None
) -> tuple[RunSpec, RunFolder, bool]:
    """The run resolved once (``RunSpec``: its settings, Table 5 column, tables' headers, D), the run
    folder (made by rank 0), and whether the run is already complete.

    A resumed run keeps its stored settings, but for more epochs and for where and how it runs
    (device, amp, compile, threads, report_to), which follow ``cfg`` (``runfolder.resumed``).
    """
    if cfg.resume:
        if not cfg.out:
            raise BadInput("resume needs the run folder (--resume RUN_DIR)")
        if (Path(cfg.out) / CONFIG).is_file():
            cfg = resumed(cfg)
    spec = RunSpec.of(cfg)  # a width that cannot fit the tables fails before the folder is made
    cfg = spec.cfg
    tracking.require(cfg.report_to)  # and a --report-to package that is missing
    cfg = dataclasses.replace(cfg, out=str(cfg.out or default_out(cfg)))
    spec = dataclasses.replace(spec, cfg=cfg)
    folder = RunFolder(cfg.out or "")
    if (
        folder.file(TEST).is_file()
        and cfg.resume
        and (folder.done_epochs() >= cfg.epochs or _diverged(folder))
    ):
        progress("log", {"message": f"{folder.path} is complete ({TEST} exists)"})
        return spec, folder, True
    if folder.path.exists() and not folder.path.is_dir():
        raise BadInput(f"--out {folder.path}: is a file; give a folder for the run")
    if folder.path.is_symlink() and not folder.path.exists():
        raise BadInput(f"--out {folder.path}: a link to {folder.path.readlink()}, which does not exist")
    if not cfg.resume and folder.file(CONFIG).exists():
        raise BadInput(
            f"run folder {folder.path} exists; continue it with --resume {folder.path}, or give another --out"
        )
    if world is None or world.main:
        folder.path.mkdir(parents=True, exist_ok=True)
    progress("run", {"path": str(folder.path)})
    return spec, folder, False


def build(
    spec: RunSpec, folder: RunFolder, device: torch.device, progress: Progress, world: World | None = None
) -> Run:
    """Data, vocabularies, the model with its embeddings, the optimizer, the engine; config.json and
    vocab.json written; a resumed run's weights, optimizer, RNG and metrics restored from state.pt."""
    world, cfg = world or World(), spec.cfg
    # state.pt first: a broken one is said before the data is read and tokenized
    state = ckpt.resume_state(folder.file(STATE), folder.done_epochs()) if cfg.resume else None
    precision = Precision(spec.amp(device), device)  # the autocast and its reason
    kind, prep = kind_of(cfg), _prepared(cfg, progress)
    model_cfg = spec.model_for(prep)
    torch.manual_seed(cfg.seed)  # the non-embedding weights' Xavier draws
    model = build_model(model_cfg)
    paper = spec.paper
    if "family" in paper:
        progress("log", {"message": _column_line(paper, cfg, model_cfg)})
    init = init_embeddings(model, prep, model_cfg, cfg, progress)
    model.to(device)
    if state is not None:  # checked against this model (config.json's) before anything in the folder changes
        ckpt.check_state_fits(folder.file(STATE), state, model)
    admin = profile_admin(model, prep, cfg, device, progress) if model_cfg.norm == "admin" else None
    steps_per_epoch = len(kind.batches(prep.train, cfg, torch.Generator().manual_seed(cfg.seed)))
    if cfg.warmup > cfg.epochs * steps_per_epoch:
        progress(
            "log",
            {
                "message": f"warning: --warmup {cfg.warmup} is longer than the run ({cfg.epochs * steps_per_epoch} steps)"
            },
        )
    schedule = Schedule.make(model, cfg, device, total=cfg.epochs * steps_per_epoch)
    engine = Engine(device, precision, world, progress=progress)
    meta = {"model": model_cfg.to_dict(), "train": cfg.to_dict()}
    run = Run(cfg, folder, engine, kind, prep, model, schedule, meta)
    # E_0 from the freshly built model: a resumed run rebuilds the same first rows
    run.emb0 = snapshot(model)
    n_special = {s.name: sum(t in SPECIAL_TOKENS for t in s.vocab) for s in (prep.src, prep.tgt) if s}
    run.specials = {**n_special, "out": n_special.get("tgt", 0)}
    if prep.val:
        run.probe = kind.collate(prep.val, list(range(min(64, len(prep.val))))).to(device)
    if state is not None:
        _restore(run, state, steps_per_epoch)
    engine.stepper = prepare_step(
        model, cfg.compile, device, world.distributed, smoothing=cfg.label_smoothing
    )
    if engine.main:
        # only now, when every input is read and the resumed state restored: a run refused or failed
        # before this leaves its folder as it was. (Re)written on resume: it may have more epochs.
        folder.write_json(CONFIG, _config_json(run, spec, model_cfg, init, admin))
        folder.write_json(
            VOCAB, {"src": prep.src.vocab, "tgt": prep.tgt.vocab if prep.tgt else None}, indent=None
        )
        folder.clear_result()
    return run


def _prepared(cfg: TrainConfig, progress: Progress) -> Prepared:
    """The run's text (``setup.load_text``) prepared (``setup.prepare``), its vocabularies logged."""
    data = load_text(cfg)
    prep = prepare(cfg, data)
    prep.test_name = data.test_name
    _log_vocab(prep, progress)
    return prep


def _restore(run: Run, state: dict[str, Any], steps_per_epoch: int) -> None:
    """A resumed run's weights, optimizer, RNG, loss scale, best epoch, metrics and step clock."""
    run.model.load_state_dict(state["model"])
    run.schedule.opt.load_state_dict(state["optimizer"])
    ckpt.set_rng_state(state["rng"], run.engine.device)
    run.engine.precision.load_state_dict(state.get("scaler"))
    run.start_epoch = int(state["epoch"]) + 1
    run.best_loss, run.best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
    run.lines = list(state["metrics"])
    run.schedule.step = int(state.get("step", int(state["epoch"]) * steps_per_epoch))
    run.engine.log(f"resuming {run.folder.path} after epoch {state['epoch']}")


def _config_json(
    run: Run, spec: RunSpec, mc: ModelConfig, init: dict[str, Any], admin: dict[str, Any] | None
) -> dict[str, Any]:
    """config.json (``runfolder.config_json``) with where and how this run executes."""
    engine = run.engine
    where = {
        "device": str(engine.device),
        "amp": engine.precision.amp,
        "amp_why": engine.precision.why,  # what --amp (auto) chose, and why
        "world_size": engine.world.size,
        "sdpa": sdpa_info(engine.device, mc.d_model // mc.n_heads),
    }
    return config_json(spec, run.prep, mc.to_dict(), parameter_counts(run.model), init, where, admin)


def fit(run: Run) -> None:
    """The epochs left: train, validate, keep the best and last weights, commit state.pt, log."""
    engine, data = run.engine, TrainData(run.prep.train, run.kind, run.cfg)
    for epoch in range(run.start_epoch, run.cfg.epochs + 1):
        try:
            train_loss, seconds, tps = train_epoch(run.model, data, engine, run.schedule, epoch)
        except Diverged as e:  # every rank at the same step: the check is on the whole batch
            loss = e.loss if math.isfinite(e.loss) else None
            run.diverged = {"status": "diverged", "epoch": e.epoch, "step": e.step, "loss": loss}
            engine.on_main(functools.partial(_log_divergence, run, epoch, str(e)))
            break
        scores = run.kind.validate(run.model, run.prep, run.cfg, engine)  # each rank its share
        line: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, **scores}
        engine.on_main(functools.partial(_end_epoch, run, line, seconds, tps))  # the others wait
    if run.cfg.compile:  # what the compiler did: graphs, and whether it was still in use
        record = engine.step.record()
        engine.on_main(lambda: run.folder.write_json(CONFIG, {**run.folder.read_config(), "compile": record}))


def _log_divergence(run: Run, epoch: int, message: str) -> None:
    assert run.diverged is not None
    run.lines.append({"epoch": epoch, **run.diverged})
    run.folder.write_metrics(run.lines)
    run.engine.log(message)


def _end_epoch(run: Run, line: dict[str, Any], seconds: float, tps: float) -> None:
    """Rank 0's end of an epoch: the dynamics and timing in the line, best and last weights,
    state.pt (the commit point), metrics.jsonl, and the "epoch" report."""
    model, folder, epoch = run.model, run.folder, int(line["epoch"])
    line.update(epoch_dynamics(model, run.emb0, run.specials, run.probe))
    line.update(seconds=seconds, tokens_per_s=tps)
    if line["val_loss"] < run.best_loss:
        run.best_loss, run.best_epoch = line["val_loss"], epoch
        ckpt.save_weights(model, folder.file(BEST), run.meta, epoch)
    ckpt.save_weights(model, folder.file(LAST), run.meta, epoch)
    run.lines.append(line)
    ckpt.save_state(
        folder.file(STATE),
        {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": run.schedule.opt.state_dict(),
            "rng": ckpt.rng_state(run.engine.device),
            "scaler": run.engine.precision.state_dict(),
            "best_val_loss": run.best_loss,
            "best_epoch": run.best_epoch,
            "metrics": run.lines,
            "step": run.schedule.step,
            "embtool": __version__,
        },
    )
    folder.write_metrics(run.lines)
    run.engine.progress("epoch", line)


def finish(run: Run) -> RunResult:
    """The kind's test result (translation: the best model's decoded test split; classification:
    the best validation accuracy); test.json written. A run whose training diverged records where,
    and the last good epoch instead; one that stalled, why."""
    if run.diverged:
        result = {**run.diverged, "best_epoch": run.best_epoch}
    else:  # every rank decodes its share of the test split; rank 0 writes test.json
        result = run.kind.test_result(run)

    def write() -> dict[str, Any]:
        if run.diverged is None and (why := stalled(run.lines, run.kind.val_labels(run.prep))):
            written = {"status": "stalled", "stalled": why, **result}
        else:
            written = result
        run.folder.write_json(TEST, written)
        return written

    written = run.engine.on_main(write)  # the other ranks wait for test.json
    if written is None:
        return run.folder.result()
    run.engine.progress("test", written)
    return RunResult(run.folder.path, written, list(run.lines))


def _column_line(paper: dict[str, Any], cfg: TrainConfig, mc: ModelConfig) -> str:
    return (
        f"Table 5 column: {cfg.task} {paper['family']} ({paper['reason']}); --preset {cfg.preset}: "
        f"D {mc.d_model}, {mc.n_heads} heads, FFN {mc.d_ff}, batch {cfg.batch_size}, {cfg.epochs} epochs, "
        f"lr {cfg.lr:g}"
    )


def _diverged(folder: RunFolder) -> bool:
    return folder.end_status() == "diverged"


def _log_vocab(prep: Prepared, progress: Progress) -> None:
    for side in (prep.src, prep.tgt, prep.out):
        if side is None:
            continue
        where = f"from {side.table_info['path']}" if side.table_info else "Xavier-uniform"
        msg = f"{side.name} vocabulary: {len(side.vocab)} tokens ({side.tokenizer}), rows {where}"
        if side.table_info:
            msg += f"; {side.missing} not in the table, filled"
        progress("log", {"message": msg})
    if prep.dropped:
        progress("log", {"message": f"skipped {prep.dropped} training examples longer than --max-len"})
