"""Benchmark: `embtool export --format word2vec` (text) against gensim's `save_word2vec_format`.

A 100,000 × 300 float32 table of GloVe-like values (normal, σ 0.37) and word-like tokens, saved as
a safetensors table. gensim writes it from KeyedVectors already in memory
(`save_word2vec_format(path, binary=False)`: each value as numpy's shortest float32 repr). embtool
writes it three ways: the command in a fresh process (`embtool export T -f word2vec -o OUT`: start-up,
imports and reading the table all counted), the library call on the loaded (memory-mapped) table, and,
once, Python's `"%.9g"` formatting row by row (what export did before `format_rows`: the bytes must
be the same). The sides take turns, median of --repeat runs. Target: gensim's time ≥ 1.5× embtool's
command (the library call and the old formatter are printed for reference).

    .venv/bin/python bench/export.py [--rows 100000] [--dim 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from embtool.formats.export import export
from embtool.tables.table import EmbeddingTable, load, save

TARGET = 1.5  # gensim's seconds / embtool's


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percent_g(table: EmbeddingTable, path: Path) -> None:
    """The previous writer: one `%` format per row, 9 significant digits per value."""
    row_format = "%s" + " %.9g" * table.dim + "\n"
    with open(path, "wb") as f:
        f.write(f"{table.n} {table.dim}\n".encode())
        start = 0
        for block in table.blocks(1 << 18):
            values = block.tolist()
            names = table.tokens[start : start + len(values)]
            f.write("".join(row_format % (t, *r) for t, r in zip(names, values)).encode("utf-8"))
            start += len(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from gensim.models import KeyedVectors

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.rows, args.dim), dtype=np.float32) * np.float32(0.37)  # (N, D)
    tokens = [f"word{i}" for i in range(args.rows)]
    kv = KeyedVectors(args.dim)
    kv.add_vectors(tokens, vectors)
    exe = Path(sys.executable).with_name("embtool")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "embtool"]
    times: dict[str, list[float]] = {"command": [], "library": [], "gensim": []}
    with tempfile.TemporaryDirectory() as tmp:
        src, out, theirs = Path(tmp) / "t.safetensors", Path(tmp) / "e.vec", Path(tmp) / "g.vec"
        save(EmbeddingTable(vectors, tokens, source="bench"), src)
        table = load(src)
        cmd = [*command, "-q", "export", str(src), "-f", "word2vec", "-o", str(out)]
        for _ in range(args.repeat):
            times["command"].append(timed(lambda: subprocess.run(cmd, check=True)))
            times["library"].append(timed(lambda: export(table, "word2vec", str(out))))
            times["gensim"].append(timed(lambda: kv.save_word2vec_format(str(theirs), binary=False)))
        previous = timed(lambda: percent_g(table, Path(tmp) / "p.vec"))
        same = out.read_bytes() == (Path(tmp) / "p.vec").read_bytes()
        sizes = out.stat().st_size, theirs.stat().st_size
    cmd_s, lib_s, gensim_s = (statistics.median(times[k]) for k in ("command", "library", "gensim"))
    values = args.rows * args.dim
    print(f"table: {args.rows} × {args.dim} float32, word2vec text; median of {args.repeat}")
    print(f"embtool export (command):        {cmd_s:6.2f} s  {values / cmd_s / 1e6:5.1f} M values/s  {sizes[0] / 2**20:.0f} MiB")  # fmt: skip
    print(f"embtool export (library call):   {lib_s:6.2f} s  {values / lib_s / 1e6:5.1f} M values/s")
    print(f"gensim save_word2vec_format:     {gensim_s:6.2f} s  {values / gensim_s / 1e6:5.1f} M values/s  {sizes[1] / 2**20:.0f} MiB")  # fmt: skip
    print(
        f"previous writer ('%.9g' per value, once): {previous:.2f} s; same bytes: {'yes' if same else 'NO'}"
    )
    ratio = gensim_s / cmd_s
    print(
        f"ratio gensim/embtool: {ratio:.2f}× (command), {gensim_s / lib_s:.2f}× (library); "
        f"previous/embtool library: {previous / lib_s:.2f}×; target ≥ {TARGET}× (command)"
    )
    ok = same and ratio >= TARGET
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
