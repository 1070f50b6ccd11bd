"""The commands as a user runs them: real subprocesses, pipes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embtool.tables.table import load, loads

COMMANDS = ["init", "stats", "standardize", "shuffle", "scale", "posenc"]


@pytest.fixture
def xavier_file(tmp_path: Path, vocab_file: Path, cli) -> Path:
    out = tmp_path / "x.safetensors"
    r = cli("init", "xavier", "--vocab", str(vocab_file), "--dim", "8", "--seed", "1", "-o", str(out))
    assert r.code == 0, r.stderr
    return out


def test_version_and_module_entry(embtool) -> None:
    r = embtool("--version")
    assert r.code == 0 and r.text.startswith("embtool ")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_an_example(cli, command) -> None:
    r = cli(command, "--help")
    assert r.code == 0 and "Example" in r.text and f"embtool {command}" in r.text


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys; from embtool.cli import main; rc = main(['--help']);"
        "heavy = [m for m in ('torch', 'transformers', 'spacy', 'gensim', 'datasets', 'matplotlib') if m in sys.modules];"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_init_copies_vocab_tokenizer(xavier_file: Path) -> None:
    t = load(xavier_file)
    assert t.tokenizer == "whitespace" and t.tokens[:2] == ["<pad>", "the"] and (t.n, t.dim) == (5, 8)


def test_three_stage_shell_pipe(tmp_path: Path, xavier_file: Path) -> None:
    exe = f"{sys.executable} -m embtool"
    cmd = (
        f"{exe} standardize --to normal:0.5 < {xavier_file} | {exe} shuffle --seed 3 "
        f"| {exe} scale --by sqrt-dim > {tmp_path / 'out.safetensors'}"
    )
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, capture_output=True)
    t = load(tmp_path / "out.safetensors")
    assert [h["op"] for h in t.history] == ["init", "standardize", "shuffle", "scale"]
    assert np.std(t.vectors, ddof=1) == pytest.approx(0.5 * 8**0.5, rel=1e-5)


def test_stdin_argument_dash_and_json(xavier_file: Path, cli) -> None:
    r = cli("stats", "--json", "-", str(xavier_file), stdin=xavier_file.read_bytes())
    assert r.code == 0, r.stderr
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert len(rows) == 2 and rows[0]["std"] == rows[1]["std"]
    fields = "n dim min max mean std xavier_bound xavier_std std_ratio scaled_min scaled_max scaled_mean scaled_std posenc_std absorption"
    assert set(fields.split()) <= set(rows[0])


def test_stats_table_side_by_side(xavier_file: Path, cli) -> None:
    r = cli("stats", str(xavier_file), str(xavier_file))
    assert r.code == 0 and r.text.count("x.safetensors") == 2 and "absorption" in r.text


def test_standardize_to_table_file(tmp_path: Path, xavier_file: Path, cli) -> None:
    wide = tmp_path / "wide.safetensors"
    assert cli("standardize", str(xavier_file), "--to", "normal:0.37", "-o", str(wide)).code == 0
    out = cli("standardize", "--to", str(wide), stdin=xavier_file.read_bytes())
    assert out.code == 0, out.stderr
    assert np.std(loads(out.stdout).vectors, ddof=1) == pytest.approx(0.37, rel=1e-5)


def _table_with_nan(tmp_path: Path, xavier_file: Path) -> Path:
    t = load(xavier_file)
    from safetensors.numpy import save_file

    v = t.vectors.copy()
    v[1, 1] = np.nan
    path = tmp_path / "nan.safetensors"
    save_file({"embeddings": v}, str(path), metadata=t.metadata())
    return path


def _bad_cases(tmp: Path, xav: Path) -> list[tuple[str, list[str], str]]:
    (tmp / "garbage.safetensors").write_bytes(b"not a table at all")
    (tmp / "empty_line.txt").write_text("a\n\nb\n")
    return [
        ("missing input", ["standardize", str(tmp / "none.safetensors")], "none.safetensors: no such file"),
        (
            "garbage",
            ["shuffle", str(tmp / "garbage.safetensors")],
            "garbage.safetensors: not a readable safetensors",
        ),
        ("nan", ["scale", str(_table_with_nan(tmp, xav))], "1 non-finite value(s)"),
        ("bad target", ["standardize", str(xav), "--to", "normal:x"], "--to normal:STD needs a number"),
        (
            "missing target table",
            ["standardize", str(xav), "--to", str(tmp / "t2.safetensors")],
            "t2.safetensors: no such file",
        ),
        ("bad axis", ["shuffle", str(xav), "--axis", "diag"], "--axis"),
        ("bad scale", ["scale", str(xav), "--by", "lots"], "--by 'lots'"),
        ("bad max-len", ["posenc", str(xav), "--max-len", "0"], "--max-len"),
        (
            "huge max-len",
            ["posenc", str(xav), "--max-len", "10000000000"],
            "--max-len must be between 1 and 1,000,000",
        ),
        (
            "huge stats max-len",
            ["stats", str(xav), "--max-len", "2000000"],
            "--max-len must be between 1 and 1,000,000",
        ),
        ("huge seed", ["shuffle", str(xav), "--seed", "99999999999999999999"], "--seed"),
        (
            "negative seed",
            ["init", "xavier", "--vocab", str(tmp / "empty_line.txt"), "--dim", "4", "--seed", "-1"],
            "--seed",
        ),
        (
            "vocab empty line",
            ["init", "xavier", "--vocab", str(tmp / "empty_line.txt"), "--dim", "4"],
            "empty_line.txt:2: empty token",
        ),
        ("unknown option", ["stats", str(xav), "--bogus"], "No such option"),
    ]


BAD_CASES = ['missing input', 'garbage', 'nan', 'bad target', 'missing target table', 'bad axis', 'bad scale', 'bad max-len', 'huge max-len', 'huge stats max-len', 'huge seed', 'negative seed', 'vocab empty line', 'unknown option']  # fmt: skip


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_exit_2_one_line_no_output(tmp_path: Path, xavier_file: Path, cli, case) -> None:
    cases = {c[0]: c for c in _bad_cases(tmp_path, xavier_file)}
    assert sorted(cases) == sorted(BAD_CASES)
    name, args, message = cases[case]
    out = tmp_path / "out.safetensors"
    r = cli(*args, *(["-o", str(out)] if args[0] != "stats" else []))
    assert r.code == 2, (name, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embtool: error: ") and message in lines[0], (
        name,
        r.stderr,
    )
    assert "Traceback" not in r.stderr and not out.exists()


def test_allow_nonfinite(tmp_path: Path, xavier_file: Path, cli) -> None:
    r = cli("scale", str(_table_with_nan(tmp_path, xavier_file)), "--by", "2", "--allow-nonfinite")
    assert r.code == 0 and np.isnan(loads(r.stdout, allow_nonfinite=True).vectors).sum() == 1


def test_existing_output_survives_a_failed_command(tmp_path: Path, xavier_file: Path, cli) -> None:
    out = tmp_path / "keep.safetensors"
    out.write_bytes(b"precious")
    r = cli("standardize", str(tmp_path / "none.safetensors"), "-o", str(out))
    assert r.code == 2 and out.read_bytes() == b"precious"


def test_debug_shows_traceback(embtool, tmp_path: Path) -> None:
    r = embtool("--debug", "stats", str(tmp_path / "none.safetensors"))
    assert r.code != 0 and "Traceback" in r.stderr


def test_refuses_to_write_a_table_to_a_terminal(xavier_file: Path, tmp_path: Path) -> None:
    """stdout is a pty: the command must refuse (exit 2) before doing any work."""
    primary, secondary = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "embtool", "scale", str(xavier_file)],
        stdout=secondary,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    os.close(secondary)
    os.close(primary)
    assert proc.returncode == 2 and b"refusing to write a binary table to a terminal" in proc.stderr


def test_no_table_on_terminal_stdin(xavier_file: Path) -> None:
    primary, secondary = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "embtool", "stats", "-"],
        stdin=secondary,
        capture_output=True,
        timeout=60,
    )
    os.close(secondary)
    os.close(primary)
    assert proc.returncode == 2 and b"no table on stdin" in proc.stderr


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("io", ["stdio", "files"])
@pytest.mark.parametrize("to", ["xavier", "normal:0.5"])
def test_standardize_command_equals_the_library_bit_for_bit(
    tmp_path: Path, make_table, cli, dtype, io, to
) -> None:
    """The command is `standardize()` then `save`: same values, in the input's dtype, either way in."""
    from embtool.tables.table import dumps, save
    from embtool.tables.transforms import standardize

    rows = np.random.default_rng(3).standard_normal((300, 12), dtype=np.float32) * 11.5 + 0.7  # T5-like σ
    table = make_table(rows, dtype=dtype)
    src, dst = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save(table, src)
    if io == "stdio":
        r = cli("standardize", "--to", to, stdin=dumps(table))
        data = r.stdout
    else:
        r = cli("standardize", str(src), "--to", to, "-o", str(dst))
        data = dst.read_bytes() if r.code == 0 else b""
    assert r.code == 0, r.stderr
    ours, lib = loads(data), standardize(load(src), to)
    assert ours.dtype == dtype and np.array_equal(ours.vectors.view(np.uint8), lib.vectors.view(np.uint8))
    assert ours.history[-1] == lib.history[-1] and data[-ours.nbytes :] == dumps(lib)[-ours.nbytes :]


