"""DDP under torchrun: batch shares, the group's figures, and 2-rank gloo runs against one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import reverse_task
from embtool.training.parallel import World, failure_message, share


def test_world_from_env(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert World.from_env() == World() and World().main and not World().distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    w = World.from_env()
    assert (w.size, w.rank, w.local_rank, w.main, w.distributed) == (4, 3, 1, False, True)


def test_shares_cover_the_batch_once_and_a_short_batch_gives_zero_weight():
    index = [7, 3, 9, 1, 4]
    shares = [share(index, World(2, r)) for r in range(2)]
    assert sorted(shares[0][0] + shares[1][0]) == sorted(index) and all(w == 1.0 for _, w in shares)
    assert share(index, World()) == (index, 1.0)
    # 2 examples over 3 ranks: the third takes one at weight 0, so it still joins the all-reduce
    assert [share([5, 6], World(3, r)) for r in range(3)] == [([5], 1.0), ([6], 1.0), ([5], 0.0)]


def test_failure_message_names_the_rank_and_the_resume():
    class Failure:
        def __init__(self, exitcode: int, pid: int, timestamp: int) -> None:
            self.exitcode, self.pid, self.timestamp = exitcode, pid, timestamp

    class Failed(Exception):
        # rank 1 was killed first; torchrun then stopped rank 0 (SIGTERM)
        failures = {0: Failure(-15, 4241, 20), 1: Failure(-9, 4242, 10)}  # noqa: RUF012

    msg = failure_message(Failed(), "runs/x")
    assert "rank 1 (pid 4242) was killed by signal 9" in msg and "--resume runs/x" in msg
    assert "\n" not in msg

    # CI's case: rank 0 was failing on its lost peer when torchrun's SIGTERM came, so it ended by
    # SIGINT (an escaping KeyboardInterrupt), in the same second as the rank that was killed
    for stopped in (-2, -15, 130, 143, 1):
        Failed.failures = {0: Failure(stopped, 4241, 10), 1: Failure(-9, 4242, 10)}
        msg = failure_message(Failed(), "runs/x")
        assert msg.startswith("rank 1 (pid 4242) was killed by signal 9"), stopped
    Failed.failures = {0: Failure(1, 4241, 10), 1: Failure(143, 4242, 10)}
    assert failure_message(Failed(), "runs/x").startswith("rank 0 (pid 4241) exited with 1")


def _args(data: Path, out: Path, epochs: int = 2) -> list[str]:
    # --amp off: auto may take bf16 on a CPU with AVX512-BF16, whose rounding the ranks' sum order amplifies
    return [
        "multi30k", "--data-dir", str(data / "multi30k"), "--tokenizer", "whitespace",
        "--max-train-examples", "400", "--max-eval-examples", "20", "--d-model", "32", "--heads", "4",
        "--layers", "1", "--ff", "128", "--dropout", "0", "--attn-dropout", "0", "--epochs", str(epochs), "--batch-size", "64", "--lr", "1e-3",
        "--device", "cpu", "--threads", "1", "--amp", "off", "-o", str(out),
    ]  # fmt: skip


def _key_bias_rows(name: str, tensor: torch.Tensor) -> slice | None:
    """The key part of an attention bias: its true gradient is 0 (softmax ignores a constant per
    query), so Adam turns rounding noise into steps there and it differs between sum orders."""
    d = tensor.shape[0]
    if name.endswith("qkv.bias"):
        return slice(d // 3, 2 * d // 3)
    if name.endswith("kv.bias"):
        return slice(0, d // 2)
    return None


def assert_same_weights(a: Path, b: Path, rel: float = 1e-5) -> None:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for name, x in wa.items():
        y = wb[name]
        keep = torch.ones(x.shape[0], dtype=torch.bool)
        rows = _key_bias_rows(name, x)
        if rows is not None:
            keep[rows] = False
        x, y = x[keep], y[keep]
        assert float((x - y).norm()) <= rel * float(x.norm()) + 1e-12, name


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(tmp_path, embtool, shared_data):
    single = embtool("train", *_args(shared_data, tmp_path / "one"))
    assert single.code == 0, single.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "embtool", "-q", "train", *_args(shared_data, tmp_path / "two")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # one run folder
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    assert_same_weights(tmp_path / "one" / "last.safetensors", tmp_path / "two" / "last.safetensors")
    m1 = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(m2) == 2
    for x, y in zip(m1, m2, strict=True):
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-5)
        assert y["val_loss"] == pytest.approx(x["val_loss"], rel=1e-4)


def _rank_pid(parent: int, rank: str) -> int | None:
    """The pid of the torchrun worker below ``parent`` whose RANK is ``rank``."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and any(e.startswith(b"TORCHELASTIC_RUN_ID=") for e in env):
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent or _is_below(ppid, parent):
                return int(d.name)
    return None


