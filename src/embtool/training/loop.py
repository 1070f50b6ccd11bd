"""The training loop and the run folder (DESIGN §4).

Per epoch: train, validation loss and BLEU (greedy) or accuracy, best/last checkpoints, then the
resume state (state.pt: weights, optimizer, RNG, metrics so far; the commit point) and
metrics.jsonl. A run killed before state.pt is replaced resumes from the epoch before. Each epoch's randomness (batch order, dropout) is seeded from (seed, epoch), so a
resumed run repeats an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from embtool import atomic
from embtool._version import __version__
from embtool.errors import BadInput
from embtool.model import Classifier, ModelConfig, Seq2Seq, build, set_embedding
from embtool.training import checkpoint as ckpt
from embtool.training.batching import (
    Batch,
    classification_batch,
    make_batches,
    micro_batches,
    translation_batch,
)
from embtool.training.config import TrainConfig
from embtool.training.data import EOS_ID, SPECIALS, detokenizer, load_task
from embtool.training.decoding import decode, max_output_len
from embtool.training.metrics import accuracy, bleu
from embtool.training.setup import Prepared, prepare

Progress = Callable[[str, dict[str, Any]], None]
Examples = list[tuple[list[int], Any]]

# What one more forward/backward pass costs on a CPU, in padded tokens of the paper's model (D=512,
# 3+3 layers; bench/train.py on 2 cores: 48–110 all did about as well). A token's work grows with
# D²·layers and a pass's fixed cost does not, so smaller models take fewer, bigger micro-batches.
CPU_PASS_TOKENS = 64 * 512**2 * 6

CONFIG, METRICS, BEST, LAST, STATE = "config.json", "metrics.jsonl", "best.safetensors", "last.safetensors", "state.pt"
TEST, HYPS, VOCAB = "test.json", "hyps.test.txt", "vocab.json"


def _quiet(event: str, info: dict[str, Any]) -> None:
    pass


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda: no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def pick_amp(name: str, device: torch.device) -> bool:
    """bf16 autocast: on CUDA with bf16, or on CPUs with native bf16 (AVX512-BF16/AMX); else off.

    Without native support, bf16 matmuls on a CPU are emulated and several times slower than fp32.
    """
    if name == "off":
        return False
    if name == "bf16":
        return True
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def default_out(cfg: TrainConfig) -> Path:
    table = cfg.emb or cfg.src_emb or cfg.tgt_emb
    name = Path(table).name.split(".")[0] if table else "xavier"
    return Path("runs") / f"{cfg.task}-{name}-s{cfg.seed}"


def with_defaults(cfg: TrainConfig) -> TrainConfig:
    """The config with the task's Table 5 values filled in and the run folder named."""
    r = cfg.resolved()
    r["out"] = str(cfg.out or default_out(cfg))
    return TrainConfig.from_dict(r)


def resume_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The TrainConfig stored in a run folder, set to resume it."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise BadInput(f"--resume {run_dir}: no {CONFIG}; is it a run folder made by `embtool train`?")
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))["train"]
    except (json.JSONDecodeError, KeyError) as e:
        raise BadInput(f"{path}: not a readable run config ({e})") from None
    stored.update(out=str(run_dir), resume=True)
    return TrainConfig.from_dict(stored)


# ----------------------------------------------------------------------------- batches


def batches_of(examples: Examples, kind: str, cfg: TrainConfig, generator: torch.Generator | None,
               batch_size: int | None = None) -> list[list[int]]:
    if kind == "translation":
        lengths = [max(len(s), len(t) + 1) for s, t in examples]
        keys: list[Any] = [(n, len(t), len(s)) for n, (s, t) in zip(lengths, examples, strict=True)]
    else:
        lengths = [len(s) for s, _ in examples]
        keys = lengths
    return make_batches(lengths, batch_size or cfg.batch_size, cfg.max_tokens, generator, keys)


def collate(examples: Examples, index: list[int], kind: str) -> Batch:
    src = [examples[i][0] for i in index]
    if kind == "translation":
        return translation_batch(src, [examples[i][1] for i in index])
    return classification_batch(src, [examples[i][1] for i in index])


def pass_overhead(cfg: ModelConfig, device: torch.device) -> int | None:
    """What one more micro-batch costs, in padded tokens, for this model on a CPU; None elsewhere
    (a GPU runs a batch whole: its padding costs less than more passes)."""
    if device.type != "cpu":
        return None
    layers = cfg.n_layers * (2 if cfg.kind == "translation" else 1)
    return max(16, round(CPU_PASS_TOKENS / (cfg.d_model**2 * layers)))


