"""bench/gpu_check.py: its --smoke run on a CPU (every section at toy size, as CI runs it), and the
nn.Transformer reference its speed matrix races (bench/train.py), on the meta device."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SMOKE_SECONDS = 180  # the smoke run's promise: ≤ 3 minutes on 2 busy cores


def bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_runs_on_the_device_of_its_inputs():
    """Every mask the reference makes is on its inputs' device: on meta, a host-made causal mask
    beside meta padding masks is a device mismatch (as a CPU mask beside CUDA ones is on a GPU)."""
    model = bench("train").Reference(50, 60, d=16, heads=2, layers=1, ff=32).to("meta")
    src = torch.randint(1, 50, (3, 7), device="meta")
    tgt_in = torch.randint(1, 60, (3, 9), device="meta")
    logits = model(src, tgt_in)
    assert logits.device.type == "meta"
    assert tuple(logits.shape) == (3, 9, 60)


def test_reference_masks_the_future_and_the_padding():
    """The boolean masks mean what nn.Transformer reads them as: position t sees no later target
    token, and no position sees a padded source token."""
    torch.manual_seed(0)
    model = bench("train").Reference(30, 40, d=16, heads=2, layers=1, ff=32, dropout=0.0).eval()
    src = torch.tensor([[5, 6, 7, 3, 0, 0], [8, 9, 10, 11, 12, 3]])  # (B, S), row 0 padded
    tgt_in = torch.tensor([[2, 4, 5, 6, 7], [2, 8, 9, 10, 11]])  # (B, T)
    with torch.no_grad():
        logits = model(src, tgt_in)  # (B, T, V)
        later = tgt_in.clone()
        later[:, 3:] = 13  # other tokens after position 2
        assert torch.equal(model(src, later)[:, :3], logits[:, :3])
        assert not torch.allclose(model(src, later)[:, 3:], logits[:, 3:])
        shorter = model(src[:1, :4], tgt_in[:1])  # row 0 without its padding
        assert torch.allclose(shorter, logits[:1], atol=1e-5)


@pytest.mark.slow
def test_smoke_run_on_a_cpu_passes_every_section_it_can(tmp_path):
    """`gpu_check.py --smoke` on the CPU: exit 0 within its time, at least 4 sections ok, none
    failed, and every n/a section and row says why."""
    out = tmp_path / "gpu.json"
    env = {
        **os.environ,
        "GPU_CHECK_BUDGET_SCALE": "3",  # beside the other tests on 2 cores: the sections' own budgets stretch
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_check.py"),
            "--smoke",
            "--device",
            "cpu",
            "--json-out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=2 * SMOKE_SECONDS,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert [s["section"] for s in sections] == [1, 2, 3, 4, 5, 6]
    summary = {s["name"]: (s["status"], s["reason"]) for s in sections}
    assert all(s["status"] in ("ok", "n/a") for s in sections), summary
    assert sum(s["status"] == "ok" for s in sections) >= 4, summary
    for s in sections:
        assert s["reason"].strip(), s["name"]
        for row in s["rows"]:
            if row.get("status") == "n/a":
                assert row["text"].startswith("n/a: ") and len(row["text"]) > len("n/a: "), row
    assert report["device"] == "cpu" and report["smoke"] is True
    assert report["seconds"] <= SMOKE_SECONDS, f"{report['seconds']} s"
    speed = {row["row"]: row for row in sections[1]["rows"]}
    for label in (
        "reference fp32",
        "reference bf16",
        "embtool eager fp32",
        "embtool eager bf16",
        "embtool compiled bf16",
    ):
        assert speed[label]["tok_s"] > 0, label
    compiled = speed["embtool compiled bf16"]
    assert compiled["compiled_at_end"] is True and compiled["graphs"] >= 1, compiled
    ddp = sections[3]["rows"][0]
    assert ddp["bit_equal"] is True, ddp
