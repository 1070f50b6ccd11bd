"""Checkpoints: weights as safetensors with the configs in the metadata; state.pt without pickled code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from embtool.core.errors import BadInput
from embtool.model.transformer import ModelConfig, Seq2Seq
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
    state = {"epoch": 2, "rng": ckpt.rng_state(), "metrics": [{"epoch": 1}], "model": {}, "optimizer": {},
             "best_val_loss": 1.0, "best_epoch": 1}  # fmt: skip
    expected = torch.rand(4)
    ckpt.save_state(tmp_path / "state.pt", state)
    loaded = ckpt.load_state(tmp_path / "state.pt")
    assert loaded["epoch"] == 2 and loaded["metrics"] == [{"epoch": 1}]
    ckpt.set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(4), expected)


def _cut_state(tmp_path: Path) -> bytes:
    ckpt.save_state(tmp_path / "whole.pt", {"epoch": 1, "model": {"w": torch.zeros(64, 64)}})
    data = (tmp_path / "whole.pt").read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("content", "message"),
    [(lambda _: b"not a zip", r"not a readable resume state \(.+\)$"),
     (_cut_state, r"not a readable resume state \(.+\)$"),
     (None, "no resume state")],
    ids=["not-a-zip", "cut", "none"],
)  # fmt: skip
def test_bad_state_files_are_named(tmp_path: Path, content, message) -> None:
    if content is not None:
        (tmp_path / "state.pt").write_bytes(content(tmp_path))
    with pytest.raises(BadInput, match=message) as refused:
        ckpt.load_state(tmp_path / "state.pt")
    assert "weights_only" not in str(refused.value) and "\n" not in str(refused.value)


class _Printing:
    """Unpickled by a loader that runs code: print("pwned")."""

    def __reduce__(self):
        return (print, ("pwned",))


class _Shell:
    """Unpickled by a loader that runs code: os.system(touch MARKER)."""

    marker: Path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class _Custom:
    """An object of a class of the caller's: no code in its pickle, still not a plain tensor."""

    def __init__(self) -> None:
        self.x = torch.zeros(2)


@pytest.mark.parametrize(
    ("evil", "first"),
    [(_Printing, "(first: print)"), (_Shell, "(first: posix.system)"), (_Custom, "._Custom)")],
    ids=["print", "os.system", "custom-class"],
)
def test_a_state_with_code_in_it_is_refused_without_torchs_advice(tmp_path: Path, evil, first) -> None:
    """Issue: the message relayed torch's advice to load with weights_only=False, which would run it."""
    evil.marker = tmp_path / "pwned"
    torch.save({"epoch": 1, "x": evil()}, tmp_path / "state.pt")
    with pytest.raises(BadInput) as refused:
        ckpt.load_state(tmp_path / "state.pt")
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'state.pt'}: not a plain-tensor checkpoint that embtool wrote")
    assert "refuses to load" in message and first in message
    assert "weights_only" not in message and "\n" not in message
    assert not (tmp_path / "pwned").exists()  # refused, never run


def test_resume_from_a_state_with_code_in_it_is_one_line_exit_2(tmp_path: Path, cli) -> None:
    from conftest import reverse_task

    files = reverse_task(tmp_path, n_train=40, n_val=4)
    run = tmp_path / "run"
    args = ["train", "files", "--src", files["train_src"], "--tgt", files["train_tgt"], "--val-src",
            files["val_src"], "--val-tgt", files["val_tgt"], "--tokenizer", "whitespace", "--d-model", "8",
            "--heads", "2", "--layers", "1", "--epochs", "1", "--device", "cpu", "--threads", "1", "-o", str(run)]  # fmt: skip
    assert cli(*args).code == 0
    _Shell.marker = tmp_path / "pwned"
    torch.save({"epoch": 1, "x": _Shell()}, run / "state.pt")
    r = cli("train", "--resume", str(run), "--epochs", "2")
    errors = [line for line in r.stderr.splitlines() if line.startswith("embtool: error:")]
    assert r.code == 2 and len(errors) == 1 and r.stderr.endswith(errors[0] + "\n"), r.stderr
    assert errors[0].startswith(f"embtool: error: {run / 'state.pt'}: not a plain-tensor checkpoint")
    assert "weights_only" not in r.stderr and not (tmp_path / "pwned").exists()


def test_a_state_without_every_key_is_named(tmp_path: Path) -> None:
    """Issue 14.10: a state.pt missing 'model' was a KeyError deep in the trainer."""
    ckpt.save_state(tmp_path / "state.pt", {"epoch": 1, "rng": ckpt.rng_state(), "metrics": []})
    with pytest.raises(
        BadInput, match=r"state.pt: not a complete resume state \(no model, optimizer, best_val_loss"
    ):
        ckpt.load_state(tmp_path / "state.pt")


@pytest.mark.parametrize(
    ("theirs", "message"),
    [({"weight": torch.zeros(3, 2), "bias": torch.zeros(3)}, r"another model size \(weight is \(3, 2\); config.json's model has \(3, 4\)\)"),
     ({"weight": torch.zeros(3, 4)}, "not those of this run's model .*: bias")],
    ids=["other-size", "other-tensors"],
)  # fmt: skip
def test_a_state_of_another_model_is_named(tmp_path: Path, theirs, message) -> None:
    model = torch.nn.Linear(4, 3)
    with pytest.raises(BadInput, match=message):
        ckpt.check_state_fits(tmp_path / "state.pt", {"model": theirs}, model)
    ckpt.check_state_fits(tmp_path / "state.pt", {"model": model.state_dict()}, model)


def test_rng_state_is_the_cpu_and_the_run_device_only():
    import torch

    from embtool.training import checkpoint as ckpt

    state = ckpt.rng_state(torch.device("cpu"))
    assert set(state) == {"cpu"}  # no per-GPU list: a machine with fewer GPUs resumes it
    x = torch.rand(3)
    # an older state with a CUDA list, resumed on a CPU machine: the CPU generator comes back
    ckpt.set_rng_state({**state, "cuda": [torch.zeros(16, dtype=torch.uint8)]}, torch.device("cpu"))
    assert torch.equal(torch.rand(3), x)