def collate_parts(examples: Examples, index: list[int], kind: str, device: torch.device,
                  overhead: int | None) -> list[Batch]:
    """One training batch as micro-batches of similar lengths (``micro_batches``, at ``overhead``
    padded tokens a pass), or whole when ``overhead`` is None; on ``device``."""
    parts = [index]
    if overhead is not None:
        src_len = {i: len(examples[i][0]) for i in index}
        tgt_len = {i: len(examples[i][1]) + 1 for i in index} if kind == "translation" else dict.fromkeys(index, 0)
        parts = micro_batches(index, src_len, tgt_len, overhead)
    return [collate(examples, part, kind).to(device, device.type == "cuda") for part in parts]


# ----------------------------------------------------------------------------- one epoch


def _autocast(device: torch.device, amp: bool) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


def _loss(model: torch.nn.Module, batch: Batch, kind: str) -> tuple[torch.Tensor, int]:
    """Summed loss over the batch's scored units (target tokens, or examples) and their count."""
    if kind == "translation":
        assert batch.tgt_in is not None and batch.tgt_out is not None
        return model.loss(batch.src, batch.tgt_in, batch.tgt_out)  # type: ignore[operator]
    assert batch.labels is not None
    logits = model(batch.src)  # (B, C)
    return F.cross_entropy(logits.float(), batch.labels, reduction="sum"), int(batch.labels.shape[0])


def train_epoch(
    model: torch.nn.Module, opt: torch.optim.Optimizer, examples: Examples, kind: str, cfg: TrainConfig,
    epoch: int, device: torch.device, amp: bool, progress: Progress,
) -> tuple[float, float, float]:
    """One pass over the training data; returns (mean loss, seconds, tokens per second)."""
    gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
    torch.manual_seed(_epoch_seed(cfg.seed, epoch))  # dropout
    batches = batches_of(examples, kind, cfg, gen)
    params = [p for p in model.parameters() if p.requires_grad]
    overhead = pass_overhead(model.cfg, device)  # type: ignore[arg-type]
    model.train()
    total, units, tokens = 0.0, 0, 0
    start = time.perf_counter()
    progress("epoch_start", {"epoch": epoch, "epochs": cfg.epochs, "steps": len(batches)})
    for step, index in enumerate(batches, start=1):
        parts = collate_parts(examples, index, kind, device, overhead)
        loss_sum, n = train_step(model, opt, params, parts, kind, cfg.clip_norm, device, amp)
        total += loss_sum
        units += n
        tokens += sum(b.n_tokens for b in parts)
        elapsed = time.perf_counter() - start
        progress("step", {"step": step, "steps": len(batches), "loss": total / max(units, 1),
                          "tokens_per_s": tokens / max(elapsed, 1e-9)})
    seconds = time.perf_counter() - start
    return total / max(units, 1), seconds, tokens / max(seconds, 1e-9)


def train_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], parts: list[Batch],
    kind: str, clip_norm: float, device: torch.device, amp: bool,
) -> tuple[float, int]:
    """One optimizer step on the mean loss of a batch given as micro-batches; returns (summed loss,
    scored units). Each part's backward adds its share, so the gradient is the whole batch's."""
    units = sum(b.n_tokens if kind == "translation" else len(b.src) for b in parts)
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for batch in parts:
        with _autocast(device, amp):
            loss_sum, _ = _loss(model, batch, kind)
        (loss_sum / max(units, 1)).backward()
        total += float(loss_sum.detach())
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    opt.step()
    return total, units


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)


@torch.no_grad()
def eval_loss(model: torch.nn.Module, examples: Examples, kind: str, cfg: TrainConfig,
              device: torch.device, amp: bool) -> tuple[float, list[int]]:
    """Mean loss per scored unit; for classification also the predicted classes (in order)."""
    model.eval()
    total, units = 0.0, 0
    preds = [0] * len(examples)
    for index in batches_of(examples, kind, cfg, None):
        batch = collate(examples, index, kind).to(device)
        with _autocast(device, amp):
            if kind == "translation":
                loss_sum, n = _loss(model, batch, kind)
            else:
                logits = model(batch.src)
                assert batch.labels is not None
                loss_sum = F.cross_entropy(logits.float(), batch.labels, reduction="sum")
                n = len(index)
                for i, p in zip(index, logits.argmax(-1).tolist(), strict=True):
                    preds[i] = p
        total += float(loss_sum)
        units += n
    return total / max(units, 1), preds


