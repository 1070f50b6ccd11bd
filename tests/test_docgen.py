"""Generated files stay generated: completions, the README command table and docs/commands.md match the app."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from embtool.docgen import REFERENCE, SHELLS, command_page, completion_script, render_readme

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shell", SHELLS)
def test_completions_are_current(shell: str) -> None:
    path = ROOT / "completions" / f"embtool.{shell}"
    assert path.read_text(encoding="utf-8") == completion_script(shell), "run `make docs`"


def test_readme_command_reference_is_current() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render_readme(text) == text, "run `make docs`"


def test_command_reference_page_is_current() -> None:
    assert (ROOT / REFERENCE).read_text(encoding="utf-8") == command_page(), "run `make docs`"


def test_command_reference_page_has_every_command_and_option() -> None:
    """Each command a section, and each of its options (the long names) a row of it."""
    from typer.main import get_command

    from embtool.cli import app

    page = command_page()
    sections = dict(
        zip(
            re.findall(r"^## embtool (\S+)$", page, re.M), re.split(r"^## embtool \S+$", page, flags=re.M)[1:]
        )
    )
    group = get_command(app)
    assert list(sections) == list(group.commands)  # type: ignore[attr-defined]
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        for param in cmd.params:
            if param.param_type_name == "option" and not param.hidden:
                assert f"`{', '.join(param.opts)}" in sections[name], (name, param.opts)
    assert "| `--epochs N` | `0` | Epochs; 0: the run's Table 5 column. |" in sections["train"]
    assert "spacy:&lt;lang&gt;" not in page and "spacy:&lt;lang>" in page  # '<' escaped, so not read as HTML


def test_completion_answers_for_subcommands() -> None:
    import os
    import subprocess
    import sys

    env = dict(os.environ, _EMBTOOL_COMPLETE="complete_bash", COMP_WORDS="embtool st", COMP_CWORD="1")
    out = subprocess.run([sys.executable, "-m", "embtool"], env=env, capture_output=True, text=True).stdout
    assert "stats" in out and "standardize" in out
