"""The one large product of the analogy search, S = Ŵ V̂ᵀ, and where it runs.

On the CPU numpy multiplies and torch is not imported at all; on a CUDA device (``--device
cuda``) torch multiplies in true float32. The search's error bound δ assumes float32 products,
so TF32 (CUDA) and bf16 (oneDNN on the CPU) are switched off around the product and the caller's
settings are restored after: a library call must not change process-wide state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from embtool.core.errors import BadInput


def cuda_device(device: str) -> str | None:
    """The CUDA device that ``--device`` names (torch multiplies there), or None for the CPU
    (numpy multiplies)."""
    if device == "cpu":
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise BadInput(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return None
    if dev.type != "cuda":
        raise BadInput(f"--device {device}: only cpu and cuda are supported")
    if not torch.cuda.is_available():
        raise BadInput(f"--device {device}: no CUDA device is available here; use --device cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise BadInput(f"--device {device}: there are only {torch.cuda.device_count()} CUDA device(s) here")
    return str(dev)


@contextmanager
def exact_float32_matmul() -> Iterator[None]:
    """torch float32 matmuls in true float32 inside (no TF32 on CUDA, no bf16 on the CPU); the
    caller's settings restored after, also when the block raises.

    torch ≥ 2.9 keeps one setting per backend, and mixing it with the legacy process-wide one
    (``set_float32_matmul_precision``, ``allow_tf32``) makes torch raise on later reads; so
    each torch is asked in its own terms, and only the matmul settings are touched.
    """
    import torch

    # getattr: torch < 2.9 has no oneDNN matmul setting at all
    backends: list[Any] = [
        getattr(torch.backends.cuda, "matmul", None),
        getattr(torch.backends.mkldnn, "matmul", None),
    ]
    if all(hasattr(b, "fp32_precision") for b in backends):
        old = [b.fp32_precision for b in backends]
        try:
            for b in backends:
                b.fp32_precision = "ieee"
            yield
        finally:
            for b, value in zip(backends, old, strict=True):
                b.fp32_precision = value
    else:  # torch < 2.9: one process-wide setting
        legacy = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(legacy)


def cosines(unit: np.ndarray, words: np.ndarray, cuda: str | None = None) -> np.ndarray:
    """S = Ŵ V̂ᵀ, (W, R) float32: the cosine of every unit row (R, D) with the rows ``words`` (W,).

    ``cuda``: a CUDA device for torch (see :func:`cuda_device`); None: numpy on the CPU.
    """
    if cuda is None:
        return unit[words] @ unit.T  # (W, R): float32 BLAS, any summation order is within δ
    import torch

    with exact_float32_matmul():
        rows = torch.from_numpy(unit).to(cuda)  # (R, D)
        sims = rows[torch.from_numpy(words).to(cuda)] @ rows.T  # (W, R)
        return sims.cpu().numpy()
