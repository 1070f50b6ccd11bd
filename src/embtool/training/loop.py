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
from embtool.model import Classifier, ModelConfig, Seq2Seq, set_embedding
from embtool.model import build as build_model
from embtool.training import checkpoint as ckpt
from embtool.training.amp import choose_amp
from embtool.training.config import TrainConfig
from embtool.training.cpu import process_settings
from embtool.training.epoch import (
    Progress,
    detok_all,
    eval_loss,
    make_optimizer,
    pick_device,
    train_epoch,
    translate,
)
from embtool.training.metrics import accuracy, bleu
from embtool.training.runfolder import (
    BEST,
    CONFIG,
    LAST,
    METRICS,
    ON_RESUME,
    STATE,
    TEST,
    VOCAB,
    RunFolder,
    RunResult,
    resume_config,
)
from embtool.training.setup import Prepared, prepare


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
    with folder.lock():
        if not cfg.resume and folder.file(CONFIG).exists():  # another run took the folder meanwhile
            raise BadInput(f"run folder {folder.path} exists; give another --out")
        try:
            with torch.random.fork_rng(devices=rng_devices), process_settings(device, cfg.threads):
                run = build(cfg, folder, device, progress)
                fit(run, progress)
                return finish(run, progress)
        except Exception:
            if not cfg.resume and not folder.file(STATE).exists():
                folder.discard()  # a failed start leaves nothing behind (a run that started can resume)
            raise


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
            follow = {k: getattr(cfg, k) for k in ON_RESUME if k != "epochs"}  # where and how: the caller's
            cfg = dataclasses.replace(
                stored, epochs=max(stored.epochs, cfg.epochs) if cfg.epochs else stored.epochs, **follow
            )
    cfg = cfg.resolved()
    cfg.check_tables()  # a width that cannot fit the tables fails before the folder is made
    cfg = dataclasses.replace(cfg, out=str(cfg.out or default_out(cfg)))
    folder = RunFolder(cfg.out or "")
    if folder.file(TEST).is_file() and cfg.resume and folder.done_epochs() >= cfg.epochs:
        progress("log", {"message": f"{folder.path} is complete ({TEST} exists)"})
        return cfg, folder, True
    if folder.path.exists() and not folder.path.is_dir():
        raise BadInput(f"--out {folder.path}: is a file; give a folder for the run")
    if folder.path.exists() and not folder.path.is_dir():
        raise BadInput(f"--out {folder.path}: is a file; give a folder for the run")
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

    amp_choice = choose_amp(cfg.amp, device)
    amp = amp_choice.bf16
    if cfg.task_info.local_only:
        assert cfg.src and cfg.tgt
        data = load_files(cfg.src, cfg.tgt, cfg.val_src, cfg.val_tgt, cfg.test_src, cfg.test_tgt)
    else:
        data = load_splits(cfg.task, cfg.data_dir)
    prep = prepare(cfg, data.cut(cfg.max_train_examples, cfg.max_eval_examples))
    prep.test_name = data.test_name
    _log_vocab(prep, progress)

    model_cfg = _model_config(cfg, prep)
    torch.manual_seed(cfg.seed)  # the non-embedding weights' Xavier draws
    model = build_model(model_cfg)
    _init_embeddings(model, prep, model_cfg, cfg.seed)
    model.to(device)
    state = _resume_state(cfg, folder, model)  # checked before anything in the folder changes
    config = {
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
        "amp_why": amp_choice.why,  # what --amp (auto) chose, and why
        "dropped_train_examples": prep.dropped,
    }
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
    )
    if state is not None:
        model.load_state_dict(state["model"])
        run.opt.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"])
        run.start_epoch = int(state["epoch"]) + 1
        run.best_loss, run.best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
        run.lines = list(state["metrics"])
        progress("log", {"message": f"resuming {folder.path} after epoch {state['epoch']}"})
    return run


def _resume_state(cfg: TrainConfig, folder: RunFolder, model: Seq2Seq | Classifier) -> dict[str, Any] | None:
    """state.pt of a resumed run, checked against the model config.json describes (None: start).

    state.pt alone is the resume point: one atomic file with weights, optimizer, RNG and metrics,
    so a kill between the writes of an epoch cannot leave a mixed state."""
    if not cfg.resume:
        return None
    path = folder.file(STATE)
    if not path.is_file():
        done = folder.done_epochs()
        if done:  # epochs were trained, but their state is gone: starting over would overwrite them
            raise BadInput(
                f"{path}: no resume state, but {METRICS} records {done} epoch(s); the run cannot "
                "continue: train it again with another --out"
            )
        return None
    state = ckpt.load_state(path)
    ckpt.check_state_fits(path, state, model)
    return state


def fit(run: Run, progress: Progress) -> None:
    """The epochs left: train, validate, keep the best and last weights, commit state.pt, log."""
    cfg, folder, model = run.cfg, run.folder, run.model
    train_model: Any = torch.compile(model) if cfg.compile else model
    for epoch in range(run.start_epoch, cfg.epochs + 1):
        train_loss, seconds, tps = train_epoch(
            train_model, run.opt, run.prep.train, cfg.kind, cfg, epoch, run.device, run.amp, progress
        )
        line: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
        line.update(_validate(model, run.prep, cfg, run.device, run.amp))
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


def _log_vocab(prep: Prepared, progress: Progress) -> None:
    for side in (prep.src, prep.tgt):
        if side is None:
            continue
        where = f"from {side.table_info['path']}" if side.table_info else "Xavier-uniform"
        msg = f"{side.name} vocabulary: {len(side.vocab)} tokens ({side.tokenizer}), rows {where}"
        if side.table_info:
            msg += f"; {side.missing} not in the table, filled"
        progress("log", {"message": msg})
    if prep.dropped:
        progress("log", {"message": f"skipped {prep.dropped} training examples longer than --max-len"})


def _model_config(cfg: TrainConfig, prep: Prepared) -> ModelConfig:
    dims = {s.rows.shape[1] for s in (prep.src, prep.tgt) if s is not None and s.rows is not None}
    d_model = cfg.d_model or (dims.pop() if dims else 512)
    if dims and d_model not in dims:
        raise BadInput(
            f"--d-model {d_model} differs from the table's D {sorted(dims)[0]}; leave it out or match it"
        )
    return ModelConfig(
        kind=cfg.kind,
        src_vocab=len(prep.src.vocab),
        tgt_vocab=len(prep.tgt.vocab) if prep.tgt else 0,
        n_classes=prep.n_classes,
        d_model=d_model,
        n_heads=cfg.heads,
        n_layers=cfg.layers,
        d_ff=cfg.ff,
        dropout=cfg.dropout,
        attn_dropout=cfg.attn_dropout,
        max_len=cfg.max_len,
        posenc=cfg.posenc,
        freeze_emb=cfg.freeze_emb,
        tie_output=cfg.tie_output,
    )


def _init_embeddings(model: Seq2Seq | Classifier, prep: Prepared, mc: ModelConfig, seed: int) -> None:
    """Table rows where a table was given, else Xavier-uniform (the paper's baseline)."""
    from embtool.transforms import xavier

    for offset, side in enumerate((prep.src, prep.tgt)):
        if side is None:
            continue
        emb = model.embeddings()[side.name]
        rows = (
            side.rows
            if side.rows is not None
            else xavier(side.vocab, mc.d_model, seed=seed + offset).tensor()
        )
        set_embedding(emb, rows)


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
