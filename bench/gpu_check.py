"""The GPU path checked at once (bench/gpu_check.sh runs it; ≤ 8 minutes on one GPU machine).

1. smoke: `embtool train` on a Multi30k slice with --device cuda --amp auto --compile: it finishes,
   config.json says which autocast it took; SDPA's fused kernels (flash, memory-efficient) run
   the model's attention shapes with and without a padding mask, head dim 64 and 30 (D=300, 10 heads);
2. DDP: the same run over all visible GPUs (`train --nproc N`, NCCL) against one process: the
   largest relative weight difference (the attention key biases left out: their true gradient is
   0, so Adam steps on rounding noise there);
3. speed: the paper's Multi30k model (D=512, 8 heads, 3+3 layers, FFN 2048), target tokens/s of
   embtool's step (bf16 where native, compiled loss, no host syncs) against a plain
   `nn.Transformer` step in fp32 on the same random batches (bench/train.py's reference), and the
   ratio (goal ≥ 1.5×); peak GPU memory of each.
It prints one summary table (Markdown, for the README). Without CUDA it says so and exits 0.

    python bench/gpu_check.py [--data ../shared/data/multi30k] [--steps 60] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "multi30k"
ROWS: list[tuple[str, str, str]] = []  # (check, result, detail)


def row(check: str, ok: bool | None, detail: str) -> None:
    ROWS.append((check, "ok" if ok else "n/a" if ok is None else "FAIL", detail))
    print(f"  {check}: {ROWS[-1][1]} · {detail}", flush=True)


def embtool(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "embtool", "-q", "train", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def smoke(data: Path, tmp: Path) -> None:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    args = ["multi30k", "--data-dir", str(data), "--max-train-examples", "4000", "--max-eval-examples", "200",
            "--layers", "2", "--epochs", "1", "--device", "cuda", "--amp", "auto", "--compile",
            "--tokenizer", "whitespace"]  # fmt: skip
    t0 = time.perf_counter()
    r = embtool(*args, "-o", str(tmp / "smoke"))
    ok = r.returncode == 0
    amp = json.loads((tmp / "smoke" / "config.json").read_text())["amp"] if ok else "?"
    row("train --device cuda --compile", ok, f"amp {amp}, {time.perf_counter() - t0:.0f}s"
        + ("" if ok else f": {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"))  # fmt: skip
    for head_dim, heads in ((64, 8), (30, 10)):
        for masked in (False, True):
            q = torch.randn(32, heads, 40, head_dim, device="cuda", dtype=torch.bfloat16)
            mask = torch.rand(32, 1, 1, 40, device="cuda") > 0.2 if masked else None
            took = []
            for name, backend in (
                ("flash", SDPBackend.FLASH_ATTENTION),
                ("efficient", SDPBackend.EFFICIENT_ATTENTION),
            ):
                try:
                    with sdpa_kernel(backend):
                        F.scaled_dot_product_attention(q, q, q, attn_mask=mask)
                    took.append(name)
                except RuntimeError:
                    pass
            row(f"SDPA head dim {head_dim}{' + padding mask' if masked else ''}", bool(took) or None,
                "fused: " + (", ".join(took) if took else "none (math path)"))  # fmt: skip


def ddp(data: Path, tmp: Path) -> None:
    import torch

    n = torch.cuda.device_count()
    if n < 2:
        row("DDP over visible GPUs", None, f"{n} GPU visible: needs 2")
        return
    args = ["multi30k", "--data-dir", str(data), "--max-train-examples", "4000", "--max-eval-examples", "100",
            "--layers", "2", "--epochs", "1", "--device", "cuda", "--amp", "off", "--dropout", "0",
            "--tokenizer", "whitespace"]  # fmt: skip
    t0 = time.perf_counter()
    one = embtool(*args, "-o", str(tmp / "one"))
    t1 = time.perf_counter()
    many = embtool(*args, "-o", str(tmp / "many"), "--nproc", str(n))
    t2 = time.perf_counter()
    if one.returncode or many.returncode:
        row(f"DDP {n} GPUs vs 1", False, (many.stderr or one.stderr).strip().splitlines()[-1][:200])
        return
    worst = max_rel_diff(tmp / "one" / "last.safetensors", tmp / "many" / "last.safetensors")
    row(f"DDP {n} GPUs vs 1 (NCCL)", worst < 1e-3,
        f"max rel weight diff {worst:.1e}; {t1 - t0:.0f}s vs {t2 - t1:.0f}s (start-up included)")  # fmt: skip


def max_rel_diff(a: Path, b: Path) -> float:
    import torch
    from safetensors.torch import load_file

    wa, wb = load_file(str(a)), load_file(str(b))
    worst = 0.0
    for name, x in wa.items():
        y = wb[name]
        keep = torch.ones(x.shape[0], dtype=torch.bool)
        d = x.shape[0]
        if name.endswith("qkv.bias"):
            keep[d // 3 : 2 * d // 3] = False
        elif name.endswith("kv.bias"):
            keep[: d // 2] = False
        x, y = x[keep].double(), y[keep].double()
        worst = max(worst, float((x - y).norm() / x.norm().clamp(min=1e-12)))
    return worst


def speed(data: Path, tmp: Path, steps: int, batch: int, device: str = "cuda") -> None:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT / "bench"))
    import train as bench  # bench/train.py: data, the nn.Transformer reference

    from embtool.model import ModelConfig, Seq2Seq
    from embtool.training.batching import translation_batch
    from embtool.training.config import TrainConfig
    from embtool.training.cpu import process_settings
    from embtool.training.epoch import batch_units, collate_parts, make_optimizer, pick_amp, train_step
    from embtool.training.objective import prepare as prepare_step

    payload = bench.prepare(data, tmp / "payload.json", (steps + 5) * batch, 0)
    train = [tuple(x) for x in payload["train"]]
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    batches = [order[i : i + batch] for i in range(0, len(order) - batch + 1, batch)][: steps + 5]

    def reference() -> tuple[Any, str]:
        model = bench.Reference(payload["src_vocab"], payload["tgt_vocab"]).to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=bench.LR, betas=(0.9, 0.98), eps=1e-9)

        def step(index: list[int]) -> None:
            b = translation_batch([train[i][0] for i in index], [train[i][1] for i in index])
            src, tgt_in, tgt_out = (t.to(dev) for t in (b.src, b.tgt_in, b.tgt_out))  # type: ignore[union-attr]
            logits = model(src, tgt_in)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=0)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step, "off"

    def ours() -> tuple[Any, str]:
        cfg = TrainConfig(task="multi30k", batch_size=batch, lr=bench.LR, device=dev.type, out="-")
        mc = ModelConfig(src_vocab=payload["src_vocab"], tgt_vocab=payload["tgt_vocab"], d_model=bench.D,
                         n_heads=bench.HEADS, n_layers=bench.LAYERS, d_ff=bench.FF)  # fmt: skip
        model = Seq2Seq(mc).to(dev).train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = make_optimizer(params, cfg, dev)
        amp = pick_amp("auto", dev)
        stepper = prepare_step(model, compile=cuda)

        def step(index: list[int]) -> None:
            parts = collate_parts(train, index, "translation", dev, None)
            n, _ = batch_units(train, index, "translation")
            train_step(stepper, opt, params, parts, n, 0.0, dev, amp)

        return step, amp

    results = {}
    for side, build in (("reference", reference), ("embtool", ours)):
        torch.manual_seed(0)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        step, amp = build()
        with process_settings(dev):
            for index in batches[:5]:  # warm-up (and compilation)
                step(index)
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            tokens = 0
            for index in batches[5:]:
                step(index)
                tokens += batch_units(train, index, "translation")[0]
            if cuda:
                torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
        results[side] = (tokens / seconds, peak, amp)
        del step
    (r_tps, r_mem, _), (e_tps, e_mem, e_amp) = results["reference"], results["embtool"]
    row(
        "Multi30k paper model: nn.Transformer fp32", True, f"{r_tps:,.0f} target tok/s, peak {r_mem:,.0f} MiB"
    )
    row(
        f"Multi30k paper model: embtool ({e_amp}{', compiled' if cuda else ''})",
        True,
        f"{e_tps:,.0f} target tok/s, peak {e_mem:,.0f} MiB",
    )
    ratio = e_tps / r_tps
    row("throughput ratio embtool / nn.Transformer", ratio >= 1.5, f"{ratio:.2f}x (goal >= 1.5x)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--steps", type=int, default=60, help="timed training steps per side in the speed check")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--speed-on-cpu", action="store_true", help=argparse.SUPPRESS)  # the script's own test
    args = ap.parse_args()
    import torch

    if args.speed_on_cpu:  # the speed check's code on a CPU, eager, for a CPU-only test of this script
        with tempfile.TemporaryDirectory() as tmp:
            speed(Path(args.data), Path(tmp), args.steps, args.batch_size, "cpu")
        return 0

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check. "
              "Run it on a machine with a GPU and a CUDA build of torch.")  # fmt: skip
        return 0
    data = Path(args.data)
    if not (data / "train.de.gz").is_file():
        print(f"gpu_check: no Multi30k at {data} (train.de.gz); give --data DIR")
        return 2
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, {names}", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for check in (smoke, ddp):
            try:
                check(data, Path(tmp))
            except Exception as e:  # noqa: BLE001 - a failed check is a row, the others still run
                row(
                    check.__name__,
                    False,
                    f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
                )
        try:
            speed(data, Path(tmp), args.steps, args.batch_size)
        except Exception as e:  # noqa: BLE001
            row("speed", False, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    print(f"\n### gpu_check ({names}; torch {torch.__version__}; {time.perf_counter() - t0:.0f}s)\n")
    print("| check | result | detail |\n|---|---|---|")
    for check, result, detail in ROWS:
        print(f"| {check} | {result} | {detail} |")
    return 1 if any(r == "FAIL" for _, r, _ in ROWS) else 0


if __name__ == "__main__":
    sys.exit(main())
