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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embtool._version import __version__
from embtool.errors import BadInput
from embtool.model import Classifier, Seq2Seq, parameter_breakdown
from embtool.model import build as build_model
from embtool.training import checkpoint as ckpt
from embtool.training.building import init_embeddings, model_config, profile_admin
from embtool.training.config import TrainConfig
from embtool.training.cpu import process_settings
from embtool.training.data import SEP, SPECIALS
from embtool.training.dynamics import epoch_dynamics, snapshot
from embtool.training.epoch import (
    Diverged,
    Progress,
    batches_of,
    collate,
    detok_all,
    eval_loss,
    pick_amp,
    pick_device,
    train_epoch,
    translate,
)
from embtool.training.metrics import accuracy, bleu
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
)
from embtool.training.schedule import make_optimizer, set_lr
from embtool.training.setup import Prepared, prepare

SPECIAL_TOKENS = {*SPECIALS, SEP}


def _quiet(event: str, info: dict[str, Any]) -> None:
    pass


@dataclass
class Run:
    """One run while it trains: its settings, folder, data, model and progress so far."""

    cfg: TrainConfig  # resolved: the task's defaults filled in
    folder: RunFolder
    device: torch.device
    amp: bool
    prep: Prepared
    model: Seq2Seq | Classifier
    opt: torch.optim.Optimizer
    meta: dict[str, Any]  # stored in every weights file
    start_epoch: int = 1
    best_loss: float = math.inf
    best_epoch: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl
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
    cfg, folder, complete = open_run(cfg, progress)
    if complete:
        return folder.result()
    device = pick_device(cfg.device)
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices), process_settings(device, cfg.threads):
        run = build(cfg, folder, device, progress)
        fit(run, progress)
        if run.diverged is not None:
            return finish_diverged(run, progress)
        return finish(run, progress)


def default_out(cfg: TrainConfig) -> Path:
    table = cfg.emb or cfg.src_emb or cfg.tgt_emb
    name = Path(table).name.split(".")[0] if table else "xavier"
    return Path("runs") / f"{cfg.task}-{name}-s{cfg.seed}"


def open_run(cfg: TrainConfig, progress: Progress) -> tuple[TrainConfig, RunFolder, bool]:
    """The resolved settings, the run folder (made), and whether the run is already complete."""
    if cfg.resume:
        if not cfg.out:
            raise BadInput("resume needs the run folder (--resume RUN_DIR)")
        if (Path(cfg.out) / CONFIG).is_file():
            stored = resume_config(cfg.out)
            cfg = dataclasses.replace(
                stored, epochs=max(stored.epochs, cfg.epochs) if cfg.epochs else stored.epochs
            )
    cfg = cfg.resolved()
    cfg = dataclasses.replace(cfg, out=str(cfg.out or default_out(cfg)))
    folder = RunFolder(cfg.out or "")
    if (
        folder.file(TEST).is_file()
        and cfg.resume
        and (folder.done_epochs() >= cfg.epochs or _diverged(folder))
    ):
        progress("log", {"message": f"{folder.path} is complete ({TEST} exists)"})
        return cfg, folder, True
    if not cfg.resume and folder.file(CONFIG).exists():
        raise BadInput(
            f"run folder {folder.path} exists; continue it with --resume {folder.path}, or give another --out"
        )
    folder.path.mkdir(parents=True, exist_ok=True)
    progress("run", {"path": str(folder.path)})
    return cfg, folder, False


def build(cfg: TrainConfig, folder: RunFolder, device: torch.device, progress: Progress) -> Run:
    """Data, vocabularies, the model with its embeddings, the optimizer; config.json and vocab.json
    written; a resumed run's weights, optimizer, RNG and metrics restored from state.pt."""
    from embtool.tasks import load_files, load_splits

    amp = pick_amp(cfg.amp, device)
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
    init_embeddings(model, prep, model_cfg, cfg.seed)
    model.to(device)
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
        "train": cfg.to_dict(),
        "tables": {"src": prep.src.table_info, "tgt": prep.tgt.table_info if prep.tgt else None},
        "vocab": {
            "src_size": len(prep.src.vocab),
            "tgt_size": len(prep.tgt.vocab) if prep.tgt else None,
            "src_missing": prep.src.missing,
            "tgt_missing": prep.tgt.missing if prep.tgt else None,
        },
        "device": str(device),
        "amp": "bf16" if amp else "off",
        "dropped_train_examples": prep.dropped,
        "parameters": parameter_breakdown(model),
    }
    if admin is not None:
        config["admin_profile"] = admin
    if prep.out is not None:
        config["out_emb"] = {"table": prep.out.table_info, "missing": prep.out.missing}
    # (re)written on resume too: a continued run may have been given more epochs
    folder.write_json(CONFIG, config)
    folder.write_json(
        VOCAB, {"src": prep.src.vocab, "tgt": prep.tgt.vocab if prep.tgt else None}, indent=None
    )
    folder.clear_result()
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
        total_steps=cfg.epochs * steps_per_epoch,
    )
    # E_0 from the freshly built model: a resumed run rebuilds the same first rows
    run.emb0 = snapshot(model)
    n_special = {s.name: sum(t in SPECIAL_TOKENS for t in s.vocab) for s in (prep.src, prep.tgt) if s}
    run.specials = {**n_special, "out": n_special.get("tgt", 0)}
    if prep.val:
        run.probe = collate(prep.val, list(range(min(64, len(prep.val)))), cfg.kind).to(device)
    if cfg.resume and folder.file(STATE).is_file():
        # state.pt alone is the resume point: one atomic file with weights, optimizer, RNG and
        # metrics, so a kill between the writes of an epoch cannot leave a mixed state
        state = ckpt.load_state(folder.file(STATE))
        model.load_state_dict(state["model"])
        run.opt.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"])
        run.start_epoch = int(state["epoch"]) + 1
        run.best_loss, run.best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
        run.lines = list(state["metrics"])
        run.step = int(state.get("step", int(state["epoch"]) * steps_per_epoch))
        progress("log", {"message": f"resuming {folder.path} after epoch {state['epoch']}"})
    return run


