"""product: where the search's product runs (--device), its accuracy, the float32 guard, and a
CPU evaluation that never imports torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import matmul_state
from embtool.core.errors import BadInput
from embtool.eval.product import cosines, cuda_device, exact_float32_matmul


@pytest.mark.parametrize("device", ["cpu", "cpu:0"])
def test_the_cpu_is_numpys(device: str) -> None:
    assert cuda_device(device) is None


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu:x", "--device 'tpu:x' is not a device; use cpu, cuda or cuda:N"),
        ("meta", "--device meta: only cpu and cuda are supported"),
        ("cuda:99", "--device cuda:99: "),  # no CUDA here, or not 100 devices
    ],
    ids=["not-a-device", "other-backend", "no-such-cuda"],
)
def test_bad_devices_name_the_option(device: str, message: str) -> None:
    pytest.importorskip("torch")
    with pytest.raises(BadInput, match="^" + re.escape(message)):
        cuda_device(device)


def test_cuda_without_a_gpu_says_so() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    with pytest.raises(BadInput, match="no CUDA device is available here; use --device cpu"):
        cuda_device("cuda")


def unit_rows(seed: int, n: int = 300, dim: int = 50) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("through", ["numpy", "torch"])
def test_cosines_are_within_the_float32_bound(through: str) -> None:
    unit = unit_rows(0)
    words = np.array([3, 0, 299, 3])
    if through == "torch":
        pytest.importorskip("torch")
    sims = cosines(unit, words, None if through == "numpy" else "cpu")  # "cpu": torch's path, here
    exact = unit[words].astype(np.float64) @ unit.T.astype(np.float64)
    assert sims.shape == (4, 300) and sims.dtype == np.float32
    # the search's δ assumes |S − Ŝ| ≤ D·u for unit rows (Σ|a_i b_i| ≤ 1)
    assert np.abs(sims - exact).max() <= unit.shape[1] * 2.0**-24
    assert np.abs(sims[0, 3] - 1) < 1e-6 and (sims[0] == sims[3]).all()


def test_the_guard_restores_the_settings_also_on_an_error() -> None:
    torch = pytest.importorskip("torch")
    backends = [torch.backends.cuda.matmul, getattr(torch.backends.mkldnn, "matmul", None)]
    if not all(hasattr(b, "fp32_precision") for b in backends):
        pytest.skip("torch < 2.9 has one legacy setting; test_search covers it")
    saved = [b.fp32_precision for b in backends]
    try:
        backends[0].fp32_precision, backends[1].fp32_precision = "tf32", "bf16"  # a caller that allows both
        before = matmul_state()
        with exact_float32_matmul():
            inside = matmul_state()
        assert (inside["cuda"], inside["mkldnn"]) == ("ieee", "ieee")
        assert matmul_state() == before
        with pytest.raises(KeyError), exact_float32_matmul():
            raise KeyError("in the block")
        assert matmul_state() == before
    finally:
        for b, value in zip(backends, saved, strict=True):
            b.fp32_precision = value


TORCH_FREE = """
import sys, types
import numpy as np
from embtool.eval.analogy import evaluate_analogies, parse_questions
from embtool.eval.similarity import evaluate_pairs
rows = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float16)
table = types.SimpleNamespace(vectors=rows, tokens=list("abcdef"))  # only what eval reads
result = evaluate_analogies(table, parse_questions(b": s\\na b c d\\n"))
pairs = sys.argv[1]
open(pairs, "w").write("a\\tb\\t1\\nc\\td\\t2\\ne\\tf\\t3\\n")
rho = evaluate_pairs(table, pairs).spearman
print(result.total.answered, -1 <= rho <= 1, sorted(m for m in sys.modules if m.split(".")[0] == "torch"))
"""


def test_a_cpu_evaluation_of_numpy_rows_never_imports_torch(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(tmp_path / "pairs.tsv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "True", "[]"]
