"""What each run of a grid gets: GPUs per worker slot (CUDA monkeypatched), CPU threads, Slurm's ask."""

from __future__ import annotations

import pytest
import torch

from embtool.core.errors import BadInput
from embtool.experiment import gridresources

# moved here with the functions from test_gridjobs.py


def test_worker_env_pins_one_gpu_per_slot_or_splits_the_threads():
    env = gridresources.worker_env(1, 2, ["0", "3"], base={})
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    env = gridresources.worker_env(0, 2, [], base={})
    assert "CUDA_VISIBLE_DEVICES" not in env and int(env["OMP_NUM_THREADS"]) >= 1


@pytest.mark.parametrize(
    ("text", "minutes"), [("12:00:00", 720), ("1-00:00:00", 1440), ("90", 90), ("00:30", 30)]
)
def test_parse_time(text, minutes):
    assert gridresources.parse_time(text) == minutes


@pytest.mark.parametrize("bad", ["x", "1:2:3:4", "0"])
def test_parse_time_rejects(bad):
    with pytest.raises(BadInput, match="--time"):
        gridresources.parse_time(bad)


def test_parse_devices():
    assert gridresources.parse_devices("0, 1,1") == ["0", "1"] and gridresources.parse_devices(None) == []
    with pytest.raises(BadInput, match="--devices"):
        gridresources.parse_devices("cuda:0")


# new


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n)``: this process sees n CUDA devices (0: no CUDA), and no CUDA_VISIBLE_DEVICES of its own."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def see(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return see


@pytest.mark.parametrize(
    ("count", "own", "expected"),
    [
        (0, None, []),
        (2, None, ["0", "1"]),
        (2, "3,5", ["3", "5"]),  # GPU 0 here is the machine's GPU 3: a child must be given "3"
        (1, "GPU-8a1f,GPU-77c0", ["GPU-8a1f"]),  # UUIDs; CUDA stops at the first it cannot use
        (2, " 4 , 6 ,", ["4", "6"]),
    ],
)  # fmt: skip
def test_visible_gpus_names_them_as_a_child_would(gpus, monkeypatch, count, own, expected):
    gpus(count)
    if own is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", own)
    assert gridresources.visible_gpus() == expected


@pytest.mark.parametrize(
    ("count", "devices", "device", "per_run", "expected"),
    [
        (2, [], "cuda", 1, ["0", "1"]),  # one worker a GPU, where every worker took GPU 0
        (4, [], "auto", 1, ["0", "1", "2", "3"]),
        (4, [], "cuda", 2, ["0,1", "2,3"]),  # --gpus-per-run 2: a slot's two GPUs, its run's two ranks
        (3, [], "cuda", 2, ["0,1"]),  # the third GPU has no partner: idle
        (0, [], "auto", 1, []),  # auto on a machine without CUDA: the CPU, cores split
        (2, [], "cpu", 1, []),
        (0, ["3", "5", "7"], "cuda", 2, ["3,5"]),  # --devices as given
        (0, ["1", "0"], "cpu", 1, ["1", "0"]),
    ],
)  # fmt: skip
def test_worker_gpus_deals_the_gpus_out_to_the_worker_slots(gpus, count, devices, device, per_run, expected):
    gpus(count)
    assert gridresources.worker_gpus(devices, device, per_run) == expected


@pytest.mark.parametrize(
    ("count", "devices", "message"),
    [
        (1, [], "--gpus-per-run 2: this machine shows 1 GPU(s) (0); give --gpus-per-run 1 or fewer"),
        (4, ["3"], "--gpus-per-run 2: --devices gives 1 GPU(s) (3); give --gpus-per-run 1 or fewer"),
    ],
)
def test_a_run_that_needs_more_gpus_than_there_are_is_refused(gpus, count, devices, message):
    gpus(count)
    with pytest.raises(BadInput) as e:
        gridresources.worker_gpus(devices, "cuda", 2)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("gpus_per_run", "cpus_per_run", "cpus", "ranks"),
    [(1, 0, 8, 1), (2, 0, 16, 2), (0, 0, 8, 1), (4, 6, 6, 4)],
)
def test_slurm_asks_for_8_cpus_a_gpu_unless_told(gpus_per_run, cpus_per_run, cpus, ranks):
    slurm = gridresources.Slurm(gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run)
    assert (slurm.cpus(), slurm.ranks()) == (cpus, ranks)


def test_cpu_workers_and_their_ranks_share_the_cores(monkeypatch):
    monkeypatch.setattr(gridresources.os, "cpu_count", lambda: 16)
    assert [gridresources.cpu_share(j, r) for j, r in [(1, 1), (2, 1), (2, 2), (32, 1)]] == [16, 8, 4, 1]
    assert gridresources.worker_env(0, 2, [], base={}, ranks=2)["OMP_NUM_THREADS"] == "4"