@torch.no_grad()
def translate(model: Seq2Seq, examples: Examples, cfg: TrainConfig, device: torch.device, amp: bool,
              beam: int = 1) -> list[list[int]]:
    """Decoded target ids for every example, in the examples' order."""
    model.eval()
    out: list[list[int]] = [[] for _ in examples]
    size = max(1, min(cfg.batch_size, 256) // max(1, beam))
    for index in make_batches([len(examples[i][0]) for i in range(len(examples))], size):
        batch = collate(examples, index, "translation").to(device)
        limit = max_output_len(batch.src.shape[1], model.cfg.max_len)
        with _autocast(device, amp):
            hyps = decode(model, batch.src, limit, beam)
        for i, h in zip(index, hyps, strict=True):
            out[i] = h
    return out


def detok_all(ids: list[list[int]], vocab: list[str], spec: str) -> list[str]:
    detok = detokenizer(spec)
    specials = set(SPECIALS)
    return [detok([vocab[i] for i in h if vocab[i] not in specials]) for h in ids]


# ----------------------------------------------------------------------------- the run


def train(cfg: TrainConfig, progress: Progress | None = None) -> Path:
    """Train as ``cfg`` says; write and return the run folder (DESIGN §4).

    ``progress(event, info)`` hears "run" ({"path"}), "log" ({"message"}), "epoch_start", "step",
    "epoch" (the metrics line) and "test". With ``cfg.resume``, continues the run in ``cfg.out`` from its last
    completed epoch (a finished run is returned as it is).
    """
    progress = progress or _quiet
    if cfg.resume:
        if not cfg.out:
            raise BadInput("resume needs the run folder (--resume RUN_DIR)")
        run = Path(cfg.out)
        if (run / CONFIG).is_file():
            stored = resume_config(run)
            cfg = dataclasses.replace(stored, epochs=max(stored.epochs, cfg.epochs) if cfg.epochs else stored.epochs)
    cfg = with_defaults(cfg)
    run = Path(cfg.out or default_out(cfg))
    if (run / TEST).is_file() and cfg.resume and _done_epochs(run) >= cfg.epochs:
        progress("log", {"message": f"{run} is complete (test.json exists)"})
        return run
    if not cfg.resume and (run / CONFIG).exists():
        raise BadInput(f"run folder {run} exists; continue it with --resume {run}, or give another --out")
    run.mkdir(parents=True, exist_ok=True)
    progress("run", {"path": str(run)})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    amp = pick_amp(cfg.amp, device)
    if device.type == "cpu":
        keep_freed_memory()
    kind = cfg.kind

    data = load_task(cfg)
    data.train = data.train.head(cfg.max_train_examples)
    if cfg.max_eval_examples:
        data.val = data.val.head(cfg.max_eval_examples)
        data.test = data.test.head(cfg.max_eval_examples)
        data.extra_val = {k: v.head(cfg.max_eval_examples) for k, v in data.extra_val.items()}
    prep = prepare(cfg, data)
    _log_vocab(prep, progress)

    model_cfg = _model_config(cfg, prep)
    torch.manual_seed(cfg.seed)  # the non-embedding weights' Xavier draws
    model = build(model_cfg)
    _init_embeddings(model, prep, model_cfg, cfg.seed)
    model.to(device)
    meta = {"model": model_cfg.to_dict(), "train": cfg.to_dict()}
    config = {
        "embtool": __version__,
        "task": cfg.task,
        "kind": kind,
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
    }
    # (re)written on resume too: a continued run may have been given more epochs
    atomic.write_text(run / CONFIG, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    vocabs = {"src": prep.src.vocab, "tgt": prep.tgt.vocab if prep.tgt else None}
    atomic.write_text(run / VOCAB, json.dumps(vocabs, ensure_ascii=False) + "\n")
    for name in (TEST, HYPS):  # a run is complete iff test.json exists: not while it continues
        (run / name).unlink(missing_ok=True)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg, device)
    start_epoch, best_loss, best_epoch = 1, math.inf, 0
    lines: list[dict[str, Any]] = []
    if cfg.resume and (run / STATE).is_file():
        # state.pt alone is the resume point: one atomic file with weights, optimizer, RNG and
        # metrics, so a kill between the writes of an epoch cannot leave a mixed state
        state = ckpt.load_state(run / STATE)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"])
        start_epoch = int(state["epoch"]) + 1
        best_loss, best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
        lines = list(state["metrics"])
        progress("log", {"message": f"resuming {run} after epoch {state['epoch']}"})
    train_model: Any = torch.compile(model) if cfg.compile else model

    for epoch in range(start_epoch, cfg.epochs + 1):
        train_loss, seconds, tps = train_epoch(train_model, opt, prep.train, kind, cfg, epoch, device, amp, progress)
        line: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
        line.update(_validate(model, prep, cfg, device, amp))
        line.update(seconds=seconds, tokens_per_s=tps)
        if line["val_loss"] < best_loss:
            best_loss, best_epoch = line["val_loss"], epoch
            ckpt.save_weights(model, run / BEST, meta, epoch)
        ckpt.save_weights(model, run / LAST, meta, epoch)
        lines.append(line)
        ckpt.save_state(run / STATE, {
            "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(), "rng": ckpt.rng_state(),
            "best_val_loss": best_loss, "best_epoch": best_epoch, "metrics": lines, "embtool": __version__,
        })
        atomic.write_text(run / METRICS, "".join(json.dumps(x) + "\n" for x in lines))
        progress("epoch", line)

    result = _test(model, prep, cfg, run, lines, best_epoch, device, amp, data.test_split_name)
    progress("test", result)
    return run


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for the next step instead of handing it back to the system.

    Each CPU step allocates and frees the same activations; by default the big ones are mapped
    anew every time, and ~35k page faults a step (the paper's model) cost a few percent of it.
    With no mapped chunks and no trimming below 1 GiB they are reused; peak memory is the same.
    A no-op where the C library is not glibc.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: serve every allocation from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap
    except (OSError, AttributeError):
        pass


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the paper's β and ε (A.2); the fused kernel where PyTorch has one for the device.

    Fused Adam is one pass over each tensor instead of six: on a CPU it takes about a third less
    time per step, which for the paper's model is a large share of the step.
    """
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                            fused=fused or None)


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
        raise BadInput(f"--d-model {d_model} differs from the table's D {sorted(dims)[0]}; leave it out or match it")
    return ModelConfig(
        kind=cfg.kind,
        src_vocab=len(prep.src.vocab),
        tgt_vocab=len(prep.tgt.vocab) if prep.tgt else 0,
        n_classes=prep.n_classes,
        d_model=d_model,
        n_heads=cfg.n_heads,
        n_layers=cfg.n_layers,
        d_ff=cfg.d_ff,
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
        rows = side.rows if side.rows is not None else xavier(side.vocab, mc.d_model, seed=seed + offset).vectors
        set_embedding(emb, rows)


def _validate(model: Seq2Seq | Classifier, prep: Prepared, cfg: TrainConfig, device: torch.device,
              amp: bool) -> dict[str, Any]:
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


def _read_metrics(run: Path) -> list[dict[str, Any]]:
    path = run / METRICS
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _done_epochs(run: Path) -> int:
    return max((x["epoch"] for x in _read_metrics(run)), default=0)


def _test(model: Seq2Seq | Classifier, prep: Prepared, cfg: TrainConfig, run: Path,
          lines: list[dict[str, Any]], best_epoch: int, device: torch.device, amp: bool,
          split: str) -> dict[str, Any]:
    """Decode the test split with the best model (translation), or report the best validation accuracy."""
    if cfg.kind == "classification":
        best = next(x for x in lines if x["epoch"] == best_epoch)
        result: dict[str, Any] = {"best_val_acc": best["val_acc"], "best_epoch": best_epoch}
        if "val_acc_mismatched" in best:
            result["best_val_acc_mismatched"] = best["val_acc_mismatched"]
    else:
        assert isinstance(model, Seq2Seq) and prep.tgt is not None
        ckpt.load_weights(model, run / BEST)
        ids = translate(model, prep.test, cfg, device, amp, beam=cfg.beam)
        hyps = detok_all(ids, prep.tgt.vocab, prep.tgt.tokenizer)
        atomic.write_text(run / HYPS, "".join(h + "\n" for h in hyps))
        score, signature = bleu(hyps, _refs(prep.test_refs, prep.tgt.lower))
        result = {"bleu": score, "signature": signature, "best_epoch": best_epoch, "split": split, "beam": cfg.beam}
    atomic.write_text(run / TEST, json.dumps(result, indent=2) + "\n")
    return result


__all__ = ["train", "resume_config", "pick_amp", "pick_device", "EOS_ID"]
