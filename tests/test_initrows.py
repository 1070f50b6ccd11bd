"""The model's initial rows against Xavier's σ for the model, and --standardize (Eq. 1 / Eq. 4)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import reverse_task, tiny_cfg, train_dir
from embtool.tables.stats import xavier_std
from embtool.training.initrows import WARN_FACTOR, check_rows, standardize_rows


def test_xavier_is_eq1_with_the_models_n() -> None:
    rows = torch.randn(200, 30, generator=torch.Generator().manual_seed(0)) * 3 + 1  # (N, D)
    out, info = standardize_rows(rows, "xavier")
    x = out.double()
    assert abs(float(x.mean())) < 1e-6
    assert float(x.std()) == pytest.approx(math.sqrt(2 / (200 + 30)), rel=1e-6)
    assert info["to_std"] == xavier_std(200, 30) and info["from_std"] == pytest.approx(3, rel=0.1)


def test_to_a_table_is_eq4(tmp_path, make_table) -> None:
    from embtool.tables.table import save

    target = np.random.default_rng(0).normal(0.5, 0.04, (50, 8)).astype(np.float32)
    save(make_table(target), tmp_path / "bert.safetensors")
    rows = torch.rand(20, 8, generator=torch.Generator().manual_seed(1))
    out, _ = standardize_rows(rows, str(tmp_path / "bert.safetensors"))
    assert float(out.double().mean()) == pytest.approx(float(target.mean(dtype=np.float64)), rel=1e-5)
    assert float(out.double().std()) == pytest.approx(float(target.std(ddof=1, dtype=np.float64)), rel=1e-5)


def test_to_a_table_of_equal_values_is_refused(tmp_path, make_table) -> None:
    from embtool.core.errors import BadInput
    from embtool.tables.table import save

    save(make_table(np.full((5, 8), 0.25, np.float32)), tmp_path / "flat.safetensors")
    with pytest.raises(BadInput, match=r"--standardize .*flat.safetensors: its σ is 0.0; there is no spread"):
        standardize_rows(torch.rand(4, 8), str(tmp_path / "flat.safetensors"))


def test_check_flags_rows_off_by_more_than_the_factor() -> None:
    sx = xavier_std(100, 10)
    near = torch.randn(100, 10, generator=torch.Generator().manual_seed(0)) * sx
    assert not check_rows(near)["off"]
    assert check_rows(near * (WARN_FACTOR + 0.3))["off"] and check_rows(near / 2)["off"]


def test_a_run_on_a_smaller_vocabulary_starts_at_the_models_xavier_sigma(tmp_path) -> None:
    """A table of 14 + 500 tokens standardized for its own N would start the 14-row model at
    half Xavier's σ; --standardize xavier starts it at σ_x = √(2/(N_model + D))."""
    from embtool.tables.table import EmbeddingTable, save

    files = reverse_task(tmp_path, n_train=60, n_val=4)
    tokens = [
        "<unk>",
        "<pad>",
        "<bos>",
        "<eos>",
        *[str(i) for i in range(10)],
        *[f"x{i}" for i in range(500)],
    ]
    vectors = np.random.default_rng(0).normal(0.1, 0.4, (len(tokens), 32)).astype(np.float32)  # GloVe-like σ
    save(EmbeddingTable(vectors, tokens, tokenizer="whitespace"), tmp_path / "big.safetensors")
    cfg = tiny_cfg(
        files, tmp_path / "run", emb=str(tmp_path / "big.safetensors"), standardize="xavier", epochs=1
    )
    config = json.loads((train_dir(cfg) / "config.json").read_text())
    for side in ("src", "tgt"):
        init = config["init"][side]
        n = config["vocab"][f"{side}_size"]
        assert init["n"] == n < 30 and init["standardize"]["to"] == "xavier"
        assert init["std"] == pytest.approx(math.sqrt(2 / (n + 32)), rel=1e-6)
        assert not init["off"]
    assert config["train"]["standardize"] == "xavier"


def test_rows_far_from_xavier_are_warned_about(tmp_path) -> None:
    from embtool.tables.table import EmbeddingTable, save

    files = reverse_task(tmp_path, n_train=60, n_val=4)
    tokens = ["<unk>", "<pad>", "<bos>", "<eos>", *[str(i) for i in range(10)]]
    vectors = np.random.default_rng(0).normal(0, 0.4, (len(tokens), 32)).astype(np.float32)
    save(EmbeddingTable(vectors, tokens, tokenizer="whitespace"), tmp_path / "g.safetensors")
    logs: list[str] = []
    cfg = tiny_cfg(files, tmp_path / "run", emb=str(tmp_path / "g.safetensors"), epochs=1)
    train_dir(cfg, lambda event, info: logs.append(info.get("message", "")) if event == "log" else None)
    assert any(m.startswith("warning: src rows' σ") and "--standardize xavier" in m for m in logs)
