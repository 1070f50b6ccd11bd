"""--amp auto: bf16 on a CPU only where it is faster (issue 14.16); the choice and its reason."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from embtool.training import amp

CPU = torch.device("cpu")


@pytest.fixture
def cpu(monkeypatch, tmp_path: Path):
    """A CPU whose bf16 support and probe times the test sets; the probe cache under tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    amp._probe_at.cache_clear()
    state = {"flags": (False, False), "times": {False: 1.0, True: 1.0}, "probes": 0}
    monkeypatch.setattr(amp, "cpu_bf16_support", lambda: state["flags"])

    def time_matmul(bf16: bool, reps: int = 5, give_up: float = float("inf")) -> float:
        state["probes"] += 1
        return state["times"][bf16]

    monkeypatch.setattr(amp, "_time_matmul", time_matmul)
    yield state
    amp._probe_at.cache_clear()


@pytest.mark.parametrize(
    ("flags", "bf16_seconds", "chosen", "probes", "why"),
    [((False, False), 0.1, False, 0, "without native bf16"),
     ((True, True), 9.9, True, 0, "with AMX"),
     ((True, False), 2.0, False, 2, "probe not faster (2000.00 ms vs fp32 1000.00 ms)"),
     ((True, False), 0.5, True, 2, "probe faster (500.00 ms vs fp32 1000.00 ms)")],
    ids=["no-native-bf16", "amx", "avx512-bf16-slower", "avx512-bf16-faster"],
)  # fmt: skip
def test_auto_picks_bf16_on_a_cpu_only_where_it_is_faster(
    cpu, flags, bf16_seconds, chosen, probes, why
) -> None:
    cpu["flags"], cpu["times"][True] = flags, bf16_seconds
    choice = amp.choose_amp("auto", CPU)
    assert choice.bf16 is chosen and why in choice.why and cpu["probes"] == probes


@pytest.mark.parametrize("setting", ["bf16", "off"])
def test_an_explicit_setting_is_taken_without_probing(cpu, setting) -> None:
    cpu["flags"] = (True, False)
    assert amp.choose_amp(setting, CPU) == amp.AmpChoice(setting, f"--amp {setting}") and cpu["probes"] == 0


@pytest.mark.parametrize("bf16_seconds", [0.5, 2.0], ids=["bf16-clearly-faster", "bf16-clearly-slower"])
def test_the_probe_runs_once_per_cpu_and_is_cached_on_disk(cpu, tmp_path: Path, bf16_seconds) -> None:
    cpu["flags"], cpu["times"][True] = (True, False), bf16_seconds
    amp.choose_amp("auto", CPU)
    amp._probe_at.cache_clear()  # a new process: the file answers
    amp.choose_amp("auto", CPU)
    amp.choose_amp("auto", CPU)
    assert cpu["probes"] == 2  # fp32 and bf16, once
    cached = json.loads((tmp_path / "embtool" / "amp-probe.json").read_text())
    (key,) = cached
    assert cached[key] == [1.0, bf16_seconds]
    assert f"threads {torch.get_num_threads()}" in key and f"probe {amp.PROBE_VERSION}" in key


def test_a_close_probe_is_not_kept(cpu, tmp_path: Path) -> None:
    """A close answer (load can flip it: 20.0 vs 20.3 ms busy, 2.7 vs 6.5 ms idle on one CPU) is this
    run's only: the next process probes again; an answer of an older probe version is not read."""
    cache = tmp_path / "embtool" / "amp-probe.json"
    cache.parent.mkdir(parents=True)
    old_key = f"{amp._cpu_name()}|torch {torch.__version__}|threads {torch.get_num_threads()}"
    cache.write_text(json.dumps({old_key: [0.02033, 0.01996]}))  # version 1's, kept under load
    cpu["flags"], cpu["times"][True] = (True, False), 0.95
    assert amp.choose_amp("auto", CPU).amp == "off" and cpu["probes"] == 2  # probed, not read
    amp._probe_at.cache_clear()
    amp.choose_amp("auto", CPU)
    assert cpu["probes"] == 4 and list(json.loads(cache.read_text())) == [old_key]


def test_the_probe_answers_per_thread_count(cpu) -> None:
    """One process, two thread counts (a test, a notebook): each has its own probe."""
    cpu["flags"], cpu["times"][True] = (True, False), 0.5
    threads = torch.get_num_threads()
    try:
        amp.choose_amp("auto", CPU)
        torch.set_num_threads(threads + 1)
        amp.choose_amp("auto", CPU)
    finally:
        torch.set_num_threads(threads)
    assert cpu["probes"] == 4


def test_an_emulated_bf16_probe_gives_up_early(monkeypatch) -> None:
    """The real timer stops after two matmuls slower than the bound (an emulated one takes seconds)."""
    calls = []
    mm = torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b: calls.append(1) or mm(a, b))
    assert amp._time_matmul(False, reps=5, give_up=0.0) > 0.0 and len(calls) == 2
    calls.clear()
    amp._time_matmul(False, reps=5)
    assert len(calls) == 6  # a warm-up and five timed


