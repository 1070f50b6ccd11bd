"""The run's autocast (bf16, fp16 or fp32): ``choose_amp`` decides it for every ``--amp`` setting and
device, with its reason (config.json records both); ``Precision`` applies it: the autocast context
and the optimizer step, through fp16's GradScaler where it has one. Nothing else in the trainer
handles a scaler or an amp name.

``--amp auto`` on CUDA: bf16 where the GPU computes it natively. On a CPU, bf16 pays only where
matmuls run natively in bf16 *and* faster than fp32: AMX tiles are; AVX512-BF16 alone often is not (its dot products convert
and accumulate in fp32, and autocast adds casts around every op; one such CPU trained at half the
fp32 speed). So with AVX512-BF16 and no AMX a short matmul probe decides, once per CPU, PyTorch
version and thread count (the answer is cached under ``$XDG_CACHE_HOME/embtool``). Without native
bf16 it would be emulated: fp32, no probe.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from embtool.core.errors import BadInput
from embtool.training.checks import AMP_CHOICES

PROBE_SHAPE = (512, 512, 2048)  # (tokens, D, FFN): the paper's model's widest matmul, a small batch
FASTER = 0.9  # bf16 must take at most this share of fp32's time to be picked
# A probe is kept on disk only when its answer is clear: bf16 under CLEAR[0] or over CLEAR[1] of
# fp32's time. In between, a busy machine can flip it (2 cores under load: 20.0 vs 20.3 ms, where the
# same CPU idle takes 2.7 vs 6.5 ms), so the next run probes again rather than keep a bad answer.
CLEAR = (0.6, 1.2)
PROBE_VERSION = 2  # in the cache key: version 1's answers (kept whatever the load) are not read
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # "off": no autocast


@dataclass(frozen=True)
class AmpChoice:
    """The autocast dtype ("bf16", "fp16" or "off") and the reason in words (config.json's amp_why)."""

    amp: str
    why: str

    @property
    def bf16(self) -> bool:
        return self.amp == "bf16"


def choose_amp(setting: str, device: torch.device) -> AmpChoice:
    """``--amp`` (auto, bf16, fp16, off) on ``device`` → the autocast dtype and why: the one place
    the run's amp is decided. An explicit setting is taken as given; ``auto`` picks bf16 where it is
    native and pays (a GPU that computes it in hardware; a CPU: AMX, or AVX512-BF16 and a probe)."""
    if setting not in AMP_CHOICES:
        raise BadInput(f"--amp {setting}: choose one of {', '.join(AMP_CHOICES)}")
    if setting == "bf16" and device.type == "cuda" and not cuda_native_bf16(device):
        return AmpChoice("bf16", "--amp bf16 (this GPU emulates bf16, slowly; --amp fp16 is its fast choice)")
    if setting != "auto":
        return AmpChoice(setting, f"--amp {setting}" + (" (with loss scaling)" if setting == "fp16" else ""))
    if device.type == "cuda":
        if cuda_native_bf16(device):
            return AmpChoice("bf16", "--amp auto: CUDA device with native bf16")
        return AmpChoice(
            "off", "--amp auto: CUDA device without native bf16 (emulated: slow; --amp fp16 is fast)"
        )
    if device.type != "cpu":
        return AmpChoice("off", f"--amp auto: no bf16 check for a {device.type} device")
    avx512_bf16, amx = cpu_bf16_support()
    if amx:
        return AmpChoice("bf16", "--amp auto: CPU with AMX: native bf16 matmuls")
    if not avx512_bf16:
        return AmpChoice(
            "off", "--amp auto: CPU without native bf16 (AVX512-BF16/AMX): bf16 would be emulated"
        )
    fp32, bf16 = probe_seconds()
    faster = bf16 <= FASTER * fp32
    return AmpChoice(
        "bf16" if faster else "off",
        f"--amp auto: CPU with AVX512-BF16, no AMX: bf16 matmul probe {'faster' if faster else 'not faster'} "
        f"({1e3 * bf16:.2f} ms vs fp32 {1e3 * fp32:.2f} ms)",
    )


class Precision:
    """The run's arithmetic: ``autocast()`` for the forward passes, ``backward`` and ``step`` for the
    optimizer step, with fp16's loss scaling (a GradScaler, whose state goes into state.pt) or
    without (bf16, fp32). ``Precision.choose(setting, device)`` is ``choose_amp``'s decision."""

    def __init__(self, choice: AmpChoice, device: torch.device) -> None:
        self.amp, self.why = choice.amp, choice.why  # config.json's "amp" and "amp_why"
        self.device = device
        self.dtype = AMP_DTYPES.get(choice.amp)  # None: float32, no autocast
        self.scaler = torch.amp.GradScaler(device.type) if choice.amp == "fp16" else None

    @classmethod
    def choose(cls, setting: str, device: torch.device) -> Precision:
        """``--amp`` (auto, bf16, fp16, off) on ``device``, as ``choose_amp`` decides it."""
        return cls(choose_amp(setting, device), device)

    def autocast(self) -> AbstractContextManager[Any]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled first under fp16 (its gradients are unscaled by ``step``)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], clip_norm: float) -> None:
        """The optimizer step on the gradients ``backward`` left, clipped to ``clip_norm`` (0: not
        clipped). Under fp16 a step whose gradients overflowed is skipped and the scale adapts."""
        if self.scaler is None:
            if clip_norm:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            opt.step()
            return
        if clip_norm:
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The loss scale's state for state.pt ({} without one)."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """A resumed run's loss scale; nothing to restore for bf16/fp32, or from a run without one."""
        if state and self.scaler is not None:
            self.scaler.load_state_dict(state)


def cuda_native_bf16(device: torch.device) -> bool:
    """Whether the GPU computes bf16 in hardware (Ampere and later), not by emulation:
    ``torch.cuda.is_bf16_supported()`` alone also says yes on V100/T4, where bf16 runs without tensor
    cores or fused attention."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # an older torch without the argument
        return torch.cuda.get_device_capability(device) >= (8, 0)


