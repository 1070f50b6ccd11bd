"""Shared tiny fixtures. No network: the hub is never reached from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8")


def run_embtool(*args: str, stdin: bytes | None = None, cwd: Path | None = None, timeout: float = 300) -> Result:
    """Run `python -m embtool ARGS` in a real subprocess (pipes, exit codes, stderr as a user sees them)."""
    proc = subprocess.run(
        [sys.executable, "-m", "embtool", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        cwd=cwd,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


@pytest.fixture
def embtool():
    """The CLI as a function: ``embtool("stats", path)`` → Result(code, stdout bytes, stderr text)."""
    return run_embtool


@pytest.fixture
def vocab_file(tmp_path: Path) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text("#embtool tokenizer=whitespace\n<pad>\t0\nthe\t10\ncat\t4\nsat\t3\nmat\t2\n", encoding="utf-8")
    return path


@pytest.fixture
def make_table():
    """Build an EmbeddingTable from an (N, D) tensor; tokens default to t0…t{N-1}."""
    from embtool.table import EmbeddingTable

    def make(vectors, tokens=None, **kw):
        tokens = tokens if tokens is not None else [f"t{i}" for i in range(vectors.shape[0])]
        return EmbeddingTable(vectors, tokens, **kw)

    return make


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the project")
    return SHARED_DATA


def run_in_process(*args: str, stdin: bytes | None = None) -> Result:
    """Run the CLI in this process (fast): same exit codes and stderr lines as a subprocess."""
    import contextlib
    import io

    from embtool.cli import main

    out, err = io.BytesIO(), io.StringIO()
    fake_in = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8")
    fake_out = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    old_in, old_out = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = fake_in, fake_out
    try:
        with contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.stdin, sys.stdout = old_in, old_out
    fake_out.flush()
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    """Like ``embtool`` but in-process: for checks that need no real pipe."""
    return run_in_process
