"""The GPU path checked at once, in six sections, each within its time budget (≤ 8 minutes on one GPU).

1. environment: torch, CUDA, the GPU and its compute capability, TF32 as both of torch's APIs
   read it (``matmul.allow_tf32`` and ``fp32_precision``), now and inside the trainer's settings;
2. speed: the paper's Multi30k model (D=512, 8 heads, 3+3 layers, FFN 2048, 128 pairs a step) on
   the same pre-collated batches: nn.Transformer (bench/train.py's reference) in fp32/TF32 and bf16,
   embtool eager fp32, eager bf16 and compiled bf16 (tok/s, ms/step, peak memory; compile seconds,
   graphs, recompiles inside the timed window, which must be 0; 20 steps under
   ``torch.cuda.set_sync_debug_mode("error")``); the ≥ 1.5× goal against each reference row;
3. attention: the model's own ``Attention`` modules at D=512/8 heads and D=300/10 heads, odd
   lengths, padded (encoder self- and cross-attention; the decoder's causal one too, eager), forward
   and backward, eager and compiled: which SDPA kernel ran (the profiler's op names; on CUDA also
   which backends ``sdpa_kernel`` can force);
4. DDP with world size 1 (NCCL on CUDA, gloo on a CPU) against the plain step, dropout 0, TF32
   off: losses and weights equal;
5. the CLI end to end: ``embtool train … --device cuda --amp bf16 --compile --beam 4`` for one
   short epoch, then ``--resume`` on the CPU, on CUDA with ``--amp fp16``, and with ``--nproc 2``
   (gloo, as where one GPU is all there is);
6. memory: the peak of one IWSLT-sized step for each of IWSLT's Table 5 columns.

Each row is printed as it is measured; ``--json-out PATH`` holds one entry a section (status ok,
fail or n/a, with the reason), rewritten after each section. Exit 1 when a section failed.

    pip install --no-deps -e . && python bench/gpu_check.py --data data/multi30k --json-out gpu.json

``--smoke`` runs every section at toy size on a machine without CUDA (CI does): the same code on
the CPU, with torch.compile's eager backend where Inductor would take minutes; the rows that only
CUDA can fill are n/a with the reason. The data is Multi30k in ../shared/data's layout
(``{train,val,test_2016_flickr}.{de,en}[.gz]``; ``--data``), tokenized on whitespace, else synthetic
sentences of Multi30k's lengths. Every import is lazy and nothing beyond embtool's own
dependencies is needed (no spaCy, datasets or network).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA_DIRS = (ROOT / "data" / "multi30k", ROOT.parent / "shared" / "data" / "multi30k")  # --data's default
GOAL = 1.5  # embtool's compiled bf16 step against nn.Transformer's, target tokens per second
SYNC_STEPS = 20  # steps under torch.cuda.set_sync_debug_mode("error")
NO_CUDA = "needs CUDA (torch.cuda.is_available() is False here)"


@dataclass(frozen=True)
class Sizes:
    """How big each section runs: the GPU check's sizes, or ``--smoke``'s toy ones."""

    d_model: int  # the speed matrix's model (and DDP's): the paper's Multi30k model on a GPU
    heads: int
    layers: int
    ff: int
    batch: int  # sentence pairs a step (Table 5's 128)
    train_examples: int  # the first N training pairs (0: all; the vocabulary is theirs)
    warmup: int  # untimed steps before the timed window (compilation happens here)
    steps: int  # timed steps a row
    attn_batch: int  # sentences in the attention section's batches
    ddp_steps: int
    cli_model: tuple[str, ...]  # the CLI run's model options (empty: the task's Table 5 column)
    cli_train: int  # --max-train-examples of the CLI run
    cli_eval: int  # --max-eval-examples
    memory_scale: int  # 1: IWSLT's real sizes; k > 1: a toy step (D 32, vocabulary, FFN and batch / k)
    budgets: tuple[float, ...]  # seconds, sections 1-6


# budgets: 430 s in all on a GPU (Inductor compiles in sections 2, 3 and 5's first leg), 175 s in --smoke
# (most of it for the CLI's five processes, torch imported in each)
GPU = Sizes(512, 8, 3, 2048, 128, 0, 5, 40, 32, 8, (), 1500, 32, 1, (10, 125, 55, 30, 190, 20))
SMOKE = Sizes(
    32, 4, 1, 64, 8, 200, 2, 3, 4, 3,
    ("--d-model", "32", "--heads", "4", "--layers", "1", "--ff", "64", "--batch-size", "16", "--max-len", "40"),
    96, 8, 16, (5, 30, 20, 10, 100, 10),
)  # fmt: skip


def _budget_scale() -> float:
    """$GPU_CHECK_BUDGET_SCALE stretches every section's budget (CI runs the smoke check beside other
    tests on 2 cores: its sections' timings are not what it checks there)."""
    try:
        return max(1.0, float(os.environ.get("GPU_CHECK_BUDGET_SCALE", "1")))
    except ValueError:
        return 1.0


class OverBudget(BaseException):
    """A section ran past its time budget (a BaseException: no ``except Exception`` swallows it)."""


@dataclass
class Section:
    """One section's verdict and rows, as --json-out writes it."""

    number: int
    name: str
    budget_s: float
    status: str = "ok"  # ok, fail or n/a
    reasons: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def row(self, label: str, text: str, **values: Any) -> None:
        """Print one measured row now, and keep it for the JSON."""
        print(f"  {label:<36} {text}", flush=True)
        self.rows.append({"row": label, "text": text, **values})

    def fail(self, why: str) -> None:
        self.status = "fail"
        self.reasons.append(why)

    def na(self, why: str) -> None:
        if self.status == "ok":
            self.status = "n/a"
        self.reasons.append(why)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def entry(self) -> dict[str, Any]:
        reason = "; ".join(self.reasons) or "every check passed"
        return {
            "section": self.number,
            "name": self.name,
            "status": self.status,
            "reason": reason,
            "seconds": round(self.seconds, 1),
            "budget_s": self.budget_s,
            "rows": self.rows,
        }


@dataclass
class Check:
    """What every section works with."""

    device: Any  # torch.device
    sizes: Sizes
    smoke: bool
    data: Path  # Multi30k in ../shared/data's layout (real, or synthetic written to tmp)
    origin: str  # where the data came from
    tmp: Path
    backend: str  # torch.compile's backend: inductor on a GPU, eager in --smoke

    @property
    def cuda(self) -> bool:
        return bool(self.device.type == "cuda")

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()


