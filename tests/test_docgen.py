"""Generated files stay generated: completions and the README command reference match the app."""

from __future__ import annotations

from pathlib import Path

import pytest

from embtool.docgen import SHELLS, completion_script, render_readme

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shell", SHELLS)
def test_completions_are_current(shell: str) -> None:
    path = ROOT / "completions" / f"embtool.{shell}"
    assert path.read_text(encoding="utf-8") == completion_script(shell), "run `make docs`"


def test_readme_command_reference_is_current() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render_readme(text) == text, "run `make docs`"


def test_completion_answers_for_subcommands() -> None:
    import os
    import subprocess
    import sys

    env = dict(os.environ, _EMBTOOL_COMPLETE="complete_bash", COMP_WORDS="embtool st", COMP_CWORD="1")
    out = subprocess.run([sys.executable, "-m", "embtool"], env=env, capture_output=True, text=True).stdout
    assert "stats" in out and "standardize" in out
