"""Speed and memory of `standardize` and `stats` on an mT5-base-sized table (250,000 × 768 float32).

Prints ratios against baselines measured in the same run (machines are noisy):
- standardize file → file  vs  safetensors alone loading and saving the same table (goal ≤ 2×)
- peak RSS of `embtool standardize`  vs  the table's size (goal ≤ 2.5×)
- stats  vs  one safetensors load (goal ≤ 1.5×)
Each is a whole process (`python -m embtool …` against `python -c "<safetensors load/save>"`), so
both pay the same interpreter and torch start-up; the commands take turns, each starting after a
`sync`, and the best of --repeat runs is kept.

    python bench/transforms.py [--rows 250000] [--dim 768] [--repeat 3]
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

import torch

from embtool.table import EmbeddingTable, save

BASE_LOAD_SAVE = (
    "import sys; from safetensors.torch import load_file, save_file;"
    "from safetensors import safe_open;"
    "meta = safe_open(sys.argv[1], 'pt').metadata();"
    "save_file(load_file(sys.argv[1]), sys.argv[2], metadata=meta)"
)
BASE_LOAD = "import sys; from safetensors.torch import load_file; load_file(sys.argv[1])"


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS in bytes of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: command failed: {' '.join(cmd)}")
    return seconds, usage.ru_maxrss * 1024  # Linux reports KiB


def interleaved(cmds: dict[str, list[str]], repeat: int, dst: Path) -> dict[str, tuple[float, int]]:
    """Best wall time and peak RSS per command, the commands taking turns.

    Writes of 700 MB depend on the kernel's write-back state, so before every run the output is
    removed and dirty pages are flushed (`sync`): each command starts from the same state.
    """
    times: dict[str, list[float]] = {k: [] for k in cmds}
    rss: dict[str, int] = dict.fromkeys(cmds, 0)
    for _ in range(repeat):
        for name, cmd in cmds.items():
            dst.unlink(missing_ok=True)
            os.sync()
            seconds, peak = run(cmd)
            times[name].append(seconds)
            rss[name] = max(rss[name], peak)
    return {k: (min(times[k]), rss[k]) for k in cmds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=250_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "t.safetensors", Path(tmp) / "out.safetensors"
        g = torch.Generator().manual_seed(0)
        vectors = torch.randn(args.rows, args.dim, generator=g) * 11.5 + 0.3  # (N, D), T5-like σ
        tokens = [f"▁tok{i}" for i in range(args.rows)]
        save(EmbeddingTable(vectors, tokens, source="bench"), src)
        del vectors
        size = src.stat().st_size
        table_mb = args.rows * args.dim * 4 / 2**20

        results = interleaved(
            {
                "load_save": [py, "-c", BASE_LOAD_SAVE, str(src), str(dst)],
                "standardize": [py, "-m", "embtool", "standardize", str(src), "--to", "xavier", "-o", str(dst)],
                "load": [py, "-c", BASE_LOAD, str(src)],
                "stats": [py, "-m", "embtool", "stats", "--json", str(src)],
            },
            args.repeat,
            dst,
        )
        base_ls, base_l = results["load_save"][0], results["load"][0]
        (std_s, std_rss), stats_s = results["standardize"], results["stats"][0]
        out = {
            "table": f"{args.rows} x {args.dim} float32 ({table_mb:.0f} MiB, file {size / 2**20:.0f} MiB)",
            "safetensors_load_save_s": round(base_ls, 3),
            "safetensors_load_s": round(base_l, 3),
            "standardize_s": round(std_s, 3),
            "stats_s": round(stats_s, 3),
            "standardize_time_ratio": round(std_s / base_ls, 2),
            "standardize_peak_rss_ratio": round(std_rss / (table_mb * 2**20), 2),
            "stats_time_ratio": round(stats_s / base_l, 2),
        }
    print(json.dumps(out, indent=2))
    print(
        f"standardize: {out['standardize_time_ratio']}x load+save time (goal <= 2), "
        f"peak RSS {out['standardize_peak_rss_ratio']}x table (goal <= 2.5); "
        f"stats: {out['stats_time_ratio']}x one load (goal <= 1.5)"
    )


if __name__ == "__main__":
    main()