def test_config_json_records_what_auto_chose(reverse_run: Path) -> None:
    config = json.loads((reverse_run / "config.json").read_text())
    assert config["train"]["amp"] == "auto" and config["amp"] in ("bf16", "off")
    # the probe's answer is per thread count (and another test may have cleared this process's
    # cache since the run): ask at the run's --threads, where the run's answer is cached on disk
    threads = torch.get_num_threads()
    torch.set_num_threads(config["train"]["threads"] or threads)
    try:
        assert config["amp_why"] == amp.choose_amp("auto", CPU).why
    finally:
        torch.set_num_threads(threads)


CUDA = torch.device("cuda")


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA device (monkeypatched: no GPU here) that computes bf16 natively or not, as the test sets."""
    native = {"bf16": True}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native["bf16"])
    return native


# One decision for every setting and device (issue 20.12): (setting, device, native bf16) → the
# autocast and words its reason holds. A CPU here has AVX512-BF16 and no AMX, its probe "not faster".
ONE_DECISION = [
    ("auto", "cpu", None, "off", "probe not faster"),
    ("bf16", "cpu", None, "bf16", "--amp bf16"),
    ("fp16", "cpu", None, "fp16", "--amp fp16"),
    ("off", "cpu", None, "off", "--amp off"),
    ("auto", "cuda", True, "bf16", "CUDA device with native bf16"),
    ("auto", "cuda", False, "off", "CUDA device without native bf16"),
    ("bf16", "cuda", True, "bf16", "--amp bf16"),
    ("bf16", "cuda", False, "bf16", "this GPU emulates bf16"),
    ("fp16", "cuda", True, "fp16", "--amp fp16"),
    ("off", "cuda", False, "off", "--amp off"),
]  # fmt: skip


@pytest.mark.parametrize(("setting", "device", "native", "chosen", "why"), ONE_DECISION,
                         ids=[f"{s}-{d}-{n}" for s, d, n, *_ in ONE_DECISION])  # fmt: skip
def test_one_decision_for_every_setting_and_device(cpu, gpu, setting, device, native, chosen, why) -> None:
    cpu["flags"], cpu["times"][True] = (True, False), 2.0
    gpu["bf16"] = native
    choice = amp.choose_amp(setting, torch.device(device))
    assert choice.amp == chosen and why in choice.why
    with warnings.catch_warnings():  # a GradScaler for the stand-in GPU says CUDA is not there
        warnings.simplefilter("ignore")
        precision = amp.Precision.choose(
            setting, torch.device(device)
        )  # the run's precision asks the same function
    assert (precision.amp, precision.why) == (chosen, choice.why)
    assert (precision.scaler is not None) == (chosen == "fp16")  # loss scaling for fp16 alone
    if setting != "auto":  # an explicit setting's reason is the setting, never a probe's
        assert "probe" not in choice.why and cpu["probes"] == 0


def test_an_unknown_setting_is_refused() -> None:
    from embtool.core.errors import BadInput

    with pytest.raises(BadInput, match="--amp fp8: choose one of auto, bf16, fp16, off"):
        amp.choose_amp("fp8", CPU)


def test_config_json_gives_fp16_on_a_cpu_its_own_reason(tmp_path: Path) -> None:
    """--amp fp16 on a CPU recorded the bf16 probe's verdict as its reason (issue 20.12)."""
    from conftest import reverse_task, tiny_cfg, train_dir

    files = reverse_task(tmp_path, n_train=60, n_val=10)
    run = train_dir(tiny_cfg(files, tmp_path / "run", epochs=1, amp="fp16"))
    config = json.loads((run / "config.json").read_text())
    assert (config["amp"], config["amp_why"]) == ("fp16", "--amp fp16 (with loss scaling)")


@pytest.mark.parametrize("clip_norm", [0.0, 0.5])
def test_fp16_loss_scaling_gives_the_unscaled_step(clip_norm) -> None:
    """Precision's fp16 step scales the loss before backward and unscales before clipping and the
    update (powers of two: exact), so its SGD step equals float32's; its scale goes into state.pt."""
    params = {}
    for setting in ("off", "fp16"):
        torch.manual_seed(0)
        layer = torch.nn.Linear(4, 3)
        opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        precision = amp.Precision.choose(setting, CPU)
        precision.backward(layer(torch.ones(2, 4)).pow(2).sum())
        precision.step(opt, list(layer.parameters()), clip_norm)
        params[setting] = [p.detach().clone() for p in layer.parameters()]
    for a, b in zip(params["off"], params["fp16"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert amp.Precision.choose("off", CPU).state_dict() == {}
    assert amp.Precision.choose("fp16", CPU).state_dict()["scale"] == 2.0**16
    restored = amp.Precision.choose("fp16", CPU)
    restored.load_state_dict({**precision.state_dict(), "scale": 8.0})
    assert restored.state_dict()["scale"] == 8.0