def _quiet(event: str, info: dict[str, Any]) -> None:
    pass


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise OverBudget in this (the main) thread once ``seconds`` have passed."""

    def ring(signum: int, frame: Any) -> None:
        raise OverBudget(f"over its {seconds:.0f} s budget")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1.0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ----------------------------------------------------------------------------- data


def multi30k(data: str | None, tmp: Path, smoke: bool) -> tuple[Path, str]:
    """The Multi30k folder to read (``--data``, else the first of ``DATA_DIRS``), or synthetic
    sentences of Multi30k's lengths written in its layout (de ≈ 11, en ≈ 12 whitespace tokens)."""
    for folder in [Path(data).resolve()] if data else DATA_DIRS:
        if (folder / "train.de.gz").is_file() or (folder / "train.de").is_file():
            return folder, str(folder)
    if data:
        print(f"gpu_check: no Multi30k at {data} (train.de[.gz]); using synthetic sentences", flush=True)
    rng = random.Random(0)
    out = tmp / "multi30k-synthetic"
    out.mkdir(parents=True, exist_ok=True)

    def sentence(mean: float, vocab: int) -> str:
        n = max(2, min(40, round(rng.gauss(mean, 3.8))))
        return " ".join(f"w{int(vocab ** rng.random())}" for _ in range(n))  # Zipf-like word ids

    scale = 10 if smoke else 1
    for split, n in (("train", 29000), ("val", 1014), ("test_2016_flickr", 1000)):
        for lang, mean, vocab in (("de", 11.1, 18000), ("en", 11.9, 10000)):
            lines = [sentence(mean, vocab) for _ in range(n // scale)]
            (out / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out, "synthetic (Multi30k's lengths)"


def built_run(chk: Check, name: str, **changes: Any) -> Any:
    """A run as `embtool train multi30k` builds it (``loop.open_run`` then ``loop.build``: data,
    vocabularies, model, optimizer), at the check's sizes; call inside ``process_settings``."""
    from embtool.training.config import TrainConfig
    from embtool.training.loop import build, open_run

    s = chk.sizes
    settings: dict[str, Any] = dict(
        task="multi30k", data_dir=str(chk.data), tokenizer="whitespace", cache=False,
        d_model=s.d_model, heads=s.heads, layers=s.layers, ff=s.ff, batch_size=s.batch,
        max_train_examples=s.train_examples, max_eval_examples=16, epochs=1,
        device=chk.device.type, amp="off", out=str(chk.tmp / name),
    )  # fmt: skip
    spec, folder, _ = open_run(TrainConfig(**{**settings, **changes}), _quiet)
    return build(spec, folder, chk.device, _quiet)


def bench_train() -> Any:
    """bench/train.py as a module: the nn.Transformer reference and its step."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "bench" / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def graph_counts() -> tuple[int, int]:
    """(graphs compiled, graph breaks) so far in this process, from dynamo's counters."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"]), int(sum(counters["graph_break"].values()))


def reset_compiler() -> None:
    import torch

    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()


# ----------------------------------------------------------------------------- 1. environment


def tf32_state() -> dict[str, Any]:
    """TF32 as each API reads it: the legacy flags, and ``fp32_precision`` where this torch has it
    (a read that raises, as a legacy read can after the new API was set, is recorded as its error)."""
    import torch

    state: dict[str, Any] = {}
    reads = {
        "matmul.allow_tf32": lambda: torch.backends.cuda.matmul.allow_tf32,
        "matmul.fp32_precision": lambda: torch.backends.cuda.matmul.fp32_precision,
        "cudnn.allow_tf32": lambda: torch.backends.cudnn.allow_tf32,
        "cudnn.fp32_precision": lambda: torch.backends.cudnn.fp32_precision,
        "float32_matmul_precision": torch.get_float32_matmul_precision,
    }
    for name, read in reads.items():
        try:
            state[name] = read()
        except AttributeError:
            state[name] = "absent"
        except Exception as e:  # noqa: BLE001 - the error is the reading
            state[name] = f"raises {_first_line(e)[:120]}"
    return state


def tf32_agree(state: dict[str, Any]) -> bool:
    """Both APIs readable and saying the same about matmuls."""
    legacy, new = state["matmul.allow_tf32"], state["matmul.fp32_precision"]
    if not isinstance(legacy, bool):
        return False
    return new == "absent" or legacy == (new == "tf32")


def environment(sec: Section, chk: Check) -> None:
    import torch

    from embtool.training.amp import choose_amp
    from embtool.training.cpu import process_settings

    sec.row("torch", f"{torch.__version__} · CUDA build {torch.version.cuda} · "
            f"{torch.get_num_threads()} CPU threads", torch=torch.__version__, cuda=torch.version.cuda)  # fmt: skip
    if chk.cuda:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            cap = torch.cuda.get_device_capability(i)
            why = choose_amp("auto", torch.device("cuda", i)).why
            sec.row(f"GPU {i}", f"{p.name} · compute capability {cap[0]}.{cap[1]} · "
                    f"{p.total_memory / 2**30:.0f} GiB · {why}",
                    name=p.name, capability=f"{cap[0]}.{cap[1]}", memory_gib=p.total_memory / 2**30,
                    amp_auto=why)  # fmt: skip
    else:
        why = choose_amp("auto", chk.device).why
        sec.row("GPU", f"none (torch.cuda.is_available() is False) · on the CPU, {why}", name=None,
                amp_auto=why)  # fmt: skip
    sec.row("data", chk.origin, data=chk.origin)
    before = tf32_state()
    sec.row("TF32 now", _tf32_text(before), **before)
    # the trainer's settings for a CUDA run (``process_settings``) flip torch's flags, which can be
    # read back on a CPU too: both APIs must say TF32, and the old state must return after
    try:
        with process_settings(torch.device("cuda")):
            inside = tf32_state()
    except Exception as e:  # noqa: BLE001 - on a CPU the settings may ask for the GPU itself
        if chk.cuda:
            raise
        sec.row(
            "TF32 in a CUDA run's settings",
            f"n/a: not readable without CUDA ({_first_line(e)})",
            status="n/a",
        )
        return
    after = tf32_state()
    agree, restored = tf32_agree(inside), after == before
    sec.row("TF32 in a CUDA run's settings", f"{_tf32_text(inside)} · APIs agree: {agree} · "
            f"restored after: {restored}", agree=agree, restored=restored, **inside)  # fmt: skip
    if chk.cuda and not (agree and inside["matmul.allow_tf32"] is True and restored):
        sec.fail(
            "a CUDA run's TF32 settings: the two APIs disagree, a read raises, or TF32 is off or not restored"
        )
    elif not chk.cuda and not (agree and restored):
        sec.reasons.append("TF32 read back on this CPU disagrees (judged on CUDA only)")


def _tf32_text(state: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in state.items() if k.startswith("matmul"))


# ----------------------------------------------------------------------------- 2. speed


@dataclass
class Batches:
    """The speed matrix's run and its batches, collated once, before any clock runs."""

    run: Any  # loop.Run: cfg, model (its weights: ``init``), prep
    order: list[list[int]]  # each step's examples
    units: list[int]  # each step's target tokens
    init: dict[str, Any]  # the model's initial weights, for every embtool row
    overhead: int | None  # epoch.model_overhead: micro-batches on a CPU, none on a GPU
    # (whole, multiple) → each step's batch(es) on the device: whole (the reference's), or as
    # embtool's trainer cuts them (micro-batches on a CPU, whole on a GPU), lengths padded to multiple
    collated: dict[tuple[bool, int], list[Any]] = field(default_factory=dict)

    def steps(self, whole: bool, multiple: int) -> list[Any]:
        from embtool.training.epoch import collate_parts

        key = (whole, multiple)
        if key not in self.collated:
            train, kind, dev = self.run.prep.train, self.run.kind, self.run.engine.device
            self.collated[key] = [
                kind.collate(train, index, multiple).to(dev)
                if whole
                else collate_parts(train, index, kind, dev, self.overhead, multiple)
                for index in self.order
            ]
        return self.collated[key]


def pad_multiple(compiles: bool, device: Any) -> int:
    """What `train` pads a batch's lengths to a multiple of (``epoch.train_epoch``: the aligned
    ``batching.PAD_MULTIPLE`` when its step compiles or runs on CUDA), so the timed batches are
    those a run steps on."""
    from embtool.training.batching import PAD_MULTIPLE

    return PAD_MULTIPLE if compiles or device.type == "cuda" else 1


def speed(sec: Section, chk: Check) -> None:
    import torch

    from embtool.training.cpu import process_settings
    from embtool.training.epoch import model_overhead

    s, dev = chk.sizes, chk.device
    fp32 = "fp32/TF32" if chk.cuda else "fp32"
    rows = (  # (label, side, amp, compiled)
        (f"reference {fp32}", "reference", "off", False),
        ("reference bf16", "reference", "bf16", False),
        (f"embtool eager {fp32}", "embtool", "off", False),
        ("embtool eager bf16", "embtool", "bf16", False),
        ("embtool compiled bf16", "embtool", "bf16", True),
    )
    rates: dict[str, float] = {}
    with process_settings(dev):  # as `train` runs (TF32 matmuls on CUDA): both sides alike
        run = built_run(chk, "speed")
        cfg, mc, train = run.cfg, run.model.cfg, run.prep.train
        n = s.warmup + s.steps
        order = run.kind.batches(train, cfg, torch.Generator().manual_seed(cfg.seed))[:n]
        if len(order) < n:
            raise RuntimeError(f"only {len(order)} batches of {cfg.batch_size} pairs; {n} needed")
        b = Batches(
            run,
            order,
            [run.kind.units(train, index)[0] for index in order],
            {k: v.detach().clone() for k, v in run.model.state_dict().items()},
            model_overhead(mc, dev),
        )
        for _, side, _, compiled in rows:  # every row's batches, before any clock runs
            b.steps(side == "reference", pad_multiple(compiled, dev))
        sec.row("model and batches", f"D {mc.d_model}, {mc.n_heads} heads, {mc.enc_layers}+{mc.dec_layers} "
                f"layers, FFN {mc.d_ff}, vocab {mc.src_vocab}/{mc.tgt_vocab} · {n} batches of {cfg.batch_size} "
                f"pairs ({s.warmup} warm-up, {s.steps} timed) · {chk.origin}",
                d_model=mc.d_model, heads=mc.n_heads, layers=mc.enc_layers, ff=mc.d_ff,
                vocab=[mc.src_vocab, mc.tgt_vocab], batch=cfg.batch_size, warmup=s.warmup, steps=s.steps)  # fmt: skip
        for label, side, amp, compiled in rows:
            if sec.left() < 3:
                sec.fail(f"{label}: not run, the section's budget is spent")
                continue
            reset_compiler()
            torch.manual_seed(cfg.seed)
            if chk.cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            try:
                step, live, stepper = contender(chk, b, side, amp, compiled)
                figures = timed_row(chk, step, b.units)
            except Exception as e:  # noqa: BLE001 - a row that fails is a row; the others still run
                traceback.print_exc()
                sec.row(label, f"FAILED: {_first_line(e)}", error=_first_line(e))
                sec.fail(f"{label}: {_first_line(e)}")
                continue
            rates[label] = figures["tok_s"]
            peak = f"peak {figures['peak_mib']:,.0f} MiB" if chk.cuda else "peak n/a (CPU)"
            text = f"{figures['tok_s']:>9,.0f} tok/s · {figures['ms_step']:7.1f} ms/step · {peak}"
            if compiled:
                figures["record"] = stepper.record()  # what the run itself records in config.json
                figures["compiled_at_end"] = stepper.compiled is not None
                text += (f" · first step {figures['first_step_s']:.1f} s (compile) · {figures['graphs']} graphs, "
                         f"{figures['graph_breaks']} breaks · recompiles in the timed window "
                         f"{figures['recompiles']} · compiled at the end: {figures['compiled_at_end']}")  # fmt: skip
                if figures["recompiles"] and (chk.cuda or not figures["graph_breaks"]):
                    sec.fail(
                        f"{label}: {figures['recompiles']} recompiles inside the timed window (must be 0)"
                    )
                elif figures[
                    "recompiles"
                ]:  # cpu.Dropout's mask (Tensor.random_) breaks the graph on a CPU only
                    sec.reasons.append(
                        f"{label}: {figures['recompiles']} recompiles in the timed window, judged on CUDA only (on "
                        "a CPU the dropout mask's generator breaks the graph, and the pieces after a break "
                        "specialise again: per caller, and on equal source and target lengths)"
                    )
                if not figures["compiled_at_end"]:
                    sec.fail(f"{label}: the step fell back to eager ({figures['record'].get('fallback')})")
            sec.row(
                label, text, amp=amp, compiled=compiled, backend=chk.backend if compiled else None, **figures
            )
            if live is not None and amp == "bf16":
                sync_debug(sec, chk, label, live, n, stepper)
    judge_goal(sec, chk, rates, fp32)


Step = Callable[[int], None]  # one training step on batch i


def contender(chk: Check, b: Batches, side: str, amp: str, compiled: bool) -> tuple[Step, Step | None, Any]:
    """One row's step on pre-collated batch i; embtool's also as `train` takes it (collated then,
    pinned and copied without waiting), and its stepper. The reference is nn.Transformer as
    bench/train.py runs it; embtool's is its own (``objective.prepare``, ``epoch.train_step``,
    ``schedule.Schedule``), from the run's initial weights."""
    import torch

    from embtool.training.amp import Precision
    from embtool.training.engine import Engine
    from embtool.training.epoch import collate_parts, train_step
    from embtool.training.objective import prepare as prepare_step
    from embtool.training.schedule import Schedule

    cfg, mc, dev = b.run.cfg, b.run.model.cfg, chk.device
    if side == "reference":
        ref = bench_train()
        model = ref.Reference(
            mc.src_vocab, mc.tgt_vocab, mc.d_model, mc.n_heads, mc.enc_layers, mc.d_ff, mc.dropout
        )
        model.to(dev).train()
        betas = (cfg.adam_beta1, cfg.adam_beta2)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=betas, eps=cfg.adam_eps)
        dtype = torch.bfloat16 if amp == "bf16" else None

        whole = b.steps(True, pad_multiple(False, dev))

        def reference(i: int) -> None:
            ref.reference_step(model, opt, whole[i].src, whole[i].tgt_in, whole[i].tgt_out, dtype)

        return reference, None, None
    b.run.model.load_state_dict(b.init)
    b.run.model.train()
    ours = Schedule.make(b.run.model, cfg, dev, total=0)
    stepper = prepare_step(b.run.model, compile=compiled, backend=chk.backend, smoothing=cfg.label_smoothing)
    engine = Engine(dev, Precision.choose(amp, dev), stepper=stepper)

    multiple = pad_multiple(compiled, dev)
    collated = b.steps(False, multiple)

    def embtool(i: int) -> None:
        train_step(engine, ours, collated[i], b.units[i])

    def live(i: int) -> None:
        parts = collate_parts(b.run.prep.train, b.order[i], b.run.kind, dev, b.overhead, multiple)
        train_step(engine, ours, parts, b.units[i])

    return embtool, live, stepper


def timed_row(chk: Check, step: Callable[[int], None], units: list[int]) -> dict[str, Any]:
    """Warm-up steps, then the timed window over the rest: tok/s, ms/step, peak memory, the first
    step's seconds (compilation) and the graphs compiled before and inside the window."""
    import torch

    s = chk.sizes
    start = time.perf_counter()
    step(0)
    chk.sync()
    first = time.perf_counter() - start
    for i in range(1, s.warmup):
        step(i)
    chk.sync()
    graphs0, breaks0 = graph_counts()
    start = time.perf_counter()
    for i in range(s.warmup, s.warmup + s.steps):
        step(i)
    chk.sync()
    seconds = time.perf_counter() - start
    graphs1, breaks1 = graph_counts()
    return {
        "tok_s": sum(units[s.warmup : s.warmup + s.steps]) / seconds,
        "ms_step": 1e3 * seconds / s.steps,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if chk.cuda else None,
        "first_step_s": first,
        "graphs": graphs1,
        "graph_breaks": breaks1,
        "recompiles": graphs1 - graphs0 + breaks1 - breaks0,
    }


def sync_debug(sec: Section, chk: Check, label: str, step: Step, n: int, stepper: Any) -> None:
    """``SYNC_STEPS`` steps (over the ``n`` batches, round), collated as `train` does, with any
    host-device synchronisation an error. A compiled step that raises is redone eagerly
    (``Stepper.guarded``), so its fallback is a failure here too."""
    if not chk.cuda:
        sec.row(f"{label}: no host syncs", f"n/a: torch.cuda.set_sync_debug_mode {NO_CUDA}", status="n/a")
        return
    import torch

    chk.sync()
    was_compiled = stepper.compiled is not None
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(SYNC_STEPS):
            step(i % n)
    except RuntimeError as e:
        sec.row(f"{label}: no host syncs", f"FAILED: {_first_line(e)}", status="fail")
        sec.fail(f"{label}: a host sync within {SYNC_STEPS} steps ({_first_line(e)})")
        return
    finally:
        torch.cuda.set_sync_debug_mode(0)
    chk.sync()
    if was_compiled and stepper.compiled is None:
        fallback = stepper.record().get("fallback")
        sec.row(
            f"{label}: no host syncs",
            f"FAILED: the compiled step fell back to eager ({fallback})",
            status="fail",
        )
        sec.fail(f"{label}: under set_sync_debug_mode('error') the compiled step fell back ({fallback})")
        return
    sec.row(
        f"{label}: no host syncs", f"{SYNC_STEPS} steps under set_sync_debug_mode('error'): none", status="ok"
    )


def judge_goal(sec: Section, chk: Check, rates: dict[str, float], fp32: str) -> None:
    """The ≥ GOAL claim: embtool's compiled bf16 step against each reference row, one by one."""
    ours = rates.get("embtool compiled bf16")
    for ref in (f"reference {fp32}", "reference bf16"):
        if ours is None or ref not in rates:
            sec.row(f"goal vs {ref}", "n/a: a row is missing", status="n/a")
            continue
        ratio = ours / rates[ref]
        if not chk.cuda:
            sec.row(f"goal vs {ref}", f"{ratio:.2f}x · n/a: the ≥ {GOAL}x goal is judged on CUDA only",
                    ratio=ratio, met=None)  # fmt: skip
            continue
        met = ratio >= GOAL
        sec.row(f"goal vs {ref}", f"{ratio:.2f}x (goal ≥ {GOAL}x): {'met' if met else 'NOT met'}",
                ratio=ratio, met=met)  # fmt: skip
        if not met:
            sec.fail(f"compiled bf16 is {ratio:.2f}x {ref}, under the {GOAL}x goal")
    if not chk.cuda:
        sec.reasons.append(f"the {GOAL}x goal, peak memory and the sync check are CUDA's (n/a rows)")


# ----------------------------------------------------------------------------- 3. attention

# SDPA's aten ops, by the kernel they name (checked in this order; the math path shows as its own
# op in eager, and as plain matmuls and a softmax where a compiler decomposed it)
KERNELS = (
    ("cudnn", "_scaled_dot_product_cudnn_attention"),
    ("flash (cpu)", "_scaled_dot_product_flash_attention_for_cpu"),
    ("flash", "_scaled_dot_product_flash_attention"),
    ("efficient", "_scaled_dot_product_efficient_attention"),
    ("math", "_scaled_dot_product_attention_math"),
)


def kernel_of(names: set[str]) -> str:
    for kernel, op in KERNELS:
        if any(op in name for name in names):
            return kernel
    return "math (decomposed)"


def profiled(chk: Check, fn: Callable[[], Any]) -> tuple[Any, set[str]]:
    """``fn()``'s result and the names of every op and kernel it ran."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if chk.cuda else [])
    with profile(activities=acts) as prof:
        out = fn()
        chk.sync()
    return out, {e.key for e in prof.key_averages()}


def attention(sec: Section, chk: Check) -> None:
    import torch

    from embtool.model.layers import Attention
    from embtool.model.transformer import ModelConfig, key_padding_mask
    from embtool.training.amp import AMP_DTYPES, choose_amp
    from embtool.training.config import TrainConfig

    dev, B = chk.device, chk.sizes.attn_batch
    S, T = 37, 41  # odd lengths: neither a multiple of 8 nor equal
    amp = choose_amp("auto", dev).amp  # as a run on this device autocasts
    attn_p = TrainConfig().attn_dropout  # train's default: with dropout on the weights, other kernels apply
    g = torch.Generator().manual_seed(0)
    lengths = [S] + torch.randint(
        S // 2, S, (B - 1,), generator=g
    ).tolist()  # one full row, the others padded
    src = torch.tensor([[5] * n + [0] * (S - n) for n in lengths], device=dev)  # (B, S)
    mask = key_padding_mask(src, 0, True)  # (B, 1, 1, S), True where attention may look
    sec.row("inputs", f"batch {B}, source {S} (padded rows: {sum(n < S for n in lengths)}), target {T} · "
            f"autocast {amp} · attention dropout {attn_p:g}", batch=B, src_len=S, tgt_len=T, amp=amp,
            attn_dropout=attn_p)  # fmt: skip
    fused_missing: list[str] = []
    for D, H in ((512, 8), (300, 10)):
        mc = ModelConfig(src_vocab=8, tgt_vocab=8, d_model=D, n_heads=H, dropout=0.0, attn_dropout=attn_p)
        x = torch.randn(B, T, D, generator=g).to(dev)  # (B, T, D) decoder states
        xs = torch.randn(B, S, D, generator=g).to(dev)  # (B, S, D) encoder states
        memory = torch.randn(B, S, D, generator=g).to(dev)  # (B, S, D) the encoder's output
        cases = (  # (case, module, inputs, modes): the padded ones also compiled
            ("encoder self, padded", Attention(mc), (xs,), {"mask": mask}, ("eager", "compiled")),
            ("decoder self, causal", Attention(mc), (x,), {"causal": True}, ("eager",)),
            ("cross, padded", Attention(mc, cross=True), (x, memory), {"mask": mask}, ("eager", "compiled")),
        )
        for case, module, args, kwargs, modes in cases:
            label = f"D={D}/{H} heads, {case}"
            case_ = AttentionCase(label, module.to(dev).train(), args, kwargs, AMP_DTYPES.get(amp))
            eager_out = None
            for mode in modes:
                if sec.left() < 5:
                    sec.row(f"{label}, {mode}", "n/a: the section's budget is spent", status="n/a")
                    sec.na(f"{label}, {mode}: not run (budget)")
                    continue
                try:
                    out, values = case_.kernels(chk, mode)
                except Exception as e:  # noqa: BLE001 - a case that fails is a row
                    sec.row(f"{label}, {mode}", f"FAILED: {_first_line(e)}", error=_first_line(e))
                    sec.fail(f"{label}, {mode}: {_first_line(e)}")
                    continue
                text = f"forward {values['forward']} · backward {values['backward']}"
                if mode == "eager":
                    eager_out = out
                elif (
                    eager_out is not None and attn_p == 0
                ):  # compiled computes what eager does (no masks drawn)
                    err = float((out - eager_out).abs().max() / eager_out.abs().max().clamp(min=1e-6))
                    tol = 2e-2 if case_.dtype is not None else 1e-4
                    values["max_rel_diff_vs_eager"] = err
                    text += f" · vs eager {err:.1e}"
                    if not err <= tol:
                        sec.fail(f"{label}, compiled: output differs from eager by {err:.1e} (> {tol:g})")
                if chk.cuda and "math" in values["forward"] + values["backward"]:
                    fused_missing.append(f"{label}, {mode}")
                sec.row(f"{label}, {mode}", text, d_model=D, heads=H, **values)
            if chk.cuda:
                forced_backends(sec, case_)
    if not chk.cuda:
        sec.reasons.append("CPU kernels shown; whether a fused CUDA kernel runs is CUDA's to say (n/a here)")
    elif fused_missing:
        sec.fail("the math path ran (no fused kernel): " + "; ".join(fused_missing))


@dataclass
class AttentionCase:
    """One of the model's attention modules on one input, under the run's autocast."""

    label: str
    module: Any  # embtool.model.layers.Attention
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    dtype: Any  # the autocast dtype, or None (fp32)

    def forward(self, fn: Any) -> Any:
        import torch

        device = self.args[0].device.type
        with torch.autocast(device, dtype=self.dtype) if self.dtype is not None else nullcontext():
            return fn(*self.args, **self.kwargs)  # (B, T, D)

    def kernels(self, chk: Check, mode: str) -> tuple[Any, dict[str, Any]]:
        """The output (fp32) and which SDPA kernel ran forward and backward, eager or compiled."""
        import torch

        fn = self.module if mode == "eager" else torch.compile(self.module, dynamic=True, backend=chk.backend)
        self.forward(
            fn
        ).float().square().mean().backward()  # compiled (and kernels chosen) before the profiler
        self.module.zero_grad(set_to_none=True)
        out, fwd = profiled(chk, lambda: self.forward(fn))
        _, bwd = profiled(chk, lambda: out.float().square().mean().backward())
        values: dict[str, Any] = {"mode": mode, "forward": kernel_of(fwd), "backward": kernel_of(bwd)}
        if chk.cuda:  # the kernels themselves, for the reader
            values["kernels"] = sorted(n for n in fwd | bwd if "attention" in n.lower() or "fmha" in n)[:12]
        return out.detach().float(), values


def forced_backends(sec: Section, case: AttentionCase) -> None:
    """Which of SDPA's CUDA backends can run this case at all (``sdpa_kernel`` forcing each)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    took, refused = [], []
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        backend = getattr(SDPBackend, name, None)
        if backend is None:  # an older torch
            continue
        try:
            with sdpa_kernel([backend]):
                case.forward(case.module).float().sum().backward()
            took.append(name.lower())
        except RuntimeError:
            refused.append(name.lower())
    sec.row(f"{case.label}, forced", f"runs: {', '.join(took) or 'none'} · refused: {', '.join(refused) or 'none'}",
            runs=took, refused=refused)  # fmt: skip


# ----------------------------------------------------------------------------- 4. DDP


@contextmanager
def tf32_off(chk: Check) -> Iterator[None]:
    """fp32 matmuls in full fp32 on CUDA, through the setter the trainer's own TF32 uses
    (``training.cpu``: torch keeps both APIs in step with it), put back after."""
    if not chk.cuda:
        yield
        return
    import torch

    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def ddp(sec: Section, chk: Check) -> None:
    import copy

    import torch
    import torch.distributed as dist

    from embtool.training.cpu import process_settings
    from embtool.training.engine import Engine
    from embtool.training.epoch import collate_parts, model_overhead, train_step
    from embtool.training.objective import prepare as prepare_step
    from embtool.training.schedule import Schedule

    dev = chk.device
    backend = "nccl" if chk.cuda else "gloo"
    with process_settings(dev), tf32_off(chk):
        run = built_run(chk, "ddp", dropout=0.0, attn_dropout=0.0)
        cfg, train = run.cfg, run.prep.train
        plain_model = copy.deepcopy(run.model)  # the same initial weights
        order = run.kind.batches(train, cfg, torch.Generator().manual_seed(cfg.seed))[: chk.sizes.ddp_steps]
        overhead = model_overhead(run.model.cfg, dev)
        dist.init_process_group(backend, init_method=f"file://{chk.tmp / 'ddp-store'}", rank=0, world_size=1)
        try:
            ddp_device = torch.device("cuda", torch.cuda.current_device()) if chk.cuda else dev
            sides = []
            for model, distributed in ((run.model, True), (plain_model, False)):
                stepper = prepare_step(model, compile=False, ddp_device=ddp_device, distributed=distributed)
                engine = Engine.plain(dev)
                engine.stepper = stepper
                sides.append((engine, Schedule.make(model, cfg, dev, total=0)))
            losses = []
            for index in order:
                parts = collate_parts(train, index, run.kind, dev, overhead, pad_multiple(False, dev))
                n, _ = run.kind.units(train, index)
                pair = [float(train_step(engine, schedule, parts, n)) for engine, schedule in sides]
                losses.append(pair)
        finally:
            dist.destroy_process_group()
    loss_diff = max(abs(a - b) / max(abs(b), 1e-12) for a, b in losses)
    worst, worst_name = 0.0, ""
    plain = plain_model.state_dict()
    for name, x in run.model.state_dict().items():
        y = plain[name]
        d = float((x.double() - y.double()).abs().max() / y.double().abs().max().clamp(min=1e-12))
        if d > worst:
            worst, worst_name = d, name
    # one rank: DDP's all-reduce is a copy, so equal; CUDA's attention backward may add atomically
    tol = 1e-5 if chk.cuda else 1e-6
    ok = loss_diff <= tol and worst <= tol
    sec.row(f"{backend}, world size 1 vs plain step", f"{len(losses)} steps · losses max rel diff {loss_diff:.1e} · "
            f"weights max rel diff {worst:.1e}{f' ({worst_name})' if worst_name else ''} · bit-equal: {worst == 0.0}",
            backend=backend, steps=len(losses), losses=losses, loss_max_rel_diff=loss_diff,
            weight_max_rel_diff=worst, bit_equal=worst == 0.0)  # fmt: skip
    if not ok:
        sec.fail(f"DDP ({backend}) differs from the plain step beyond {tol:g}")


# ----------------------------------------------------------------------------- 5. the CLI


def cli(sec: Section, chk: Check) -> None:
    s = chk.sizes
    out = chk.tmp / "cli-run"
    first = ["multi30k", "--data-dir", str(chk.data), "--tokenizer", "whitespace", *s.cli_model,
             "--max-train-examples", str(s.cli_train), "--max-eval-examples", str(s.cli_eval), "--beam", "4",
             "--epochs", "1", "-o", str(out)]  # fmt: skip
    resume = ["--resume", str(out)]
    # (label, arguments, the device and amp config.json must then say, the epochs done after it)
    legs: list[tuple[str, list[str], str, str | None, int]]
    if chk.cuda:
        legs = [
            ("cuda, bf16, --compile, beam 4", [*first, "--device", "cuda", "--amp", "bf16", "--compile"],
             "cuda", "bf16", 1),
            ("resume on the CPU", [*resume, "--device", "cpu", "--epochs", "2"], "cpu", None, 2),
            ("resume on cuda, --amp fp16", [*resume, "--device", "cuda", "--amp", "fp16", "--epochs", "3"],
             "cuda", "fp16", 3),
            ("resume --nproc 2 (gloo)", [*resume, "--device", "cpu", "--nproc", "2", "--epochs", "4"], "cpu", None, 4),
        ]  # fmt: skip
    else:
        legs = [
            ("cpu, beam 4", [*first, "--device", "cpu", "--amp", "off"], "cpu", "off", 1),
            ("resume on the CPU, --amp fp16", [*resume, "--device", "cpu", "--amp", "fp16", "--epochs", "2"],
             "cpu", "fp16", 2),
            ("resume --nproc 2 (gloo)", [*resume, "--device", "cpu", "--nproc", "2", "--epochs", "3"], "cpu", None, 3),
        ]  # fmt: skip
        for leg in ("--device cuda --amp bf16 --compile (Inductor)", "resume cpu → cuda (--amp fp16)"):
            sec.row(leg, f"n/a: {NO_CUDA}", status="n/a")
        sec.reasons.append("the CUDA legs are n/a rows: " + NO_CUDA)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
           "EMBTOOL_CACHE": str(chk.tmp / "cache")}  # fmt: skip
    for label, args, device, amp, epochs in legs:
        if sec.left() < 5:
            sec.fail(f"{label}: not run, the section's budget is spent")
            continue
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "embtool", "-q", "train", *args], capture_output=True,
                                  text=True, env=env, timeout=sec.left() - 2)  # fmt: skip
        except subprocess.TimeoutExpired:
            sec.row(label, "FAILED: over the section's budget", status="fail")
            sec.fail(f"{label}: over the section's budget")
            return
        seconds = time.perf_counter() - start
        problem = leg_problem(proc, out, device, amp, epochs, args)
        if problem:
            sec.row(label, f"FAILED ({seconds:.0f} s): {problem}", status="fail", seconds=seconds)
            sec.fail(f"{label}: {problem}")
            return  # the next legs continue this run
        config = json.loads((out / "config.json").read_text())
        extra = {k: v for k, v in config.items() if "compile" in k}  # what the run says of its compiled step
        sec.row(label, f"ok ({seconds:.0f} s) · device {config['device']} · amp {config['amp']} · "
                f"world size {config.get('world_size', 1)} · epochs {epochs}{f' · {extra}' if extra else ''}",
                status="ok", seconds=seconds, device=config["device"], amp=config["amp"], **extra)  # fmt: skip
    if sec.status == "fail":  # a leg was not run
        return
    test = json.loads((out / "test.json").read_text())
    sec.row("test.json", f"BLEU {test.get('bleu', float('nan')):.2f} · beam {test.get('beam')}", **test)
    if test.get("beam") != 4 or "bleu" not in test:
        sec.fail("test.json lacks the beam-4 BLEU")