def _is_below(pid: int, ancestor: int) -> bool:
    for _ in range(5):
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
        if pid == ancestor:
            return True
    return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process in /proc")
def test_killed_rank_ends_the_job_and_resume_on_one_process_finishes_it(tmp_path, embtool):
    files = reverse_task(tmp_path, n_train=3000, n_val=20)
    args = ["files", "--src", files["train_src"], "--tgt", files["train_tgt"], "--val-src", files["val_src"],
            "--val-tgt", files["val_tgt"], "--tokenizer", "whitespace", "--d-model", "32", "--heads", "4",
            "--layers", "1", "--ff", "128", "--dropout", "0", "--attn-dropout", "0", "--epochs", "4", "--batch-size", "64",
            "--lr", "3e-3",
            "--device", "cpu", "--threads", "1", "--amp", "off"]  # fmt: skip
    whole = embtool("train", *args, "-o", str(tmp_path / "whole"))
    assert whole.code == 0, whole.stderr

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "embtool", "-q", "train", *args, "-o", str(run), "--nproc", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 300
    victim = None
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and metrics.read_text().strip():
            victim = _rank_pid(proc.pid, "1")
            break
        time.sleep(0.05)
    assert victim is not None and proc.poll() is None, "the run ended before rank 1 could be killed"
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    # each rank that lost its peer says so in a line naming itself; the launcher's last line names
    # the rank that died and the way on
    lines = [x for x in err.splitlines() if x.startswith("embtool: error:")]
    assert lines and all(x.startswith("embtool: error: rank ") for x in lines), err[-2000:]
    assert lines[-1].startswith("embtool: error: rank 1 (pid ") and f"--resume {run}" in lines[-1]
    assert not (run / "test.json").exists()
    done = len(metrics.read_text().splitlines())
    assert 1 <= done < 4

    resumed = embtool("train", "--resume", str(run))  # one process now: N may change
    assert resumed.code == 0, resumed.stderr
    assert (run / "test.json").is_file()
    # the killed run's first epoch summed its gradients over 2 ranks (another summation order); over
    # the ~140 steps after it Adam amplifies those last-bit differences in weights whose gradient is
    # mostly noise, and training amplifies them: a bias alone may end 0.6% apart (a CPU without
    # AVX-512) or 5% (one with it, whose kernels round otherwise), the whole model 1.4% (measured on
    # the latter), the final validation loss ~1%. So the whole model's weights match to 5e-2 and the
    # losses to 5e-2, while test_torchrun_two_ranks_match_one_process holds a short run to 1e-5
    from safetensors.torch import load_file

    wa, wb = load_file(str(tmp_path / "whole" / "last.safetensors")), load_file(str(run / "last.safetensors"))
    assert wa.keys() == wb.keys()
    apart = sum(float((wa[k] - wb[k]).norm()) ** 2 for k in wa) ** 0.5
    assert apart <= 5e-2 * sum(float(x.norm()) ** 2 for x in wa.values()) ** 0.5
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["val_loss"] == pytest.approx(
        json.loads((tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()[-1])["val_loss"], rel=5e-2
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
@pytest.mark.parametrize("script", ["gpu_check.sh", "gpu_check.py"])
def test_gpu_check_without_cuda_says_so_and_exits_0(script):
    root = Path(__file__).resolve().parents[1]
    cmd = (
        ["bash", str(root / "bench" / script)]
        if script.endswith(".sh")
        else [sys.executable, str(root / "bench" / script)]
    )
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(root / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("gpu_check: no CUDA device here")


def _launched(monkeypatch) -> dict:
    """Stand in for torchrun's launcher: what it was given, and the environment its ranks inherit."""
    import torch.distributed.run as torchrun

    seen: dict = {}
    monkeypatch.setattr(torchrun, "run", lambda parsed: seen.update(parsed=parsed, env=dict(os.environ)))
    return seen


def _as_rank(monkeypatch, launched: dict, rank: int = 1) -> list:
    """Run the CLI as torchrun starts rank ``rank`` of 2 (the environment the launcher left it and
    its arguments); the settings it would train with are returned, nothing is trained."""
    from conftest import run_in_process
    from embtool.commands import train as command

    env = {k: v for k, v in launched["env"].items() if os.environ.get(k) != v}
    env.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ranks: list = []
    monkeypatch.setattr(command, "_run_rank", lambda world, cfg, as_json: ranks.append((world.rank, cfg)))
    r = run_in_process(*launched["parsed"].training_script_args)
    assert r.code == 0, r.stderr
    return ranks


def test_train_nproc_hands_each_rank_the_config_not_options(monkeypatch):
    """`train --nproc 2 …` starts torchrun's launcher on `train` alone; the settings themselves go to
    the ranks (as JSON in their environment), and a rank trains exactly them."""
    from conftest import run_in_process
    from embtool.training import TrainConfig
    from embtool.training.parallel import CONFIG_ENV

    before = dict(os.environ)
    launched = _launched(monkeypatch)
    r = run_in_process("-q", "train", "files", "--src", "a.txt", "--tgt", "b.txt", "--no-posenc",
                       "--lr", "1e-3", "--nproc", "2", "-o", "runs/x")  # fmt: skip
    assert r.code == 0, r.stderr
    parsed = launched["parsed"]
    assert (parsed.nproc_per_node, parsed.module, parsed.training_script) == ("2", True, "embtool")
    assert parsed.training_script_args == ["-q", "train"]
    assert dict(os.environ) == before  # this process's environment is as it was
    want = TrainConfig(task="files", src="a.txt", tgt="b.txt", posenc=False, lr=0.001, out="runs/x")
    assert json.loads(launched["env"][CONFIG_ENV]) == want.to_dict()
    assert _as_rank(monkeypatch, launched) == [(1, want)]


def test_a_resumed_nproc_run_hands_its_ranks_exactly_its_config(tmp_path, monkeypatch):
    """`train --resume RUN --nproc 2 --threads 2`: each rank's settings parse back to the run's stored
    config, resumed, with the one change given; no default is taken for a change (every rank
    refused the run when the launcher wrote `--d-model 0 --batch-size 0 …` onto its command line)."""
    from conftest import run_in_process, tiny_cfg
    from embtool.training import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    files = {k: str(tmp_path / k) for k in ("train_src", "train_tgt", "val_src", "val_tgt")}
    stored = tiny_cfg(files, run, epochs=3, label_smoothing=0.1, max_tokens=512).to_dict()
    (run / "config.json").write_text(json.dumps({"train": stored}), encoding="utf-8")
    launched = _launched(monkeypatch)
    r = run_in_process("train", "--resume", str(run), "--nproc", "2", "--threads", "2", "--json")
    assert r.code == 0, r.stderr
    want = TrainConfig(**{**stored, "out": str(run), "resume": True, "threads": 2})
    assert _as_rank(monkeypatch, launched) == [(1, want)]
    assert launched["parsed"].training_script_args == ["train", "--json"]
    assert "resume: --threads 2 (was 1)" in r.stderr  # said once, by the launching process


@pytest.mark.parametrize(
    ("device", "available", "count", "nproc", "error"),
    [
        ("cuda", True, 2, 4, "--nproc 4: only 2 CUDA device(s) are visible; give --nproc 2 or fewer, or --device cpu"),
        ("auto", True, 1, 2, "--nproc 2: only 1 CUDA device(s) are visible; give --nproc 1 or fewer"),
        ("cuda", False, 0, 2, "--nproc 2 --device cuda: no CUDA device is visible; give --device cpu (gloo)"),
        ("cuda", True, 2, 2, None),
        ("auto", False, 0, 4, None),  # auto is the CPU here: gloo
        ("cpu", True, 1, 4, None),
    ],
)  # fmt: skip
def test_train_nproc_with_fewer_gpus_than_ranks_is_one_line_before_any_rank(
    monkeypatch, device, available, count, nproc, error
):
    """Each extra rank stopped on CUDA's "invalid device ordinal" once the group had started."""
    from conftest import run_in_process

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    launched = _launched(monkeypatch)
    r = run_in_process("train", "files", "--src", "a.txt", "--tgt", "b.txt", "--device", device,
                       "--nproc", str(nproc))  # fmt: skip
    if error is None:
        assert r.code == 0 and launched["parsed"].nproc_per_node == str(nproc), r.stderr
        return
    assert r.code == 2 and not launched
    assert r.stderr.startswith(f"embtool: error: {error}") and r.stderr.count("\n") == 1, r.stderr


def test_a_rank_started_by_hand_past_the_visible_gpus_says_so(monkeypatch):
    """`torchrun --nproc-per-node 4` on a node with 2 GPUs: rank 3 stops on a line naming itself."""
    from embtool.core.errors import BadInput
    from embtool.training.parallel import device_for

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(BadInput, match=r"rank 3: LOCAL_RANK 3, but only 2 CUDA device\(s\) are visible"):
        device_for(World(4, 3, 3), torch.device("cuda"))
    assert device_for(World(4, 3, 3), torch.device("cpu")) == torch.device("cpu")


@pytest.mark.slow
def test_a_run_stopped_after_its_first_epoch_continues_on_two_ranks(tmp_path, embtool):
    """`train --resume RUN --nproc 2` (gloo) takes a run stopped after its first epoch to its planned epochs."""
    from conftest import tiny_cfg
    from embtool.training import train

    def stop_after_first_epoch(event: str, info: dict) -> None:
        if event == "epoch":
            raise KeyboardInterrupt  # as Ctrl-C there: state.pt holds epoch 1

    files = reverse_task(tmp_path, n_train=200, n_val=10)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(files, run, epochs=3), progress=stop_after_first_epoch)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1 and not (run / "test.json").exists()

    resumed = embtool("-q", "train", "--resume", str(run), "--nproc", "2")
    assert resumed.code == 0, resumed.stderr[-3000:]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3] and (run / "test.json").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["train"]["epochs"] == 3


def test_a_signal_that_stops_the_launcher_goes_on_to_this_process_and_its_handlers_come_back(monkeypatch):
    """torchrun's launcher takes SIGTERM/SIGINT for itself (and leaves its handlers); stopped by one,
    its ranks are stopped, and the signal reaches the handler this process had (embtool's: it
    unwinds as 'terminated'), which is in place again, with the environment as it was."""
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException

    from embtool.training.parallel import launch

    def launcher(parsed) -> None:
        signal.signal(signal.SIGTERM, lambda *a: None)  # as torchrun's PContext.start does
        raise SignalException("Process got signal: 15", signal.SIGTERM)

    came: list[int] = []

    def ours(signum, frame) -> None:
        came.append(signum)
        raise KeyboardInterrupt

    monkeypatch.setattr(torchrun, "run", launcher)
    before = dict(os.environ)
    old = signal.signal(signal.SIGTERM, ours)
    try:
        with pytest.raises(KeyboardInterrupt):
            launch(2, {"device": "cpu"})
        assert came == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, old)
    assert dict(os.environ) == before
