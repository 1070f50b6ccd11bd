"""Training throughput of `embtool train` against a straightforward `torch.nn.Transformer` reference.

The paper's Multi30k model (D=512, 8 heads, 3+3 layers, FFN 2048, dropout 0.1, Adam β=(0.9, 0.98),
lr 2e-4) on Multi30k's vocabularies (spacy:de / spacy:en, min-freq 2), the same number of sentence
pairs per step (--batch-size, Table 5's 128) and the same number of steps:

- embtool: `embtool.training`'s own epoch function and optimizer with the settings `train` uses
  by default on this device (length-bucketed batches, fused Adam, SDPA; bf16 autocast only where
  the CPU has native bf16);
- reference: `nn.Transformer` (batch_first), fp32, random fixed-size batches padded to their
  longest sentence, padding masks, full (B, T, V) logits with ignore_index.

Each side runs in its own child process (so peak RSS is its own), the two alternate --rounds
times, and the best tokens/s of each is kept (machines are noisy). Prints target tokens per
second, the ratio, peak RSS, and validation loss after the same number of steps.

    python bench/train.py [--steps 12] [--batch-size 128] [--rounds 2] [--data ../shared/data/multi30k]

Without Multi30k on disk it uses synthetic sentences with Multi30k-like lengths and vocabularies.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "multi30k"
D, HEADS, LAYERS, FF, LR = 512, 8, 3, 2048, 2e-4


# ----------------------------------------------------------------------------- data


def prepare(data: Path, out: Path, n_train: int, n_val: int) -> dict:
    """Token ids of the first n_train/n_val pairs over the full training split's vocabularies."""
    from embtool.tasks.local import read_pairs
    from embtool.training.setup import SPECIALS
    from embtool.vocab import build_vocab, count_tokens

    if (data / "train.de.gz").is_file():
        from embtool.tokenizer import load_tokenizer

        src, tgt = read_pairs(data / "train.de.gz", data / "train.en.gz")
        vsrc, vtgt = read_pairs(data / "val.de.gz", data / "val.en.gz")
        de, en = load_tokenizer("spacy:de"), load_tokenizer("spacy:en")
        s_tok, t_tok = list(de.tokenize_lines(src)), list(en.tokenize_lines(tgt))
        vs_tok, vt_tok = list(de.tokenize_lines(vsrc)), list(en.tokenize_lines(vtgt))
        origin = str(data)
    else:  # synthetic: Zipfian words, Multi30k-like lengths (de ≈ 12, en ≈ 13 tokens)
        rng = random.Random(0)

        def sent(mean: float, vocab: int) -> list[str]:
            n = max(2, min(40, int(rng.gauss(mean, 4))))
            return [f"w{int(vocab ** rng.random())}" for _ in range(n)]

        s_tok = [sent(12, 18000) for _ in range(29000)]
        t_tok = [sent(13, 10000) for _ in range(29000)]
        vs_tok, vt_tok = s_tok[-1000:], t_tok[-1000:]
        origin = "synthetic"
    sv = build_vocab(count_tokens(s_tok), 2, SPECIALS).tokens
    tv = build_vocab(count_tokens(t_tok), 2, SPECIALS).tokens
    si, ti = {t: i for i, t in enumerate(sv)}, {t: i for i, t in enumerate(tv)}

    def enc(toks: list[list[str]], index: dict[str, int], eos: bool) -> list[list[int]]:
        return [[index.get(t, 1) for t in x] + ([3] if eos else []) for x in toks]

    payload = {
        "origin": origin, "src_vocab": len(sv), "tgt_vocab": len(tv),
        "train": list(zip(enc(s_tok[:n_train], si, True), enc(t_tok[:n_train], ti, False), strict=True)),
        "val": list(zip(enc(vs_tok[:n_val], si, True), enc(vt_tok[:n_val], ti, False), strict=True)),
    }
    out.write_text(json.dumps(payload))
    return payload


# ----------------------------------------------------------------------------- the reference


class Reference(nn.Module):
    """A plain nn.Transformer translation model, as a tutorial would write it."""

    def __init__(self, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        self.src_emb = nn.Embedding(src_vocab, D, padding_idx=0)
        self.tgt_emb = nn.Embedding(tgt_vocab, D, padding_idx=0)
        from embtool.transforms import sinusoidal

        self.register_buffer("pe", sinusoidal(1024, D))
        self.transformer = nn.Transformer(D, HEADS, LAYERS, LAYERS, FF, 0.1, batch_first=True)
        self.out = nn.Linear(D, tgt_vocab)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        s = self.src_emb(src) * math.sqrt(D) + self.pe[: src.shape[1]]
        t = self.tgt_emb(tgt_in) * math.sqrt(D) + self.pe[: tgt_in.shape[1]]
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1])
        h = self.transformer(
            s, t, tgt_mask=causal, src_key_padding_mask=src == 0, tgt_key_padding_mask=tgt_in == 0,
            memory_key_padding_mask=src == 0,
        )
        return self.out(h)  # (B, T, V)