def leg_problem(
    proc: subprocess.CompletedProcess[str],
    out: Path,
    device: str,
    amp: str | None,
    epochs: int,
    args: list[str],
) -> str:
    """What is wrong after one `embtool train` leg ('' when nothing is)."""
    lines = proc.stderr.strip().splitlines()
    if proc.returncode:  # the first error line (a rank's own, under --nproc) and the last (the launcher's)
        said = [ln for ln in lines if ln.startswith("embtool: error")] or lines[-1:]
        return f"exit {proc.returncode}: " + " … ".join(
            dict.fromkeys([said[0][:300], said[-1][:300]]) if said else []
        )
    if any("--compile" in ln and "failed" in ln for ln in lines):
        return "--compile fell back to eager: " + next(ln for ln in lines if "--compile" in ln)[:300]
    config = json.loads((out / "config.json").read_text())
    compiled = config.get("compile")  # the run's own record of its compiled step, where it keeps one
    if isinstance(compiled, dict) and compiled.get("compiled") is False and "--compile" in args:
        return f"config.json's compile record: the run left the compiled path ({compiled.get('fallback')})"
    if not str(config.get("device", "")).startswith(device):
        return f"config.json says device {config.get('device')}, not {device}"
    if amp is not None and config.get("amp") != amp:
        return f"config.json says amp {config.get('amp')}, not {amp}"
    if "--nproc" in args and config.get("world_size") != 2:
        return f"config.json says world size {config.get('world_size')}, not 2"
    done = len((out / "metrics.jsonl").read_text().splitlines())
    if done != epochs:
        return f"metrics.jsonl has {done} epochs, not {epochs}"
    return ""


