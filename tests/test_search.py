"""search: the pruned search answers as gensim's own steps do, on numpy or torch rows, and a search
through torch leaves the caller's matmul settings as they were."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import matmul_state
from embtool.eval import search
from embtool.eval.keyed import Keys

torch = pytest.importorskip("torch")


def problem(seed: int, n: int = 600, dim: int = 10, questions: int = 400):
    """Random rows with case variants, duplicate rows (exact ties) and zero rows; questions of
    three distinct known words each."""
    rng = np.random.default_rng(seed)
    tokens = [f"w{i}" for i in range(n)]
    for i in range(n - 30, n):  # case variants of some early words: one key, several rows
        tokens[i] = tokens[i - n + 30].upper()
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors[rng.choice(n, 40)] = vectors[rng.choice(n, 40)]
    vectors[rng.choice(n, 5)] = 0.0
    vocab = Keys.build(tokens, case_sensitive=False)
    firsts = np.array(sorted(vocab.first.values()))
    abc = np.array([rng.choice(firsts, 3, replace=False) for _ in range(questions)])  # (Q, 3)
    d = rng.choice(firsts, questions)
    return vectors, vocab, abc[:, 0], abc[:, 1], abc[:, 2], d


@pytest.mark.parametrize("block", [1, 7, 64, 10_000])
@pytest.mark.parametrize("seed", [0, 1])
def test_add_answers_as_gensims_own_steps(monkeypatch, seed: int, block: int) -> None:
    vectors, vocab, a, b, c, d = problem(seed)
    monkeypatch.setattr(search, "BLOCK", block)
    answers, _ = search.solve(vectors, vocab, a, b, c, d)
    norms = np.linalg.norm(vectors, axis=1)
    expected = [search._gensim_answer(vectors, norms, vocab, *map(int, q)) for q in zip(a, b, c, strict=True)]
    assert answers == expected


@pytest.mark.parametrize("method", ["add", "mul"])
def test_expected_answers_only_speed_the_search_up(method: str) -> None:
    vectors, vocab, a, b, c, d = problem(2)
    wrong = np.random.default_rng(9).permutation(d)
    assert search.solve(vectors, vocab, a, b, c, d, method=method) == search.solve(
        vectors, vocab, a, b, c, wrong, method=method
    )


def test_mul_is_the_argmax_of_3cosmul() -> None:
    vectors, vocab, a, b, c, d = problem(3, questions=60)
    answers, fallbacks = search.solve(vectors, vocab, a, b, c, d, method="mul")
    assert fallbacks == 0
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float64), where=norms > 0)
    checked = 0
    for i, answer in enumerate(answers):
        cos = (unit @ unit[[b[i], c[i], a[i]]].T + 1) / 2  # (R, 3) in float64
        score = cos[:, 0] * cos[:, 1] / (cos[:, 2] + search.MUL_EPS)
        score[np.isin(vocab.group, vocab.group[[a[i], b[i], c[i]]]) | (norms[:, 0] == 0)] = -np.inf
        top = np.sort(score)[-2:]
        if top[1] - top[0] > 1e-5:  # far from a tie: float32 and float64 agree
            assert answer == vocab.keys[int(np.argmax(score))]
            checked += 1
    assert checked > 40


ROWS = {  # name → rows as the table may hold them, and the same values as float32 numpy
    "torch float32": lambda v: (torch.from_numpy(v), v),
    "torch, requires grad": lambda v: (torch.from_numpy(v).requires_grad_(), v),
    "numpy float16": lambda v: (v.astype(np.float16), v.astype(np.float16).astype(np.float32)),
    "torch float16": lambda v: (torch.from_numpy(v).half(), v.astype(np.float16).astype(np.float32)),
    "torch bfloat16": lambda v: (
        torch.from_numpy(v).bfloat16(),
        torch.from_numpy(v).bfloat16().float().numpy(),
    ),
    "numpy, Fortran order": lambda v: (np.asfortranarray(v), v),
}


@pytest.mark.parametrize("method", ["add", "mul"])
@pytest.mark.parametrize("kind", list(ROWS))
def test_numpy_and_torch_rows_give_the_same_answers(kind: str, method: str) -> None:
    vectors, vocab, a, b, c, d = problem(4)
    given, same = ROWS[kind](vectors)
    assert search.solve(given, vocab, a, b, c, d, method=method) == search.solve(
        same, vocab, a, b, c, d, method=method
    )


@pytest.mark.parametrize("block", [1, 3, 4, 64])
@pytest.mark.parametrize("op", ["max", "min"])
def test_blockreduce(monkeypatch, op: str, block: int) -> None:
    x = np.random.default_rng(0).standard_normal((3, 10)).astype(np.float32)
    monkeypatch.setattr(search, "BLOCK", block)
    f = max if op == "max" else min
    expected = [[f(row[s : s + block]) for s in range(0, 10, block)] for row in x]
    assert search._blockreduce(x, op).tolist() == expected


# ----------------------------------------------------------------------------- process-wide state


def search_through_torch(patch: Callable[[object, str, object], None]) -> dict[str, Any]:
    """One search with numpy's product, one with torch's (on CUDA when there is one, else on the
    CPU); the settings before, inside the float32 guard, and after."""
    from embtool.eval import product

    before = matmul_state()
    vectors, vocab, a, b, c, d = problem(5)
    numpy_answers = search.solve(vectors, vocab, a, b, c, d)
    inside = []
    guard = product.exact_float32_matmul

    @contextmanager
    def noting_guard() -> Iterator[None]:
        with guard():
            inside.append(matmul_state())
            yield

    patch(product, "exact_float32_matmul", noting_guard)
    patch(search, "cuda_device", lambda device: "cuda" if torch.cuda.is_available() else "cpu")
    torch_answers = search.solve(vectors, vocab, a, b, c, d)
    return {
        "before": before,
        "inside": inside,
        "after": matmul_state(),
        "same": torch_answers == numpy_answers,
    }


SETTINGS = {  # the caller's matmul setting, in torch's legacy or per-backend terms (None: as it is)
    "this process's": None,
    "legacy medium": "torch.set_float32_matmul_precision('medium')",
    "per-backend tf32": "torch.backends.cuda.matmul.fp32_precision = 'tf32'",
}
OTHER_PROCESS = """
import json, sys
import torch
{setting}
sys.path.insert(0, {tests!r})
from test_search import search_through_torch
print(json.dumps(search_through_torch(setattr)))
"""


@pytest.fixture(scope="module")
def other_processes() -> Iterator[dict[str, subprocess.Popen]]:
    """The other settings, each in a fresh process (torch's settings stick), all started at once."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", OTHER_PROCESS.format(setting=setting, tests=str(Path(__file__).parent))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, setting in SETTINGS.items()
        if setting
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_a_search_through_torch_restores_the_callers_matmul_settings(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    if SETTINGS[setting] is None:
        out = search_through_torch(monkeypatch.setattr)
    else:
        proc = request.getfixturevalue("other_processes")[setting]
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-2000:]
        out = json.loads(stdout)
    assert out["same"]
    assert len(out["inside"]) == 1  # the product ran through torch, inside the guard
    inside = out["inside"][0]
    assert inside["cuda"] == "ieee" or inside["precision"] == "highest"  # true float32 while multiplying
    assert inside["mkldnn"] in ("ieee", None)  # and no bf16 on the CPU either
    assert out["after"] == out["before"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["add", "mul"])
def test_cuda_answers_are_the_cpu_answers(method: str) -> None:
    vectors, vocab, a, b, c, d = problem(6)
    before = torch.backends.cuda.matmul.fp32_precision
    on_gpu = search.solve(vectors, vocab, a, b, c, d, method=method, device="cuda")
    assert torch.backends.cuda.matmul.fp32_precision == before
    assert on_gpu == search.solve(vectors, vocab, a, b, c, d, method=method)