def ref_batch(pairs: list, index: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    from embtool.training.batching import translation_batch

    b = translation_batch([pairs[i][0] for i in index], [pairs[i][1] for i in index])
    assert b.tgt_in is not None and b.tgt_out is not None
    return b.src, b.tgt_in, b.tgt_out, b.n_tokens


def run_reference(payload: dict, steps: int, batch: int) -> dict:
    torch.manual_seed(0)
    model = Reference(payload["src_vocab"], payload["tgt_vocab"])
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.98), eps=1e-9)
    train = payload["train"]
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    batches = [order[i : i + batch] for i in range(0, len(order), batch)][:steps]

    def step(index: list[int]) -> int:
        src, tgt_in, tgt_out, n = ref_batch(train, index)
        logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return n

    model.train()
    step(batches[0])  # warm-up (not timed, not counted)
    start = time.perf_counter()
    tokens = sum(step(b) for b in batches[1:])
    seconds = time.perf_counter() - start
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        val = payload["val"]
        for i in range(0, len(val), batch):
            src, tgt_in, tgt_out, n = ref_batch(val, list(range(i, min(i + batch, len(val)))))
            logits = model(src, tgt_in)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                                           ignore_index=0, reduction="sum"))
            count += n
    return {"tokens_per_s": tokens / seconds, "seconds": seconds, "val_loss": total / count, "steps": len(batches) - 1}


# ----------------------------------------------------------------------------- embtool


def run_embtool(payload: dict, steps: int, batch: int) -> dict:
    from embtool.model import ModelConfig, Seq2Seq
    from embtool.training.config import TrainConfig
    from embtool.training.loop import eval_loss, make_optimizer, pick_amp, train_epoch
    from embtool.transforms import xavier

    cfg = TrainConfig(task="multi30k", batch_size=batch, epochs=1, lr=LR, device="cpu", out="unused")
    device = torch.device("cpu")
    amp = pick_amp(cfg.amp, device)
    torch.manual_seed(0)
    mc = ModelConfig(src_vocab=payload["src_vocab"], tgt_vocab=payload["tgt_vocab"], d_model=D, n_heads=HEADS,
                     n_layers=LAYERS, d_ff=FF, dropout=0.1)
    model = Seq2Seq(mc)
    for i, emb in enumerate(model.embeddings().values()):
        emb.weight.data.copy_(xavier([str(j) for j in range(emb.num_embeddings)], D, seed=i).vectors)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg, device)
    train = [tuple(x) for x in payload["train"]]
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    warm = [train[i] for i in order[:batch]]
    timed = [train[i] for i in order[batch : batch * steps]]

    def quiet(event: str, info: dict) -> None:
        pass

    train_epoch(model, opt, warm, "translation", cfg, 1, device, amp, quiet)  # warm-up
    _, seconds, tps = train_epoch(model, opt, timed, "translation", cfg, 2, device, amp, quiet)
    val_loss, _ = eval_loss(model, [tuple(x) for x in payload["val"]], "translation", cfg, device, amp)
    return {"tokens_per_s": tps, "seconds": seconds, "val_loss": val_loss, "amp": amp,
            "steps": math.ceil(len(timed) / batch)}


# ----------------------------------------------------------------------------- driver


def child(which: str, data: str, steps: int, batch: int) -> dict:
    payload = json.loads(Path(data).read_text())
    result = run_embtool(payload, steps, batch) if which == "embtool" else run_reference(payload, steps, batch)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per side (one more is warm-up)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--child", choices=["embtool", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--payload", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.payload, args.steps, args.batch_size)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        payload_path = Path(tmp) / "data.json"
        t0 = time.perf_counter()
        info = prepare(Path(args.data), payload_path, (args.steps + 1) * args.batch_size, 1000)
        print(f"data: {info['origin']} · vocab {info['src_vocab']}/{info['tgt_vocab']} · "
              f"{args.batch_size} pairs/step · {args.steps} timed steps · threads {torch.get_num_threads()} "
              f"· prepared in {time.perf_counter() - t0:.0f}s", flush=True)
        results: dict[str, list[dict]] = {"reference": [], "embtool": []}
        for r in range(args.rounds):
            for which in ("reference", "embtool") if r % 2 == 0 else ("embtool", "reference"):
                cmd = [sys.executable, __file__, "--child", which, "--payload", str(payload_path),
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
                out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
                if out.returncode != 0:
                    raise SystemExit(f"bench: {which} failed:\n{out.stderr}")
                res = json.loads(out.stdout.strip().splitlines()[-1])
                results[which].append(res)
                print(f"  round {r + 1} {which:9s}: {res['tokens_per_s']:8.0f} target tok/s  "
                      f"val loss {res['val_loss']:.3f}  peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    best = {k: max(v, key=lambda x: x["tokens_per_s"]) for k, v in results.items()}
    e, ref = best["embtool"], best["reference"]
    print(f"reference (nn.Transformer, fp32, padded)   : {ref['tokens_per_s']:8.0f} tok/s, "
          f"peak RSS {ref['peak_rss_mb']:.0f} MB, val loss {ref['val_loss']:.3f}")
    print(f"embtool (bucketed, amp={'bf16' if e['amp'] else 'off'}, SDPA)          : {e['tokens_per_s']:8.0f} tok/s, "
          f"peak RSS {e['peak_rss_mb']:.0f} MB, val loss {e['val_loss']:.3f}")
    print(f"throughput ratio embtool/reference: {e['tokens_per_s'] / ref['tokens_per_s']:.2f}x "
          f"(goal ≥ 2x); peak memory ratio {e['peak_rss_mb'] / ref['peak_rss_mb']:.2f}; "
          f"val loss {e['val_loss']:.3f} vs {ref['val_loss']:.3f}")


if __name__ == "__main__":
    main()