TABLE_COMMANDS = [
    ["init", "xavier", "--vocab", "{vocab}", "--dim", "8", "-o", "{x}"],
    ["scale", "{x}", "--by", "2", "-o", "{out}"],
    ["standardize", "{x}", "-o", "{out}"],
    ["standardize", "{x}", "--to", "{x}", "-o", "{out}"],
    ["shuffle", "{x}", "--seed", "1", "-o", "{out}"],
    ["posenc", "{x}", "-o", "{out}"],
    ["stats", "{x}", "--json"],
    ["align", "{x}", "--vocab", "{vocab}", "-o", "{out}"],
]


def test_table_commands_never_import_torch(tmp_path: Path, vocab_file: Path) -> None:
    """The table layer is numpy and safetensors: torch (1.5 s to import) is the trainer's alone."""
    paths = {
        "vocab": str(vocab_file),
        "x": str(tmp_path / "x.safetensors"),
        "out": str(tmp_path / "o.safetensors"),
    }
    runs = [[a.format(**paths) for a in args] for args in TABLE_COMMANDS]
    code = (
        "import sys, json; from embtool.cli import main\n"
        f"codes = [main(args) for args in {runs!r}]\n"
        "heavy = [m for m in ('torch', 'transformers', 'spacy', 'gensim', 'datasets', 'scipy') if m in sys.modules]\n"
        "print('RESULT', json.dumps([codes, heavy]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))
    codes, heavy = json.loads(line.removeprefix("RESULT"))
    assert codes == [0] * len(runs) and heavy == [], out.stderr


@pytest.mark.parametrize(
    ("signame", "code", "line"),
    [("SIGINT", 130, "embtool: interrupted"), ("SIGTERM", 143, "embtool: terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stopped_command_says_so(signame: str, code: int, line: str) -> None:
    """Issue 14.13/14.14: a command waiting on stdin, stopped by a signal, prints one line and exits 130/143."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "embtool", "stats", "-"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(5)  # started and blocked reading stdin
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and err.strip() == line


def test_a_signal_during_an_error_line_still_ends_as_stopped(monkeypatch, capsys) -> None:
    """A torchrun rank failing on its lost peer gets torchrun's SIGTERM while it reports the error:
    the KeyboardInterrupt that raises must end the command as terminated (143), not escape it (an
    escaping one kills Python by SIGINT, which the launcher read as the rank that failed first)."""
    import os
    import signal

    from embtool import cli

    def line_interrupted_by_sigterm(text: str) -> str:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler main installed raises here
        return text

    monkeypatch.setattr(cli, "_one_line", line_interrupted_by_sigterm)
    assert cli.main(["stats", "/nonexistent/table.safetensors"]) == 143
    assert capsys.readouterr().err.strip() == "embtool: terminated"


@pytest.mark.parametrize(
    ("args", "stdin_twice"),
    [(["align", "-", "-", "--vocab", "{vocab}"], True), (["stats", "-", "-"], True), (["stats", "-"], False)],
    ids=["align-stdin-twice", "stats-stdin-twice", "stats-stdin-once"],
)
def test_stdin_given_twice_is_named(xavier_file: Path, vocab_file: Path, cli, args, stdin_twice) -> None:
    """Issue 14.14: `align - -` said "header too small"; stdin holds one table."""
    r = cli(*[a.format(vocab=vocab_file) for a in args], stdin=xavier_file.read_bytes())
    if stdin_twice:
        assert r.code == 2 and r.stderr.strip() == (
            "embtool: error: stdin (-) is given more than once; it holds one table: give the others as files"
        )
    else:
        assert r.code == 0, r.stderr


def test_stats_json_writes_null_for_non_finite_figures(tmp_path: Path, xavier_file: Path, cli) -> None:
    """Issue 14.14: `stats --json` printed bare NaN, which is not JSON."""
    r = cli("stats", str(_table_with_nan(tmp_path, xavier_file)), "--json", "--allow-nonfinite")
    assert r.code == 0, r.stderr
    row = json.loads(r.text, parse_constant=lambda c: pytest.fail(f"bare {c} in {r.text}"))
    assert row["mean"] is None and row["std"] is None and row["n"] == 5


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_shows_flags_without_a_value(cli, command) -> None:
    """Issue 14.14: `--debug <bool>`, `--quiet <bool>` read as if the flags took a value."""
    r = cli(*([command] if command else []), "--help")
    assert r.code == 0 and "--help" in r.text and "<bool>" not in r.text


def test_our_warnings_are_one_line_and_others_as_python_shows_them(capsys) -> None:
    import warnings

    from embtool import cli

    handed_on: list[str] = []
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *args, **kw: handed_on.append(str(message))
        before = warnings.showwarning
        with cli._warnings_as_lines():
            warnings.simplefilter("always")
            warnings.warn_explicit("the cache is broken;\nresults are unaffected", UserWarning, "embtool", 0)
            warnings.warn_explicit("from elsewhere", UserWarning, "/site-packages/other/x.py", 3)
        assert warnings.showwarning is before
    assert capsys.readouterr().err == "embtool: warning: the cache is broken; results are unaffected\n"
    assert handed_on == ["from elsewhere"]