def cpu_bf16_support() -> tuple[bool, bool]:
    """(AVX512-BF16, AMX) as PyTorch sees this CPU."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported()), bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older PyTorch: no way to tell, so no bf16
        return False, False


def probe_seconds() -> tuple[float, float]:
    """(fp32, bf16-autocast) seconds of one PROBE_SHAPE matmul at the current thread count, the best
    of a few; asked once per process and thread count, kept on disk when the answer is clear (``CLEAR``)."""
    return _probe_at(torch.get_num_threads())


@cache
def _probe_at(threads: int) -> tuple[float, float]:
    key = f"{_cpu_name()}|torch {torch.__version__}|threads {threads}|probe {PROBE_VERSION}"
    path = _cache_file()
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(known, dict) and isinstance(known.get(key), list):
            return float(known[key][0]), float(known[key][1])
    except (OSError, ValueError):
        known = {}
    fp32 = _time_matmul(False)
    result = (fp32, _time_matmul(True, give_up=fp32 / FASTER))
    if CLEAR[0] < result[1] / result[0] < CLEAR[1]:
        return result  # close: this run's answer only
    try:
        from embtool.core import atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps({**(known if isinstance(known, dict) else {}), key: list(result)}))
    except Exception:  # noqa: BLE001 - an unwritable cache only means probing again next time
        pass
    return result


def _time_matmul(bf16: bool, reps: int = 5, give_up: float = float("inf")) -> float:
    """The best time of ``reps`` matmuls after a warm-up; stops early once slower than ``give_up``
    twice (an emulated bf16 matmul can take 100× fp32's: the probe must stay short)."""
    n, d, f = PROBE_SHAPE
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(n, d, generator=g), torch.randn(d, f, generator=g)  # (n, D), (D, F)
    best, slow = float("inf"), 0
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(reps + 1):
            start = time.perf_counter()
            torch.mm(x, w)  # (n, F)
            took = time.perf_counter() - start
            if i:  # the first is a warm-up (kernel selection, caches)
                best = min(best, took)
            slow += took > give_up
            if slow >= 2:
                return min(best, took)
    return best


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "embtool" / "amp-probe.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
