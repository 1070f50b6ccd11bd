"""Training throughput of `embtool train` against a straightforward `torch.nn.Transformer` reference.

The paper's Multi30k model (D=512, 8 heads, 3+3 layers, FFN 2048, dropout 0.1, Adam β=(0.9, 0.98),
lr 2e-4) on Multi30k's vocabularies (spacy:de / spacy:en, min-freq 2), the same number of sentence
pairs per step (--batch-size, Table 5's 128) and the same number of steps:

- embtool: `embtool.training`'s own step and optimizer with the settings `train` uses by default
  on this device: the same random batches as the reference, each run as micro-batches of similar
  lengths, fused Adam, SDPA, the CPU dropout mask, glibc keeping freed memory for the next step;
  run twice, in fp32 and in bf16 autocast, next to what `--amp auto` picks here and why (bf16 on a
  CPU only with AMX, or AVX512-BF16 where its probe finds bf16 faster; `--paths auto` runs only the
  path auto picks);
- reference: `nn.Transformer` (batch_first), fp32, random fixed-size batches padded to their
  longest sentence, padding masks, full (B, T, V) logits with ignore_index.

Both do the same work: the same model (post-LN; nn.Transformer adds one LayerNorm after each
stack) and the same regularisation, dropout 0.1 on embeddings + positions, sub-layer outputs,
inside the FFN and on the attention weights (`train`'s default `--attn-dropout`, issue 22.1;
nn.Transformer applies its one rate there too). The faster setting, `--attn-dropout 0` (no dropout
mask over the attention weights), is its own row, on the path `--amp auto` picks, and its own ratio.

Each side is a child process of its own (its own memory allocator), and they take turns, one
step each (who goes first alternates), so both see the same machine load; the first step of each
is a warm-up. Prints target tokens per second, the ratio, each side's peak RSS over its steps,
and validation loss (Multi30k val, first 1000 pairs) after the same number of steps.

    python bench/train.py [--steps 12] [--batch-size 128] [--seeds 1] [--paths both|auto] [--data ../shared/data/multi30k]

The validation losses after 11 steps vary by about ±0.05 from seed to seed: --seeds 4 compares
means over four pairs of runs (about 1.5 minutes a seed on 2 cores).

Without Multi30k on disk it uses synthetic sentences with Multi30k-like lengths and vocabularies.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "multi30k"
D, HEADS, LAYERS, FF, LR = 512, 8, 3, 2048, 2e-4
FAST = "-attn0"  # a side name's suffix: the faster setting, --attn-dropout 0


def attn_dropout(side: str) -> float:
    """The attention-weight dropout of an embtool side: train's default, 0 for the faster row."""
    from embtool.training.config import TrainConfig

    return 0.0 if side.endswith(FAST) else TrainConfig().attn_dropout


# ----------------------------------------------------------------------------- data


def prepare(data: Path, out: Path, n_train: int, n_val: int) -> dict:
    """Token ids of the first n_train/n_val pairs over the full training split's vocabularies."""
    from embtool.tasks.local import read_parallel
    from embtool.text.vocab import build_vocab, count_tokens
    from embtool.training.data import SPECIALS

    if (data / "train.de.gz").is_file():
        from embtool.text.tokenizer import load_tokenizer

        src, tgt = read_parallel(data / "train.de.gz", data / "train.en.gz")
        vsrc, vtgt = read_parallel(data / "val.de.gz", data / "val.en.gz")
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
        "origin": origin,
        "src_vocab": len(sv),
        "tgt_vocab": len(tv),
        "train": list(zip(enc(s_tok[:n_train], si, True), enc(t_tok[:n_train], ti, False), strict=True)),
        "val": list(zip(enc(vs_tok[:n_val], si, True), enc(vt_tok[:n_val], ti, False), strict=True)),
    }
    out.write_text(json.dumps(payload))
    return payload


# ----------------------------------------------------------------------------- the reference


