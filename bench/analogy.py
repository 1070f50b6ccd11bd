"""Benchmark: `embtool analogy` against gensim's `KeyedVectors.evaluate_word_analogies`.

A 100,000 × 300 table that holds every word of Mikolov's questions-words.txt at random rows:
random normal vectors, and per section one planted offset (b = a + offset + noise for each pair of
the section), so that many answers are right and many are not. Both answer all 19,544 questions
with gensim's defaults (3CosAdd, restrict 300,000, case-insensitive, unknown words skipped).

embtool runs as the real command in a fresh process (`embtool analogy TABLE --json`: start-up,
imports, reading the table and scoring, all counted), before and after gensim, median of the
runs; the library call alone is timed too. gensim's time is its evaluate_word_analogies call on
KeyedVectors already in memory. Target: the same counts per section and in total, and embtool's
time ≤ 1/30 of gensim's in the same run.

    .venv/bin/python bench/analogy.py [--every K]   # K > 1: every K-th question only (quick look)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from embtool.eval.analogy import default_questions, evaluate_analogies, read_questions
from embtool.tables.table import EmbeddingTable, save

N, DIM, NOISE, SEED = 100_000, 300, 2.0, 0
TARGET = 30.0


def bench_table(questions: Path) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(SEED)
    sections = read_questions(questions)
    words = list(dict.fromkeys(w for s in sections for q in s.questions for w in (q.a, q.b, q.c, q.d)))
    tokens = words + [f"w{i}" for i in range(N - len(words))]
    tokens = [tokens[i] for i in rng.permutation(N)]
    vectors = rng.standard_normal((N, DIM), dtype=np.float32)  # (N, D)
    row = {t: i for i, t in enumerate(tokens)}
    for s in sections:
        offset = rng.standard_normal(DIM, dtype=np.float32)  # the section's relation
        planted: set[str] = set()
        for q in s.questions:
            for x, y in ((q.a, q.b), (q.c, q.d)):
                if y not in planted:
                    planted.add(y)
                    noise = NOISE * rng.standard_normal(DIM, dtype=np.float32)
                    vectors[row[y]] = vectors[row[x]] + offset + noise
    return tokens, vectors


def subset(questions: Path, every: int, folder: Path) -> Path:
    if every == 1:
        return questions
    lines, n = [], 0
    for line in questions.read_text(encoding="utf-8").splitlines():
        n = 0 if line.startswith(":") else n + 1
        if line.startswith(":") or n % every == 1:
            lines.append(line)
    path = folder / f"questions-every-{every}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_cli(table: Path, questions: Path) -> tuple[float, dict]:
    exe = Path(sys.executable).with_name("embtool")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "embtool"]
    start = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "analogy", str(table), "--questions", str(questions), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=1, help="use every K-th question of each section")
    parser.add_argument("--repeats", type=int, default=3, help="embtool runs (median)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gensim.models import KeyedVectors

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        questions = subset(default_questions(), args.every, folder)
        tokens, vectors = bench_table(default_questions())
        table_path = folder / "bench.safetensors"
        table = EmbeddingTable(vectors, tokens, source="bench")
        save(table, table_path)
        print(f"table {N} × {DIM}, questions {questions.name}, {os.cpu_count()} CPU(s)")

        cli_times = []
        t, ours = run_cli(table_path, questions)
        cli_times.append(t)
        print(f"embtool analogy (command, run 1): {t:.2f} s")

        kv = KeyedVectors(DIM)
        kv.add_vectors(tokens, vectors)
        start = time.perf_counter()
        _, gensim_sections = kv.evaluate_word_analogies(str(questions))
        gensim_s = time.perf_counter() - start
        print(f"gensim evaluate_word_analogies: {gensim_s:.2f} s")

        for i in range(args.repeats - 1):
            t, again = run_cli(table_path, questions)
            assert again == ours
            cli_times.append(t)
            print(f"embtool analogy (command, run {i + 2}): {t:.2f} s")
        start = time.perf_counter()
        lib = evaluate_analogies(table, questions)
        lib_s = time.perf_counter() - start
        print(
            f"embtool.eval.analogy.evaluate_analogies (library, table in memory): {lib_s:.2f} s, "
            f"{lib.fallbacks} question(s) settled by gensim's own float32 steps"
        )

    theirs = [(s["section"], len(s["correct"]), len(s["incorrect"])) for s in gensim_sections]
    mine = [(s["section"], s["correct"], s["incorrect"]) for s in [*ours["sections"], ours["total"]]]
    print(f"\n{'section':30} {'gensim':>16} {'embtool':>16}")
    for (name, gc, gi), (_, ec, ei) in zip(theirs, mine, strict=True):
        print(
            f"{name:30} {gc:>7}/{gc + gi:<8} {ec:>7}/{ec + ei:<8}{'' if (gc, gi) == (ec, ei) else '  DIFFERENT'}"
        )
    same = theirs == mine
    cli_s = statistics.median(cli_times)
    ratio, lib_ratio = gensim_s / cli_s, gensim_s / lib_s
    print(f"\ncounts identical to gensim: {'yes' if same else 'NO'}")
    print(f"embtool command (median of {len(cli_times)}): {cli_s:.2f} s; gensim: {gensim_s:.2f} s")
    print(f"ratio gensim/embtool: {ratio:.1f}× (command), {lib_ratio:.1f}× (library); target ≥ {TARGET:.0f}×")
    ok = same and ratio >= TARGET
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
