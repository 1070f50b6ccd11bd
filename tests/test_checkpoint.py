"""Checkpoints: weights as safetensors with the configs in the metadata; state.pt without pickled code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from embtool.errors import BadInput
from embtool.model import ModelConfig, Seq2Seq
from embtool.training import checkpoint as ckpt


def _model(seed: int) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(ModelConfig(src_vocab=12, tgt_vocab=11, d_model=8, n_heads=2, n_layers=1, dropout=0.0))


def test_weights_round_trip_with_their_configs(tmp_path: Path) -> None:
    a, b = _model(0), _model(1)
    meta = {"model": a.cfg.to_dict(), "train": {"task": "files", "layers": 1}}
    ckpt.save_weights(a, tmp_path / "w.safetensors", meta, epoch=3)
    assert ckpt.read_weights_meta(tmp_path / "w.safetensors") == {**meta, "epoch": 3}
    ckpt.load_weights(b, tmp_path / "w.safetensors")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    with pytest.raises(BadInput, match="no such checkpoint"):
        ckpt.load_weights(b, tmp_path / "none.safetensors")


def test_state_loads_without_pickled_code_and_restores_the_rng(tmp_path: Path) -> None:
    torch.manual_seed(5)
    state = {"epoch": 2, "rng": ckpt.rng_state(), "metrics": [{"epoch": 1}]}
    expected = torch.rand(4)
    ckpt.save_state(tmp_path / "state.pt", state)
    loaded = ckpt.load_state(tmp_path / "state.pt")
    assert loaded["epoch"] == 2 and loaded["metrics"] == [{"epoch": 1}]
    ckpt.set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize(
    ("content", "message"), [(b"not a zip", "not a readable resume state"), (None, "no resume state")]
)
def test_bad_state_files_are_named(tmp_path: Path, content, message) -> None:
    if content is not None:
        (tmp_path / "state.pt").write_bytes(content)
    with pytest.raises(BadInput, match=message):
        ckpt.load_state(tmp_path / "state.pt")


def test_a_state_with_code_in_it_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"epoch": 1, "x": Evil()}, tmp_path / "state.pt")
    with pytest.raises(BadInput, match="not a readable resume state"):
        ckpt.load_state(tmp_path / "state.pt")


def test_rng_state_is_the_cpu_and_the_run_device_only():
    import torch

    from embtool.training import checkpoint as ckpt

    state = ckpt.rng_state(torch.device("cpu"))
    assert set(state) == {"cpu"}  # no per-GPU list: a machine with fewer GPUs resumes it
    x = torch.rand(3)
    # an older state with a CUDA list, resumed on a CPU machine: the CPU generator comes back
    ckpt.set_rng_state({**state, "cuda": [torch.zeros(16, dtype=torch.uint8)]}, torch.device("cpu"))
    assert torch.equal(torch.rand(3), x)