class Reference(nn.Module):
    """A plain nn.Transformer translation model, as PyTorch's translation tutorial writes it
    (dropout on embedding + position, as Vaswani et al. and that tutorial's PositionalEncoding).
    Its sizes default to the paper's Multi30k model; bench/gpu_check.py gives it the model it
    races."""

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        d: int = D,
        heads: int = HEADS,
        layers: int = LAYERS,
        ff: int = FF,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.d = d
        self.src_emb = nn.Embedding(src_vocab, d, padding_idx=0)
        self.tgt_emb = nn.Embedding(tgt_vocab, d, padding_idx=0)
        from embtool.tables.positional import sinusoidal

        self.pe: torch.Tensor
        self.register_buffer("pe", torch.from_numpy(sinusoidal(1024, d)))  # (L, D)
        self.drop = nn.Dropout(dropout)
        self.transformer = nn.Transformer(d, heads, layers, layers, ff, dropout, batch_first=True)
        self.out = nn.Linear(d, tgt_vocab)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        S, T = src.shape[1], tgt_in.shape[1]  # src (B, S), tgt_in (B, T)
        s = self.drop(self.src_emb(src) * math.sqrt(self.d) + self.pe[:S])  # (B, S, D)
        t = self.drop(self.tgt_emb(tgt_in) * math.sqrt(self.d) + self.pe[:T])  # (B, T, D)
        # every mask boolean (True: may not attend) and made on the inputs' device: a causal mask
        # made on the host beside CUDA padding masks stops the first CUDA step (a device mismatch),
        # and masks of one type are merged without a float copy; tgt_is_causal tells
        # nn.Transformer the mask is the causal one, so the baseline takes its fastest path
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).triu(1)  # (T, T)
        src_pad = src == 0  # (B, S)
        h = self.transformer(
            s,
            t,
            tgt_mask=causal,
            src_key_padding_mask=src_pad,
            tgt_key_padding_mask=tgt_in == 0,
            memory_key_padding_mask=src_pad,
            tgt_is_causal=True,
        )  # (B, T, D)
        return self.out(h)  # (B, T, V)


def reference_step(
    model: Reference,
    opt: torch.optim.Optimizer,
    src: torch.Tensor,
    tgt_in: torch.Tensor,
    tgt_out: torch.Tensor,
    amp: torch.dtype | None = None,
) -> torch.Tensor:
    """One training step of the tutorial's loop: full (B, T, V) logits, cross-entropy with
    ignore_index, Adam; autocast to ``amp`` when given. Returns the mean loss (not waited for)."""
    with torch.autocast(src.device.type, dtype=amp) if amp is not None else nullcontext():
        logits = model(src, tgt_in)  # (B, T, V)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), tgt_out.reshape(-1), ignore_index=0
        )
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()


def ref_batch(pairs: list, index: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    from embtool.training.batching import translation_batch

    b = translation_batch([pairs[i][0] for i in index], [pairs[i][1] for i in index])
    assert b.tgt_in is not None and b.tgt_out is not None
    return b.src, b.tgt_in, b.tgt_out, b.n_tokens


class Side:
    """One contender: its model, optimizer, batches, and a step function that returns target tokens."""

    def __init__(self, name: str, payload: dict, steps: int, batch: int, seed: int = 0) -> None:
        self.name = name
        self.payload = payload
        train = [tuple(x) for x in payload["train"]][: (steps + 1) * batch]
        self.train = train
        self.seconds = 0.0
        self.tokens = 0
        torch.manual_seed(seed)  # the initial weights
        if name == "reference":
            self.model: nn.Module = Reference(payload["src_vocab"], payload["tgt_vocab"])
            self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, betas=(0.9, 0.98), eps=1e-9)
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
            self.batches = [order[i : i + batch] for i in range(0, len(order), batch)]
            self.amp = "off"
        else:
            from embtool.model.transformer import ModelConfig, Seq2Seq
            from embtool.tables.transforms import xavier
            from embtool.training.amp import choose_amp
            from embtool.training.config import TrainConfig
            from embtool.training.kinds import TRANSLATION
            from embtool.training.schedule import Schedule

            self.cfg = TrainConfig(task="multi30k", batch_size=batch, epochs=1, lr=LR, device="cpu", out="-")
            path = name.removesuffix(FAST)
            # (a bool here before: "embtool-bf16" autocast nothing and ran in fp32)
            self.amp = choose_amp(
                "auto" if path == "embtool" else path.removeprefix("embtool-").replace("fp32", "off"),
                torch.device("cpu"),
            ).amp
            mc = ModelConfig(
                src_vocab=payload["src_vocab"],
                tgt_vocab=payload["tgt_vocab"],
                d_model=D,
                n_heads=HEADS,
                n_layers=LAYERS,
                d_ff=FF,
                dropout=self.cfg.dropout,
                attn_dropout=attn_dropout(name),
            )
            model = Seq2Seq(mc)
            for i, emb in enumerate(model.embeddings().values()):
                rows = xavier(
                    [str(j) for j in range(emb.num_embeddings)], D, seed=i + 10 * seed
                ).vectors  # (N, D)
                emb.weight.data.copy_(torch.as_tensor(rows))
            self.model = model
            self.schedule = Schedule.make(model, self.cfg, torch.device("cpu"), total=0)
            self.batches = TRANSLATION.batches(train, self.cfg, torch.Generator().manual_seed(seed))
        self.model.train()

    def step(self, i: int) -> None:
        index = self.batches[i]
        start = time.perf_counter()
        if self.name == "reference":
            src, tgt_in, tgt_out, n = ref_batch(self.train, index)
            reference_step(self.model, self.opt, src, tgt_in, tgt_out)  # type: ignore[arg-type]
        else:
            from embtool.training.amp import Precision
            from embtool.training.engine import Engine
            from embtool.training.epoch import collate_parts, model_overhead, train_step
            from embtool.training.kinds import TRANSLATION
            from embtool.training.objective import prepare as prepare_step

            cpu = torch.device("cpu")
            parts = collate_parts(self.train, index, TRANSLATION, cpu, model_overhead(self.model.cfg, cpu))
            n, _ = TRANSLATION.units(self.train, index)
            engine = Engine(cpu, Precision.choose(self.amp, cpu), stepper=prepare_step(self.model))
            train_step(engine, self.schedule, parts, n)
        if i > 0:  # step 0 is the warm-up
            self.seconds += time.perf_counter() - start
            self.tokens += n

    @torch.no_grad()
    def val_loss(self) -> float:
        self.model.eval()
        val = self.payload["val"]
        total, count = 0.0, 0
        for i in range(0, len(val), 128):
            src, tgt_in, tgt_out, n = ref_batch(val, list(range(i, min(i + 128, len(val)))))
            if self.name == "reference":
                logits = self.model(src, tgt_in)
                total += float(
                    F.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]),
                        tgt_out.reshape(-1),
                        ignore_index=0,
                        reduction="sum",
                    )
                )
            else:
                total += float(self.model.loss(src, tgt_in, tgt_out)[0])  # type: ignore[operator]
            count += n
        return total / count


