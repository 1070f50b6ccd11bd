"""Benchmark: `embtool extract` against loading the whole model with transformers.

A checkpoint shaped like mT5-small (embedding 250,112 × 512, its real 8+8 layers, separate
lm_head, random weights, saved with save_pretrained) and a 20,000-token vocabulary of its pieces.
Both sides run as fresh processes, alternately, after one warm-up each (the checkpoint is then in
the page cache for both). Peak anonymous memory is RssAnon sampled from /proc every 5 ms:
file-backed pages of a memory-mapped checkpoint do not count. Target: embtool ≤ 0.3× the
reference's wall time and ≤ 0.3× its peak anonymous memory, rows equal.

    .venv/bin/python bench/extract.py [--work DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VOCAB_SIZE = 250_112  # mT5's embedding rows
PIECES = 250_100  # mT5's tokenizer pieces (the last 12 rows are padding)
N_TOKENS = 20_000

REFERENCE = """
import sys, torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer
path, vocab, out = sys.argv[1:4]
tokens = [l.split("\\t")[0] for l in open(vocab, encoding="utf-8").read().splitlines() if not l.startswith("#embtool")]
ids = AutoTokenizer.from_pretrained(path).convert_tokens_to_ids(tokens)
with torch.no_grad():
    rows = AutoModel.from_pretrained(path).get_input_embeddings().weight[ids]
save_file({"embeddings": rows.contiguous()}, out)
"""


def build_checkpoint(folder: Path) -> None:
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration, T5Tokenizer

    print(f"building an mT5-small-shaped checkpoint in {folder} …", file=sys.stderr)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"▁w{i}", -1.0 - i * 1e-5) for i in range(PIECES - len(pieces))]
    T5Tokenizer(vocab=pieces, extra_ids=0).save_pretrained(folder)
    cfg = MT5Config(vocab_size=VOCAB_SIZE, d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8,
                    num_heads=6, feed_forward_proj="gated-gelu", tie_word_embeddings=False)  # fmt: skip
    torch.manual_seed(0)
    MT5ForConditionalGeneration(cfg).save_pretrained(folder)


def write_vocab(folder: Path, path: Path) -> None:
    rng = random.Random(0)
    ids = rng.sample(range(3, PIECES), N_TOKENS)
    lines = [f"#embtool tokenizer=hf:{folder}"] + [f"▁w{i - 3}" for i in ids]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def measure(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RssAnon (bytes, sampled every 5 ms) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    status = f"/proc/{proc.pid}/status"
    while proc.poll() is None:
        try:
            with open(status) as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
                        break
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.005)
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return wall, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--work", default="/tmp/embtool-bench-extract", help="folder for the checkpoint and outputs"
    )
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    work = Path(args.work)
    ckpt = work / "mt5-small-random"
    if not (ckpt / "model.safetensors").is_file():
        ckpt.mkdir(parents=True, exist_ok=True)
        build_checkpoint(ckpt)
    vocab = work / "vocab.txt"
    write_vocab(ckpt, vocab)
    ours_out, ref_out = work / "embtool.safetensors", work / "reference.safetensors"
    ours = [
        sys.executable,
        "-m",
        "embtool",
        "-q",
        "extract",
        str(ckpt),
        "--vocab",
        str(vocab),
        "-o",
        str(ours_out),
    ]
    ref = [sys.executable, "-c", REFERENCE, str(ckpt), str(vocab), str(ref_out)]
    measure(ours), measure(ref)  # warm-up: page cache, bytecode caches
    times: dict[str, list[float]] = {"embtool": [], "reference": []}
    mems: dict[str, list[int]] = {"embtool": [], "reference": []}
    for _ in range(args.repeats):
        for name, cmd in (("embtool", ours), ("reference", ref)):
            wall, peak = measure(cmd)
            times[name].append(wall)
            mems[name].append(peak)

    import torch
    from safetensors.torch import load_file

    from embtool.tables.table import load

    equal = torch.equal(load(ours_out).tensor(), load_file(str(ref_out))["embeddings"])
    size = (ckpt / "model.safetensors").stat().st_size
    print(f"checkpoint: {size / 2**30:.2f} GiB, embedding {VOCAB_SIZE} × 512; vocabulary {N_TOKENS} tokens; "
          f"{args.repeats} runs each, medians")  # fmt: skip
    for name in times:
        print(f"{name:9s}  wall {statistics.median(times[name]):6.2f} s   peak RssAnon "
              f"{statistics.median(mems[name]) / 2**20:7.0f} MiB   (walls {', '.join(f'{t:.2f}' for t in times[name])})")  # fmt: skip
    t_ratio = statistics.median(times["embtool"]) / statistics.median(times["reference"])
    m_ratio = statistics.median(mems["embtool"]) / statistics.median(mems["reference"])
    print(
        f"ratio      wall {t_ratio:.3f}×   memory {m_ratio:.3f}×   (target ≤ 0.3× each)   rows equal: {equal}"
    )
    if not equal or t_ratio > 0.3 or m_ratio > 0.3:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
