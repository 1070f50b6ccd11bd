"""The trainer: ``train(TrainConfig) -> RunResult``, writing a run folder (DESIGN §4).

``train`` is four steps: ``open_run`` (the folder, the settings with the task's defaults, resume or
refuse), ``build`` (data, vocabularies, model, optimizer, config.json; a resumed run's state),
``fit`` (the epochs: train, validate, checkpoint, then state.pt, the commit point, and
metrics.jsonl) and ``finish`` (test the best model, write test.json). A run killed before state.pt
is replaced resumes from the epoch before. Process-wide state it touches (the global RNG, threads,
glibc's allocator) is put back when it returns.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embtool._version import __version__
from embtool.core.errors import BadInput
from embtool.model.transformer import Classifier, ModelConfig, Seq2Seq, parameter_counts
from embtool.model.transformer import build as build_model
from embtool.training import checkpoint as ckpt
from embtool.training import parallel
from embtool.training.amp import choose_amp
from embtool.training.building import init_embeddings, model_config, profile_admin
from embtool.training.checks import RESUME_FOLLOWS
from embtool.training.config import TrainConfig
from embtool.training.cpu import process_settings
from embtool.training.data import SEP, SPECIALS
from embtool.training.dynamics import epoch_dynamics, snapshot
from embtool.training.epoch import (
    Diverged,
    Progress,
    batches_of,
    collate,
    grad_scaler,
    pick_device,
    train_epoch,
)
from embtool.training.evaluation import test_result, validate
from embtool.training.objective import prepare as prepare_step
from embtool.training.objective import sdpa_info
from embtool.training.paper import column_of
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
    resume_config,
    stalled,
)
from embtool.training.schedule import make_optimizer, set_lr
from embtool.training.setup import Prepared, prepare
from embtool.training.widths import check_tables

SPECIAL_TOKENS = {*SPECIALS, SEP}


def _quiet(event: str, info: dict[str, Any]) -> None:
    pass


@dataclass
class Run:
    """One run while it trains: its settings, folder, data, model and progress so far."""

    cfg: TrainConfig  # resolved: the task's defaults filled in
    folder: RunFolder
    device: torch.device
    amp: str  # autocast: bf16, fp16 or off
    prep: Prepared
    model: Seq2Seq | Classifier
    opt: torch.optim.Optimizer
    meta: dict[str, Any]  # stored in every weights file
    start_epoch: int = 1
    best_loss: float = math.inf
    best_epoch: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl
    scaler: Any = None  # fp16's GradScaler (a no-op otherwise)
    world: World = field(default_factory=World)  # this process's place in a torchrun group
    step: int = 0  # optimizer steps taken over the whole run (the schedule's clock)
    total_steps: int = 0  # the run's steps, for the schedule
    diverged: dict[str, Any] | None = None  # {"epoch", "step", "loss"} when training diverged
    emb0: dict[str, torch.Tensor] = field(default_factory=dict)  # the embeddings' first rows
    specials: dict[str, int] = field(default_factory=dict)  # leading special rows per embedding
    probe: Any = None  # a fixed validation batch for the residual-branch ratios


def train(cfg: TrainConfig, progress: Progress | None = None) -> RunResult:
    """Train as ``cfg`` says; write the run folder and return its result (DESIGN §4).

    ``progress(event, info)`` hears "run" ({"path"}), "log" ({"message"}), "epoch_start", "step",
    "epoch" (the metrics line) and "test". With ``cfg.resume``, continues the run in ``cfg.out`` from
    its last completed epoch (a finished run is returned as it is).
    """
    progress = progress or _quiet
    world = World.from_env()  # under torchrun: this process's rank in the group
    cfg, folder, complete = open_run(cfg, progress, world)
    if complete:
        return folder.result()
    device = parallel.device_for(world, pick_device(cfg.device))
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    parallel.init(world, device)
    lock = folder.lock() if world.main else nullcontext()  # one process trains in a folder (rank 0 holds it)
    try:
        parallel.barrier(world)  # every rank has checked the folder before rank 0 writes to it
        with lock:
            if (
                world.main and not cfg.resume and folder.file(CONFIG).exists()
            ):  # another run took it meanwhile
                raise BadInput(f"run folder {folder.path} exists; give another --out")
            try:
                with torch.random.fork_rng(devices=rng_devices), process_settings(device, cfg.threads):
                    run = build(cfg, folder, device, progress, world)
                    fit(run, progress)
                    return finish(run, progress)
            except Exception:
                if world.main and not cfg.resume and not folder.file(STATE).exists():
                    folder.discard()  # a failed start leaves nothing behind (a run that started can resume)
                raise
    finally:
        parallel.close(world)


def default_out(cfg: TrainConfig) -> Path:
    table = cfg.emb or cfg.src_emb or cfg.tgt_emb
    name = Path(table).name.split(".")[0] if table else "xavier"
    return Path("runs") / f"{cfg.task}-{name}-s{cfg.seed}"


def open_run(
    cfg: TrainConfig, progress: Progress, world: World | None = None
) -> tuple[TrainConfig, RunFolder, bool]:
    """The resolved settings, the run folder (made by rank 0), and whether the run is already complete.

    A resumed run keeps its stored settings, but for more epochs and for where and how it runs
    (``RESUME_FOLLOWS``: device, amp, compile, threads), which follow ``cfg``.
    """
    if cfg.resume:
        if not cfg.out:
            raise BadInput("resume needs the run folder (--resume RUN_DIR)")
        if (Path(cfg.out) / CONFIG).is_file():
            stored = resume_config(cfg.out)
            cfg = dataclasses.replace(
                stored,
                epochs=max(stored.epochs, cfg.epochs) if cfg.epochs else stored.epochs,
                **{name: getattr(cfg, name) for name in RESUME_FOLLOWS},
            )
    cfg = cfg.resolved()
    check_tables(cfg)  # a width that cannot fit the tables fails before the folder is made
    cfg = dataclasses.replace(cfg, out=str(cfg.out or default_out(cfg)))
    folder = RunFolder(cfg.out or "")
    if (
        folder.file(TEST).is_file()
        and cfg.resume
        and (folder.done_epochs() >= cfg.epochs or _diverged(folder))
    ):
        progress("log", {"message": f"{folder.path} is complete ({TEST} exists)"})
        return cfg, folder, True
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
    return cfg, folder, False


def build(
    cfg: TrainConfig, folder: RunFolder, device: torch.device, progress: Progress, world: World | None = None
) -> Run:
    """Data, vocabularies, the model with its embeddings, the optimizer; config.json and vocab.json
    written; a resumed run's weights, optimizer, RNG and metrics restored from state.pt."""
    from embtool.tasks import load_files, load_splits

    # state.pt first: a broken one is said before the data is read and tokenized
    state = ckpt.resume_state(folder.file(STATE), folder.done_epochs()) if cfg.resume else None
    amp, amp_why = dataclasses.astuple(choose_amp(cfg.amp, device))  # the autocast and its reason
    if cfg.task_info.local_only:
        assert cfg.src and cfg.tgt
        data = load_files(cfg.src, cfg.tgt, cfg.val_src, cfg.val_tgt, cfg.test_src, cfg.test_tgt)
    else:
        data = load_splits(cfg.task, cfg.data_dir)
    prep = prepare(cfg, data.cut(cfg.max_train_examples, cfg.max_eval_examples))
    prep.test_name = data.test_name
    _log_vocab(prep, progress)

    model_cfg = model_config(cfg, prep)
    torch.manual_seed(cfg.seed)  # the non-embedding weights' Xavier draws
    model = build_model(model_cfg)
    paper = column_of(cfg).as_dict(cfg.task, cfg.preset)
    if "family" in paper:
        progress("log", {"message": _column_line(paper, cfg, model_cfg)})
    init = init_embeddings(model, prep, model_cfg, cfg, progress)
    model.to(device)
    if state is not None:  # checked against this model (config.json's) before anything in the folder changes
        ckpt.check_state_fits(folder.file(STATE), state, model)
    admin = profile_admin(model, prep, cfg, device, progress) if model_cfg.norm == "admin" else None
    steps_per_epoch = len(batches_of(prep.train, cfg.kind, cfg, torch.Generator().manual_seed(cfg.seed)))
    if cfg.warmup > cfg.epochs * steps_per_epoch:
        progress(
            "log",
            {
                "message": f"warning: --warmup {cfg.warmup} is longer than the run ({cfg.epochs * steps_per_epoch} steps)"
            },
        )
    config: dict[str, Any] = {
        "embtool": __version__,
        "task": cfg.task,
        "kind": cfg.kind,
        "seed": cfg.seed,
        "model": model_cfg.to_dict(),
        "parameters": parameter_counts(model),
        "paper": paper,
        "train": cfg.to_dict(),
        "tables": {"src": prep.src.table_info, "tgt": prep.tgt.table_info if prep.tgt else None},
        "vocab": {
            "src_size": len(prep.src.vocab),
            "tgt_size": len(prep.tgt.vocab) if prep.tgt else None,
            "src_missing": prep.src.missing,
            "tgt_missing": prep.tgt.missing if prep.tgt else None,
        },
        "init": init,
        "device": str(device),
        "amp": amp,
        "amp_why": amp_why,  # what --amp (auto) chose, and why
        "world_size": world.size if world else 1,
        "sdpa": sdpa_info(device, model_cfg.d_model // model_cfg.n_heads),
        "dropped_train_examples": prep.dropped,
        "train_examples": len(prep.train),
    }
    if admin is not None:
        config["admin_profile"] = admin
    if prep.out is not None:
        config["out_emb"] = {"table": prep.out.table_info, "missing": prep.out.missing}
    params = [p for p in model.parameters() if p.requires_grad]
    run = Run(
        cfg,
        folder,
        device,
        amp,
        prep,
        model,
        make_optimizer(params, cfg, device),
        meta={"model": model_cfg.to_dict(), "train": cfg.to_dict()},
        world=world or World(),
        scaler=grad_scaler(device, amp),
        total_steps=cfg.epochs * steps_per_epoch,
    )
    # E_0 from the freshly built model: a resumed run rebuilds the same first rows
    run.emb0 = snapshot(model)
    n_special = {s.name: sum(t in SPECIAL_TOKENS for t in s.vocab) for s in (prep.src, prep.tgt) if s}
    run.specials = {**n_special, "out": n_special.get("tgt", 0)}
    if prep.val:
        run.probe = collate(prep.val, list(range(min(64, len(prep.val)))), cfg.kind).to(device)
    if state is not None:
        model.load_state_dict(state["model"])
        run.opt.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"], device)
        if state.get("scaler") and amp == "fp16":
            run.scaler.load_state_dict(state["scaler"])
        run.start_epoch = int(state["epoch"]) + 1
        run.best_loss, run.best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
        run.lines = list(state["metrics"])
        run.step = int(state.get("step", int(state["epoch"]) * steps_per_epoch))
        progress("log", {"message": f"resuming {folder.path} after epoch {state['epoch']}"})
    if world is None or world.main:
        # only now, when every input is read and the resumed state restored: a run refused or failed
        # before this leaves its folder as it was. (Re)written on resume: it may have more epochs.
        folder.write_json(CONFIG, config)
        folder.write_json(
            VOCAB, {"src": prep.src.vocab, "tgt": prep.tgt.vocab if prep.tgt else None}, indent=None
        )
        folder.clear_result()
    return run


def fit(run: Run, progress: Progress) -> None:
    """The epochs left: train, validate, keep the best and last weights, commit state.pt, log."""
    cfg, folder, model, world = run.cfg, run.folder, run.model, run.world
    step = prepare_step(model, cfg.compile, run.device, world.distributed, smoothing=cfg.label_smoothing)

    def before_step() -> None:
        run.step += 1
        set_lr(run.opt, cfg, run.step, run.total_steps)

    for epoch in range(run.start_epoch, cfg.epochs + 1):
        try:
            train_loss, seconds, tps = train_epoch(
                model,
                run.opt,
                run.prep.train,
                cfg.kind,
                cfg,
                epoch,
                run.device,
                run.amp,
                progress,
                step,
                world,
                run.scaler,
                before_step,
            )
        except Diverged as e:  # every rank at the same step: the check is on the whole batch
            loss = e.loss if math.isfinite(e.loss) else None
            run.diverged = {"status": "diverged", "epoch": e.epoch, "step": e.step, "loss": loss}
            if world.main:
                run.lines.append({"epoch": epoch, **run.diverged})
                folder.write_metrics(run.lines)
                progress("log", {"message": str(e)})
            break
        scores = validate(model, run.prep, cfg, run.device, run.amp, world)  # each rank its share
        if not world.main:  # rank 0 writes; the others wait for it
            parallel.barrier(world)
            continue
        line: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, **scores}
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
                "optimizer": run.opt.state_dict(),
                "rng": ckpt.rng_state(run.device),
                "scaler": run.scaler.state_dict(),
                "best_val_loss": run.best_loss,
                "best_epoch": run.best_epoch,
                "metrics": run.lines,
                "step": run.step,
                "embtool": __version__,
            },
        )
        folder.write_metrics(run.lines)
        progress("epoch", line)
        parallel.barrier(world)
    if world.main and cfg.compile:  # what the compiler did: graphs, and whether it was still in use
        folder.write_json(CONFIG, {**folder.read_config(), "compile": step.record()})


def finish(run: Run, progress: Progress) -> RunResult:
    """Test the best model (translation) or take the best validation accuracy; write test.json. A run
    whose training diverged records where, and the last good epoch instead; one that stalled, why."""
    result = {**run.diverged, "best_epoch": run.best_epoch} if run.diverged else test_result(run, run.world)
    if not run.world.main:  # every rank decoded its share of the test split; rank 0 writes test.json
        parallel.barrier(run.world)
        return run.folder.result()
    labels = [int(y) for _, y in run.prep.val] if run.cfg.kind == "classification" else None
    if run.diverged is None and (why := stalled(run.lines, labels)):
        result = {"status": "stalled", "stalled": why, **result}
    run.folder.write_json(TEST, result)
    parallel.barrier(run.world)
    progress("test", result)
    return RunResult(run.folder.path, result, list(run.lines))


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
