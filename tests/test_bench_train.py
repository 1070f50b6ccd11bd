"""bench/train.py compares equal work (issue 22.1): embtool's default side has the reference's
regularisation, attention-weight dropout included; the faster setting (--attn-dropout 0) is a side
of its own."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "bench" / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dropouts(model: nn.Module) -> set[float]:
    """Every dropout rate in ``model``: nn.Dropout modules and nn.MultiheadAttention's weight dropout."""
    rates = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    return rates | {m.dropout for m in model.modules() if isinstance(m, nn.MultiheadAttention)}


@pytest.mark.parametrize("path", ["embtool-fp32", "embtool-bf16", "embtool"])
def test_the_default_side_regularises_as_the_reference(bench, path) -> None:
    payload = {"src_vocab": 12, "tgt_vocab": 14, "train": [[[4, 5, 3], [6, 7]]] * 8, "val": []}
    side = bench.Side(path, payload, steps=1, batch=4)
    ref = bench.Reference(12, 14, d=16, heads=2, layers=1, ff=32)
    attn = {m.dropout for m in ref.modules() if isinstance(m, nn.MultiheadAttention)}
    assert attn == {0.1}  # nn.Transformer's one rate, on the attention weights too
    cfg = side.model.cfg
    assert cfg.attn_dropout == 0.1 and cfg.dropout == 0.1 and cfg.ffn_dropout in (None, 0.1)
    assert _dropouts(ref) == {0.1}


def test_the_faster_side_drops_only_the_attention_dropout(bench) -> None:
    payload = {"src_vocab": 12, "tgt_vocab": 14, "train": [[[4, 5, 3], [6, 7]]] * 8, "val": []}
    fast = bench.Side("embtool-fp32" + bench.FAST, payload, steps=1, batch=4)
    assert fast.model.cfg.attn_dropout == 0.0 and fast.model.cfg.dropout == 0.1
    assert bench.attn_dropout("embtool-fp32" + bench.FAST) == 0.0
