"""How a run executes, in one object: ``Engine`` holds the device, this process's place in a
torchrun group (``parallel.World``), the arithmetic (``amp.Precision``) and the training step
(``objective.Stepper``: the loss, maybe in DDP, maybe compiled), built once per run.

Rank 0 alone writes the run folder and reports: ``engine.main`` says whether this process is it,
``engine.on_main(work)`` runs ``work`` there while the other ranks wait at a barrier, and
``engine.progress`` is silent off rank 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from embtool.training import parallel
from embtool.training.amp import Precision
from embtool.training.batching import PAD_MULTIPLE
from embtool.training.objective import Stepper
from embtool.training.parallel import World

T = TypeVar("T")
Progress = Callable[[str, dict[str, Any]], None]  # progress(event, info): the trainer's reports


def quiet(event: str, info: dict[str, Any]) -> None:
    """A progress that hears nothing."""


@dataclass
class Engine:
    """Where and how the run computes (see the module docstring). ``stepper`` is None for an engine
    that only evaluates (``Engine.plain``)."""

    device: torch.device
    precision: Precision
    world: World = field(default_factory=World)
    stepper: Stepper | None = None  # the training step (``objective.prepare``)
    progress: Progress = quiet  # rank 0's; the other ranks' is ``quiet``

    def __post_init__(self) -> None:
        if not self.world.main:
            self.progress = quiet

    @classmethod
    def plain(cls, device: torch.device, world: World | None = None, amp: str = "off") -> Engine:
        """An engine for evaluation: ``--amp`` ``amp`` (float32 by default), no training step."""
        return cls(device, Precision.choose(amp, device), world or World())

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder and reports (rank 0, or the only process)."""
        return self.world.main

    @property
    def step(self) -> Stepper:
        assert self.stepper is not None, "an evaluation-only engine has no training step"
        return self.stepper

    def on_main(self, work: Callable[[], T]) -> T | None:
        """``work()`` on rank 0 (its result; None elsewhere), then every rank waits until it is done."""
        result = work() if self.main else None
        parallel.barrier(self.world)
        return result

    def log(self, message: str) -> None:
        self.progress("log", {"message": message})

    @property
    def pad_multiple(self) -> int:
        """What batch lengths are padded to: ``PAD_MULTIPLE`` compiled or on CUDA, else the longest."""
        compiles = self.stepper is not None and self.stepper.compiles
        return PAD_MULTIPLE if compiles or self.device.type == "cuda" else 1

    @property
    def pinned(self) -> bool:
        """Whether batches go to the device from pinned memory, collated a step ahead (CUDA)."""
        return self.device.type == "cuda"

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over the ranks (``parallel.all_sum``)."""
        return parallel.all_sum(self.world, values, self.device)

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order (``parallel.all_gather``)."""
        return parallel.all_gather(self.world, obj)
