"""The hub probe: offline is decided once, from HF_HUB_OFFLINE or one connection (issue 14.3)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embtool.core import hub


@pytest.fixture
def probes(monkeypatch):
    """Count connection attempts; the answer is what the test sets (no real network)."""
    calls: list[tuple[str, int]] = []
    answer = {"connects": False}

    def connects(host: str, port: int) -> bool:
        calls.append((host, port))
        return answer["connects"]

    monkeypatch.setattr(hub, "_connects", connects)
    monkeypatch.setattr(hub, "_reachable", {})
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return calls, answer


def test_hf_hub_offline_is_respected_without_probing(probes, monkeypatch) -> None:
    calls, _ = probes
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.offline() and calls == []


def test_no_network_is_detected_once(probes) -> None:
    calls, _ = probes
    assert hub.offline() and hub.offline()
    assert calls == [("huggingface.co", 443)]


def test_a_reachable_hub_is_online(probes) -> None:
    calls, answer = probes
    answer["connects"] = True
    assert not hub.offline() and calls == [("huggingface.co", 443)]


def test_the_probe_goes_to_the_proxy_or_endpoint(probes, monkeypatch) -> None:
    calls, _ = probes
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local:8080")
    hub.offline()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    hub.offline()
    assert calls == [("mirror.local", 8080), ("proxy.local", 3128)]


@pytest.mark.parametrize(
    ("env", "why"),
    [({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
     ({"HF_HUB_OFFLINE": "0", "HTTPS_PROXY": "http://127.0.0.1:9"}, "no network")],
    ids=["hf-hub-offline", "unreachable-proxy"],
)  # fmt: skip
def test_vocab_with_a_hub_tokenizer_offline_fails_fast_in_one_line(tmp_path: Path, env, why) -> None:
    """Offline is forced (the variable, or a closed local port as the proxy): no retries, one line."""
    (tmp_path / "corpus.txt").write_text("a b\n", encoding="utf-8")
    args = ["vocab", "--text", str(tmp_path / "corpus.txt")]
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "embtool", *args, "--tokenizer", "hf:org/missing", "-o", str(tmp_path / "v.txt")],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.strip() == (
        f"embtool: error: tokenizer 'org/missing': the Hugging Face hub is unreachable ({why}) and it is not "
        "in the local cache; give a local folder that holds its tokenizer files (hf:/path/to/folder)"
    )
    assert time.monotonic() - started < 30  # huggingface_hub's retries took 51-74 s
    assert not (tmp_path / "v.txt").exists()