def serve(which: str, payload_path: str, steps: int, batch: int, seed: int) -> None:
    """A child process that holds one side and runs a step when told to (one line per command on
    stdin: "step I", "val"; one JSON line back), so that each side has its own memory allocator."""
    if which != "reference":
        from embtool.training.cpu import process_settings

        process_settings(torch.device("cpu")).__enter__()  # as `train` does on a CPU, for the process's life
    side = Side(which, json.loads(Path(payload_path).read_text()), steps, batch, seed)
    torch.manual_seed(100 + seed)  # dropout
    print(json.dumps({"batches": len(side.batches), "amp": side.amp != "off"}), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "step":
            side.step(int(arg))
            reply = {"seconds": side.seconds, "tokens": side.tokens}
        else:  # "val": peak memory of the steps so far, then the validation loss
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            reply = {"peak_rss_mb": rss, "val": side.val_loss()}
        print(json.dumps(reply), flush=True)


class Child:
    def __init__(self, which: str, payload_path: Path, args: argparse.Namespace, seed: int) -> None:
        cmd = [sys.executable, __file__, "--serve", which, "--payload", str(payload_path), "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--seed", str(seed)]  # fmt: skip
        self.which = which
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = self.read()
        self.batches, self.amp = hello["batches"], hello["amp"]

    def ask(self, command: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"bench: the {self.which} side failed (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def run_pair(
    payload_path: Path, args: argparse.Namespace, seed: int, verbose: bool, names: tuple[str, ...]
) -> dict[str, dict]:
    """Every side, one step each in turn (the order rotates); their rates, memory, val loss."""
    sides = {w: Child(w, payload_path, args, seed) for w in names}
    last: dict[str, dict] = {}
    n_steps = min(c.batches for c in sides.values())
    for i in range(n_steps):
        turn = i % len(names)
        for w in names[turn:] + names[:turn]:
            last[w] = sides[w].ask(f"step {i}")
        if i and verbose:
            rates = " · ".join(f"{w} {last[w]['tokens'] / last[w]['seconds']:7.0f} tok/s" for w in names)
            print(f"  step {i:3d}: {rates}", flush=True)
    out = {}
    for w, child in sides.items():
        out[w] = {
            "tps": last[w]["tokens"] / last[w]["seconds"],
            "steps": n_steps,
            "amp": child.amp,
            **child.ask("val"),
        }
        child.close()
    return out


# ----------------------------------------------------------------------------- driver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per side (one more is warm-up)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="compare validation loss (and speed) over this many seeds: initial weights, batches, dropout",
    )
    ap.add_argument(
        "--paths",
        choices=["both", "auto"],
        default=None,
        help="embtool in fp32 and in bf16 (both; the default where the CPU has native bf16), or only "
        "the path --amp auto picks here (the default where bf16 would be emulated: about 100x slower)",
    )
    ap.add_argument(
        "--serve",
        choices=["reference", *(f"embtool{p}{f}" for p in ("", "-fp32", "-bf16") for f in ("", FAST))],
        help=argparse.SUPPRESS,
    )
    ap.add_argument("--payload", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.payload, args.steps, args.batch_size, args.seed)
        return
    with tempfile.TemporaryDirectory() as tmp:
        payload_path = Path(tmp) / "data.json"
        t0 = time.perf_counter()
        payload = prepare(Path(args.data), payload_path, (args.steps + 1) * args.batch_size, 1000)
        print(
            f"data: {payload['origin']} · vocab {payload['src_vocab']}/{payload['tgt_vocab']} · "
            f"{args.batch_size} pairs/step · {args.steps} timed steps · threads {torch.get_num_threads()} "
            f"· prepared in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        from embtool.training.amp import choose_amp
        from embtool.training.amp import cpu_bf16_support as amp_support

        auto = choose_amp("auto", torch.device("cpu"))
        picked = "embtool-bf16" if auto.bf16 else "embtool-fp32"
        native = any(amp_support())
        both = args.paths == "both" or (args.paths is None and native)
        paths = ("embtool-fp32", "embtool-bf16") if both else (picked,)
        paths += (picked + FAST,)  # the faster setting, on the path auto picks
        print(f"--amp auto picks {'bf16' if auto.bf16 else 'fp32'} here: {auto.why}", flush=True)
        if not both and args.paths is None:
            print("  (bf16 path skipped: emulated on this CPU; --paths both runs it anyway)", flush=True)
        runs = []
        for seed in range(args.seeds):
            runs.append(run_pair(payload_path, args, seed, seed == 0, ("reference", *paths)))
            rates = " · ".join(
                f"{w} {runs[-1][w]['tps']:.0f} tok/s, val loss {runs[-1][w]['val']:.3f}" for w in runs[-1]
            )
            print(f"  seed {seed}: {rates}", flush=True)

    def mean(w: str, key: str) -> float:
        return sum(run[w][key] for run in runs) / len(runs)

    n_steps = runs[0][picked]["steps"]
    seeds = f"mean of {args.seeds} seeds" if args.seeds > 1 else "1 seed"
    print(f"reference (nn.Transformer, fp32, padded random batches): {mean('reference', 'tps'):7.0f} target tok/s · "
          f"peak RSS {mean('reference', 'peak_rss_mb'):.0f} MB · val loss {mean('reference', 'val'):.3f} "
          f"after {n_steps} steps ({seeds})")  # fmt: skip
    for w in paths:
        mark = "  <- --amp auto" if w == picked else ""
        what = "  (--attn-dropout 0: no dropout mask over the attention weights)" if w.endswith(FAST) else ""
        print(f"embtool ({w[8:].removesuffix(FAST)}, micro-batches, SDPA, fused Adam, attn dropout {attn_dropout(w)}): "
              f"{mean(w, 'tps'):7.0f} target tok/s ({mean(w, 'tps') / mean('reference', 'tps'):.2f}x) · "
              f"peak RSS {mean(w, 'peak_rss_mb'):.0f} MB · val loss {mean(w, 'val'):.3f}{mark}{what}")  # fmt: skip

    def ratio(w: str) -> float:
        return sum(run[w]["tps"] / run["reference"]["tps"] for run in runs) / len(runs)

    print(f"throughput ratio embtool (--amp auto: {picked[8:]}, attn dropout {attn_dropout(picked)}, the same work)"
          f"/reference: {ratio(picked):.2f}x (goal >= 2x) · "
          f"peak memory ratio {mean(picked, 'peak_rss_mb') / mean('reference', 'peak_rss_mb'):.2f} · "
          f"val loss {mean(picked, 'val'):.3f} vs {mean('reference', 'val'):.3f}")  # fmt: skip
    print(f"faster setting (--attn-dropout 0, less regularisation than the reference)/reference: "
          f"{ratio(picked + FAST):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
