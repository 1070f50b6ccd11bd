"""CPU-only speed tricks, in one place, applied and restored by the trainer (never at import).

- ``micro_batches`` / ``pass_overhead``: a random batch (the paper's) run as micro-batches of
  similar lengths, so that a step is mostly real tokens instead of padding (same gradient).
- ``process_settings``: thread count and glibc's allocator settings for the run (on CUDA: TF32
  matmuls, both of torch's TF32 settings agreeing), restored after.
A GPU uses none of them: it runs a batch whole. (The CPU-cheap dropout mask is the model's:
``embtool.model.dropout``.)
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

MICRO_WINDOW = 64  # examples a micro-batch holds at most
# What one more forward/backward pass costs on a CPU, in padded tokens of the paper's model (D=512,
# 3+3 layers; bench/train.py on 2 cores: 48–110 all did about as well). A token's work grows with
# D²·layers and a pass's fixed cost does not, so smaller models take fewer, bigger micro-batches.
CPU_PASS_TOKENS = 64 * 512**2 * 6


# ----------------------------------------------------------------------------- micro-batches


def pass_overhead(d_model: int, layers: int, device: torch.device) -> int | None:
    """What one more micro-batch costs, in padded tokens, for a model of width ``d_model`` and
    ``layers`` layers in all, on a CPU; None elsewhere (a GPU runs a batch whole: its padding
    costs less than more passes)."""
    if device.type != "cpu":
        return None
    return max(16, round(CPU_PASS_TOKENS / (d_model**2 * layers)))


def micro_batches(
    index: Sequence[int], src_len: Mapping[int, int], tgt_len: Mapping[int, int], overhead: int
) -> list[list[int]]:
    """Cut one batch into runs of similar lengths that minimise padded tokens + ``overhead`` per run.

    ``src_len[i]``/``tgt_len[i]`` are example i's padded lengths per side (``tgt_len`` all 0 for
    classification); ``overhead`` is what one more forward/backward pass costs, in padded tokens.
    Examples are sorted by length, then cut by dynamic programming over runs of at most
    ``MICRO_WINDOW`` examples.
    """
    order = sorted(index, key=lambda i: (max(src_len[i], tgt_len[i]), tgt_len[i], src_len[i]))
    n = len(order)
    best = [0] + [2**62] * n  # best[j]: cost of the first j examples
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        s_max = t_max = 0
        for i in range(j - 1, max(j - MICRO_WINDOW, 0) - 1, -1):  # run order[i:j]
            s_max = max(s_max, src_len[order[i]])
            t_max = max(t_max, tgt_len[order[i]])
            cost = best[i] + (j - i) * (s_max + t_max) + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs = []
    j = n
    while j > 0:
        runs.append(order[cut[j] : j])
        j = cut[j]
    return runs[::-1]


# ----------------------------------------------------------------------------- process settings

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_GLIBC_TRIM_THRESHOLD, _GLIBC_MMAP_MAX = 128 * 1024, 65536  # glibc's defaults (mallopt(3))


def _mallopt(settings: Sequence[tuple[int, int]]) -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(param, value) == 1 for param, value in settings)
    except (OSError, AttributeError):  # not glibc
        return False


@contextmanager
def process_settings(device: torch.device, threads: int = 0) -> Iterator[None]:
    """Threads and, on a CPU, glibc's allocator for a run; both put back when it ends.

    Each CPU step allocates and frees the same activations; by default glibc maps the big ones anew
    every time, and ~35k page faults a step (the paper's model) cost a few percent of it. With no
    mapped chunks and no trimming below 1 GiB they are reused; peak memory is the same. glibc has
    no call that reads these settings back: they are restored to its defaults (which also ends its
    dynamic mmap threshold for the rest of the process; the cost is a few page faults, no more).
    """
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    tuned = device.type == "cpu" and _mallopt([(_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 30)])
    try:
        with _tf32(device):
            yield
    finally:
        torch.set_num_threads(old_threads)
        if tuned:
            _mallopt([(_M_MMAP_MAX, _GLIBC_MMAP_MAX), (_M_TRIM_THRESHOLD, _GLIBC_TRIM_THRESHOLD)])


@contextmanager
def _tf32(device: torch.device) -> Iterator[None]:
    """On CUDA, float32 matmuls (and cuDNN) on TF32 tensor cores (Ampere and later) for the run.

    Set through the legacy setters (``set_float32_matmul_precision("high")``, ``cudnn.allow_tf32``),
    which torch keeps in step with the per-backend ``fp32_precision`` (from 2.9): both read TF32
    during the run. Setting only the per-backend one left every legacy read raising (mixed
    settings), and ``--compile`` falling back to eager under max-autotune. Put back after: the
    legacy settings, then every per-backend value (a caller's per-backend setting, whose legacy
    reads raised, is restored as it was; its legacy reads then agree with it).
    """
    if device.type != "cuda":
        yield
        return
    cudnn: Any = torch.backends.cudnn
    backends = [
        b
        for b in (torch.backends, torch.backends.cuda.matmul, cudnn, cudnn.conv, cudnn.rnn)
        + tuple(getattr(torch.backends.mkldnn, name, None) for name in ("matmul", "conv", "rnn"))
        if hasattr(b, "fp32_precision")  # torch >= 2.9: the per-backend settings, parents first
    ]
    old_precision = [b.fp32_precision for b in backends]
    old_matmul = _legacy(torch.get_float32_matmul_precision)
    old_cudnn = _legacy(lambda: cudnn.allow_tf32)
    torch.set_float32_matmul_precision("high")  # TF32 matmuls (also oneDNN's, on a CPU that has them)
    cudnn.allow_tf32 = True
    try:
        yield
    finally:
        if old_matmul is not None:
            torch.set_float32_matmul_precision(old_matmul)
        if old_cudnn is not None:
            cudnn.allow_tf32 = old_cudnn
        for backend, value in zip(backends, old_precision, strict=True):
            backend.fp32_precision = value


def _legacy(read: Callable[[], Any]) -> Any:
    """A legacy TF32 setting, or None where torch refuses to read it (a caller's per-backend
    settings that the one legacy value cannot say)."""
    try:
        return read()
    except RuntimeError:
        return None


__all__ = ["micro_batches", "pass_overhead", "process_settings"]
