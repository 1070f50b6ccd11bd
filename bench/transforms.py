"""Speed and memory of the table commands, each a whole process against baselines in the same run.

1. A four-stage pipe on a 50,000 × 300 float32 table (GloVe-sized)

       embtool scale --by 20 T | embtool standardize --to xavier | embtool shuffle --seed 1 | embtool stats - --json

   against one `python -c "import torch"`: the table layer needs no torch, so the whole pipe
   should cost less than importing it once (goal ≤ 1.0; it was 4.3 when every stage imported torch).
2. On an mT5-base-sized table (250,000 × 768 float32):
   - standardize file → file  vs  safetensors (numpy) loading and saving the same table (goal ≤ 2×)
   - peak RSS of `embtool standardize`  vs  the table's size (goal ≤ 2.5×)
   - stats  vs  one safetensors (numpy) load (goal ≤ 1.5×)

Baselines use ``safetensors.numpy``, so both sides pay the same interpreter and numpy start-up.
The commands take turns, each starting after a `sync` with its output removed, and the best of
--repeat runs is kept. torch is imported only by the baseline that measures importing it.

    python bench/transforms.py [--rows 250000] [--dim 768] [--repeat 3] [--pipe-only]
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

import numpy as np

from embtool.tables.table import EmbeddingTable, save

BASE_LOAD_SAVE = (
    "import sys; from safetensors.numpy import load_file, save_file;"
    "from safetensors import safe_open;"
    "meta = safe_open(sys.argv[1], 'np').metadata();"
    "save_file(load_file(sys.argv[1]), sys.argv[2], metadata=meta)"
)
BASE_LOAD = "import sys; from safetensors.numpy import load_file; load_file(sys.argv[1])"
IMPORT_TORCH = "import torch"
PIPE = "{em} scale --by 20 {src} | {em} standardize --to xavier | {em} shuffle --seed 1 | {em} stats - --json"


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


def write_table(path: Path, rows: int, dim: int, std: float, mean: float) -> None:
    vectors = np.random.default_rng(0).standard_normal((rows, dim), dtype=np.float32)  # (N, D)
    vectors *= np.float32(std)
    vectors += np.float32(mean)
    save(EmbeddingTable(vectors, [f"▁tok{i}" for i in range(rows)], source="bench"), path)


def pipe(tmp: Path, repeat: int) -> dict[str, object]:
    src = tmp / "glove.safetensors"
    write_table(src, 50_000, 300, 0.37, 0.05)  # GloVe-like σ
    em = f"{sys.executable} -m embtool"
    results = interleaved(
        {
            "pipe": ["bash", "-o", "pipefail", "-c", PIPE.format(em=em, src=src)],
            "import_torch": [sys.executable, "-c", IMPORT_TORCH],
        },
        repeat,
        tmp / "none",
    )
    pipe_s, torch_s = results["pipe"][0], results["import_torch"][0]
    return {"pipe_table": "50000 x 300 float32", "pipe_s": round(pipe_s, 3), "import_torch_s": round(torch_s, 3),
            "pipe_vs_import_torch": round(pipe_s / torch_s, 2)}  # fmt: skip


def large(tmp: Path, rows: int, dim: int, repeat: int) -> dict[str, object]:
    py = sys.executable
    src, dst = tmp / "t.safetensors", tmp / "out.safetensors"
    write_table(src, rows, dim, 11.5, 0.3)  # T5-like σ
    size = src.stat().st_size
    table_mb = rows * dim * 4 / 2**20
    results = interleaved(
        {
            "load_save": [py, "-c", BASE_LOAD_SAVE, str(src), str(dst)],
            "standardize": [py, "-m", "embtool", "standardize", str(src), "--to", "xavier", "-o", str(dst)],
            "load": [py, "-c", BASE_LOAD, str(src)],
            "stats": [py, "-m", "embtool", "stats", "--json", str(src)],
        },
        repeat,
        dst,
    )
    base_ls, base_l = results["load_save"][0], results["load"][0]
    (std_s, std_rss), stats_s = results["standardize"], results["stats"][0]
    return {
        "table": f"{rows} x {dim} float32 ({table_mb:.0f} MiB, file {size / 2**20:.0f} MiB)",
        "safetensors_load_save_s": round(base_ls, 3),
        "safetensors_load_s": round(base_l, 3),
        "standardize_s": round(std_s, 3),
        "stats_s": round(stats_s, 3),
        "standardize_time_ratio": round(std_s / base_ls, 2),
        "standardize_peak_rss_ratio": round(std_rss / (table_mb * 2**20), 2),
        "stats_time_ratio": round(stats_s / base_l, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=250_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--pipe-only", action="store_true", help="only the four-stage pipe against importing torch"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = pipe(Path(tmp), args.repeat)
        if not args.pipe_only:
            out.update(large(Path(tmp), args.rows, args.dim, args.repeat))
    print(json.dumps(out, indent=2))
    print(f"pipe of 4 table commands: {out['pipe_vs_import_torch']}x one `import torch` (goal <= 1.0)")
    if not args.pipe_only:
        print(
            f"standardize: {out['standardize_time_ratio']}x load+save time (goal <= 2), "
            f"peak RSS {out['standardize_peak_rss_ratio']}x table (goal <= 2.5); "
            f"stats: {out['stats_time_ratio']}x one load (goal <= 1.5)"
        )


if __name__ == "__main__":
    main()