# ----------------------------------------------------------------------------- 6. memory


def memory(sec: Section, chk: Check) -> None:
    """Peak memory of one training step at IWSLT's sizes, for each of its Table 5 columns: the
    column's D, heads, FFN 512, batch size and vocabularies; sentences of IWSLT's lengths."""
    import torch

    from embtool.model.transformer import ModelConfig
    from embtool.model.transformer import build as build_model
    from embtool.tasks.registry import TASKS
    from embtool.training.amp import Precision
    from embtool.training.config import TrainConfig
    from embtool.training.cpu import process_settings
    from embtool.training.engine import Engine
    from embtool.training.epoch import collate_parts, model_overhead, train_step
    from embtool.training.kinds import TRANSLATION
    from embtool.training.objective import prepare as prepare_step
    from embtool.training.schedule import Schedule

    dev, k = chk.device, chk.sizes.memory_scale
    precision = Precision.choose("auto", dev)
    amp = precision.amp
    rng = random.Random(0)
    for col in TASKS["iwslt2017"].table5:
        if sec.left() < 3:
            sec.na(f"{col.family}: not run (budget)")
            continue
        cfg = TrainConfig(task="iwslt2017", family=col.family, device=dev.type, out="-").resolved()
        src_v, tgt_v = (round(float(v.rstrip("k")) * 1000) for v in col.vocab.split("/"))  # "27k/20k"
        d, heads = (cfg.d_model, cfg.heads) if k == 1 else (32, 4)  # --smoke: a toy width
        mc = ModelConfig(src_vocab=src_v // k, tgt_vocab=tgt_v // k, d_model=d, n_heads=heads,
                         n_layers=cfg.layers, d_ff=cfg.ff // k, dropout=cfg.dropout)  # fmt: skip
        batch = cfg.batch_size // k
        # TED talks: about 20 tokens a sentence, a long tail; a random batch pads to its longest
        examples = [([rng.randrange(4, mc.src_vocab) for _ in range(_iwslt_len(rng, 21))],
                     [rng.randrange(4, mc.tgt_vocab) for _ in range(_iwslt_len(rng, 20))]) for _ in range(batch)]  # fmt: skip
        with process_settings(dev):
            torch.manual_seed(0)
            model = build_model(mc).to(dev).train()
            schedule = Schedule.make(model, cfg, dev, total=0)
            engine = Engine(dev, precision, stepper=prepare_step(model, smoothing=cfg.label_smoothing))
            if chk.cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            index = list(range(batch))
            for _ in range(2):  # the first step also allocates Adam's state
                parts = collate_parts(
                    examples, index, TRANSLATION, dev, model_overhead(mc, dev), pad_multiple(False, dev)
                )
                n = sum(len(t) + 1 for _, t in examples)
                train_step(engine, schedule, parts, n)
            chk.sync()
            ms = 1e3 * (time.perf_counter() - start) / 2
        longest = max(max(len(s), len(t) + 1) for s, t in examples)
        shape = f"{col.family}: D {mc.d_model}, {mc.n_heads} heads, vocab {mc.src_vocab}/{mc.tgt_vocab}, batch {batch}, longest {longest}"
        if chk.cuda:
            peak = torch.cuda.max_memory_allocated() / 2**20
            reserved = torch.cuda.max_memory_reserved() / 2**20
            sec.row(f"iwslt2017 {col.family} step ({amp})", f"peak {peak:,.0f} MiB allocated, {reserved:,.0f} MiB "
                    f"reserved · {ms:.0f} ms/step · {shape}", peak_mib=peak, reserved_mib=reserved, ms_step=ms,
                    family=col.family, d_model=mc.d_model, batch=batch, longest=longest)  # fmt: skip
        else:
            import resource

            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            sec.row(f"iwslt2017 {col.family} step ({amp})", f"n/a: peak GPU memory {NO_CUDA} · toy step ran, "
                    f"{ms:.0f} ms · process RSS high-water {rss:,.0f} MiB · {shape}", status="n/a",
                    rss_mib=rss, ms_step=ms, family=col.family)  # fmt: skip
        del model, schedule, engine
    if not chk.cuda:
        sec.na(f"peak GPU memory {NO_CUDA}; the step's code ran at toy size on the CPU")


def _iwslt_len(rng: random.Random, mean: float) -> int:
    """A sentence length of IWSLT's shape: log-normal (σ 0.6: a long tail) with mean ``mean``, 2 to 200."""
    return max(2, min(200, round(mean * rng.lognormvariate(-0.18, 0.6))))  # E = exp(μ + σ²/2) = 1


# ----------------------------------------------------------------------------- driver

SECTIONS: tuple[tuple[str, Callable[[Section, Check], None]], ...] = (
    ("environment", environment),
    ("speed", speed),
    ("attention kernels", attention),
    ("DDP, world size 1", ddp),
    ("CLI end to end", cli),
    ("memory", memory),
)


def run_section(number: int, name: str, body: Callable[[Section, Check], None], chk: Check) -> Section:
    sec = Section(number, name, chk.sizes.budgets[number - 1] * _budget_scale())
    print(f"\n[{number}/{len(SECTIONS)}] {name} (budget {sec.budget_s:.0f} s)", flush=True)
    try:
        with deadline(sec.budget_s):
            body(sec, chk)
    except OverBudget as e:
        if chk.smoke and sec.status != "fail":  # toy sizes on a CPU: an overrun measures the machine's load
            sec.na(f"{e} (a --smoke run on a busy CPU; the rows before it stand)")
        else:
            sec.fail(str(e))
    except Exception as e:  # noqa: BLE001 - a section that fails is a verdict; the others still run
        traceback.print_exc()
        sec.fail(_first_line(e))
    finally:
        sec.seconds = time.perf_counter() - sec.started
        reset_compiler()
    print(
        f"  → {sec.status} ({sec.seconds:.0f} s){': ' + '; '.join(sec.reasons) if sec.reasons else ''}",
        flush=True,
    )
    return sec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="Multi30k folder ({train,val,test_2016_flickr}.{de,en}[.gz]); default: "
                    f"{', then '.join(str(p.relative_to(ROOT.parent)) for p in DATA_DIRS)}, else synthetic")  # fmt: skip
    ap.add_argument("--json-out", metavar="PATH", help="write one entry a section here")
    ap.add_argument("--smoke", action="store_true", help="every section at toy size (runs without CUDA)")
    ap.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda where available")
    ap.add_argument("--only", metavar="N,N", help="run only these sections (the others are n/a)")
    args = ap.parse_args(argv)
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: --device cuda {NO_CUDA}")
        return 2
    if device.type == "cpu" and not args.smoke:
        print("gpu_check: no CUDA device here (or torch without CUDA); nothing to check at full size. "
              "`--smoke` runs every section at toy size on the CPU.")  # fmt: skip
        return 0
    only = {int(x) for x in args.only.split(",")} if args.only else None
    t0 = time.perf_counter()
    sections = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        data, origin = multi30k(args.data, Path(tmp), args.smoke)
        backend = "inductor" if device.type == "cuda" and not args.smoke else "eager"
        chk = Check(device, SMOKE if args.smoke else GPU, args.smoke, data, origin, Path(tmp), backend)
        mode = "smoke (toy sizes)" if args.smoke else "full"
        print(f"gpu_check: {mode} on {device} · torch {torch.__version__} · compile backend {backend} · "
              f"data {origin}", flush=True)  # fmt: skip
        for number, (name, body) in enumerate(SECTIONS, start=1):
            if only is not None and number not in only:
                sec = Section(number, name, chk.sizes.budgets[number - 1], status="n/a")
                sec.reasons.append("not selected (--only)")
                sections.append(sec)
            else:
                sections.append(run_section(number, name, body, chk))
            if args.json_out:  # after each section: a run stopped from outside keeps what it measured
                write_report(Path(args.json_out), chk, sections, time.perf_counter() - t0)
    total = time.perf_counter() - t0
    print(f"\n### gpu_check ({mode}, {device}, torch {torch.__version__}; {total:.0f} s)\n")
    print("| section | status | reason |\n|---|---|---|")
    for sec in sections:
        print(
            f"| {sec.number} {sec.name} | {sec.status} | {'; '.join(sec.reasons) or 'every check passed'} |"
        )
    return 1 if any(sec.status == "fail" for sec in sections) else 0


def write_report(path: Path, chk: Check, sections: list[Section], seconds: float) -> None:
    """--json-out: the run's setting and one entry a section."""
    import torch

    report = {
        "smoke": chk.smoke,
        "device": str(chk.device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "data": chk.origin,
        "compile_backend": chk.backend,
        "seconds": round(seconds, 1),
        "sections": [sec.entry() for sec in sections],
    }
    path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