def fit(run: Run, progress: Progress) -> None:
    """The epochs left: train, validate, keep the best and last weights, commit state.pt, log."""
    cfg, folder, model = run.cfg, run.folder, run.model
    train_model: Any = torch.compile(model) if cfg.compile else model

    def before_step() -> None:
        run.step += 1
        set_lr(run.opt, cfg, run.step, run.total_steps)

    for epoch in range(run.start_epoch, cfg.epochs + 1):
        try:
            train_loss, seconds, tps = train_epoch(
                train_model,
                run.opt,
                run.prep.train,
                cfg.kind,
                cfg,
                epoch,
                run.device,
                run.amp,
                progress,
                before_step,
            )
        except Diverged as e:
            loss = e.loss if math.isfinite(e.loss) else None
            run.diverged = {"status": "diverged", "epoch": e.epoch, "step": e.step, "loss": loss}
            run.lines.append({"epoch": epoch, **run.diverged})
            folder.write_metrics(run.lines)
            progress("log", {"message": str(e)})
            return
        line: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
        line.update(_validate(model, run.prep, cfg, run.device, run.amp))
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
                "rng": ckpt.rng_state(),
                "best_val_loss": run.best_loss,
                "best_epoch": run.best_epoch,
                "metrics": run.lines,
                "step": run.step,
                "embtool": __version__,
            },
        )
        folder.write_metrics(run.lines)
        progress("epoch", line)


def finish(run: Run, progress: Progress) -> RunResult:
    """Test the best model (translation) or take the best validation accuracy; write test.json."""
    result = _test(run)
    run.folder.write_json(TEST, result)
    progress("test", result)
    return RunResult(run.folder.path, result, list(run.lines))


def finish_diverged(run: Run, progress: Progress) -> RunResult:
    """test.json for a run whose training diverged: its status, where, and the last good epoch."""
    assert run.diverged is not None
    result = {**run.diverged, "best_epoch": run.best_epoch}
    run.folder.write_json(TEST, result)
    progress("test", result)
    return RunResult(run.folder.path, result, list(run.lines))


def _diverged(folder: RunFolder) -> bool:
    try:
        return folder.read_test().get("status") == "diverged"
    except (OSError, ValueError):
        return False


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


def _validate(
    model: Seq2Seq | Classifier, prep: Prepared, cfg: TrainConfig, device: torch.device, amp: bool
) -> dict[str, Any]:
    if cfg.kind == "translation":
        assert isinstance(model, Seq2Seq) and prep.tgt is not None
        val_loss, _ = eval_loss(model, prep.val, "translation", cfg, device, amp)
        hyps = detok_all(translate(model, prep.val, cfg, device, amp), prep.tgt.vocab, prep.tgt.tokenizer)
        score, _ = bleu(hyps, _refs(prep.val_refs, prep.tgt.lower))
        return {"val_loss": val_loss, "val_bleu": score}
    val_loss, preds = eval_loss(model, prep.val, "classification", cfg, device, amp)
    out: dict[str, Any] = {"val_loss": val_loss, "val_acc": accuracy(preds, [int(y) for _, y in prep.val])}
    for name, examples in prep.extra_val.items():
        _, p = eval_loss(model, examples, "classification", cfg, device, amp)
        out[f"val_acc_{name}"] = accuracy(p, [int(y) for _, y in examples])
    return out


def _refs(refs: list[str], lower: bool) -> list[str]:
    return [r.lower() for r in refs] if lower else refs


def _test(run: Run) -> dict[str, Any]:
    """Decode the test split with the best model (translation), or report the best validation accuracy."""
    model, prep, cfg, lines, best_epoch = run.model, run.prep, run.cfg, run.lines, run.best_epoch
    device, amp = run.device, run.amp
    if cfg.kind == "classification":
        best = next(x for x in lines if x["epoch"] == best_epoch)
        result: dict[str, Any] = {"best_val_acc": best["val_acc"], "best_epoch": best_epoch}
        if "val_acc_mismatched" in best:
            result["best_val_acc_mismatched"] = best["val_acc_mismatched"]
    else:
        assert isinstance(model, Seq2Seq) and prep.tgt is not None
        ckpt.load_weights(model, run.folder.file(BEST))
        ids = translate(model, prep.test, cfg, device, amp, beam=cfg.beam)
        hyps = detok_all(ids, prep.tgt.vocab, prep.tgt.tokenizer)
        run.folder.write_hyps(hyps)
        score, signature = bleu(hyps, _refs(prep.test_refs, prep.tgt.lower))
        result = {
            "bleu": score,
            "signature": signature,
            "best_epoch": best_epoch,
            "split": prep.test_name,
            "beam": cfg.beam,
        }
    return result
