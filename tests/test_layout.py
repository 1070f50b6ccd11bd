"""The package's shape (STYLE.md 1 and 11): layers that import downwards only, no import cycles,
small functions in the trainer, and a
``tests/test_<module>.py`` beside every module with logic.

Imports are read with ``ast``, not by importing, so the check also sees imports inside functions
(a lazy import still ties two modules together) and costs no start-up time. Imports under
``if TYPE_CHECKING:`` are left out (they never run), and so is a package's ``_EXPORTS`` table
(names → module strings for a lazy ``__getattr__``): a string table, checked here separately.
"""

from __future__ import annotations

import ast
import fnmatch
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
TESTS = ROOT / "tests"
PACKAGE = "embtool"

# Modules with logic that have no tests/test_<module>.py of their own, each with the reason.
# A command module (commands/<name>.py) needs none when a test runs its subcommand by name.
WITHOUT_OWN_TEST = {
    "embtool/__init__.py": "the lazy export table; test_lazy_exports_resolve below checks every entry",
    "embtool/commands/_*.py": "helpers shared by the thin commands (options, progress); every CLI test runs them",
    "embtool/experiment/report/__init__.py": "a lazy re-export; tests/test_init.py resolves it",
    "embtool/experiment/runner.py": "the experiment's library call: tests/test_experiment.py",
    "embtool/model/dropout.py": "a model layer with CPU speed in mind: tests/test_cpu.py checks its masks",
    "embtool/training/__init__.py": "lazy re-exports; tests/test_init.py resolves each name without torch",
}


# ----------------------------------------------------------------------------- reading the package


@dataclass(frozen=True)
class Import:
    target: str  # the module imported (a package stands for its __init__)
    path: Path  # the importing file …
    line: int  # … and the line of the import
    lazy: bool  # inside a function: runs on the first call, still a dependency

    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}" + (", inside a function" if self.lazy else "")


def modules(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name → file, for every module of ``package`` under ``src``."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


_COUNT_TYPE_CHECKING = False  # the unit graph counts imports under TYPE_CHECKING too


def _is_type_checking(test: ast.expr) -> bool:
    if _COUNT_TYPE_CHECKING:
        return False
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST, lazy: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """(node, lazy) for every import that can run: not under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _statements(ast.Module(body=[child], type_ignores=[]), lazy)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, lazy
        elif isinstance(node, ast.Call) and _import_module_literal(node):
            yield node, lazy
        yield from _statements(
            node, lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        )


def _import_module_literal(node: ast.Call) -> str | None:
    """``importlib.import_module("pkg.mod")`` with a literal name is an import too."""
    f = node.func
    named = (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
        isinstance(f, ast.Name) and f.id == "import_module"
    )
    if named and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def imports(name: str, path: Path, known: dict[str, Path], package: str = PACKAGE) -> list[Import]:
    """The modules of ``package`` that module ``name`` imports, resolved to modules in ``known``."""

    def resolve(dotted: str) -> str | None:  # the module itself, or the nearest package above it
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    here = name if path.name == "__init__.py" else name.rpartition(".")[0]  # the package of `name`
    found = []
    for node, lazy in _statements(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [resolve(a.name) for a in node.names if a.name.split(".")[0] == package]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: one dot is `here`, each further dot one package up
                parts = here.split(".")
                base = parts[: max(0, len(parts) - (node.level - 1))]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin.split(".")[0] != package:
                continue
            # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself
            targets = [
                f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else resolve(origin) for a in node.names
            ]
        else:
            literal = _import_module_literal(node)
            if literal and literal.split(".")[0] == package:
                targets = [resolve(literal)]
        found += [Import(t, path, node.lineno, lazy) for t in targets if t and t != name]
    return found


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, dict[str, Import]]:
    """module → {imported module → its first import}."""
    known = modules(src, package)
    graph: dict[str, dict[str, Import]] = {}
    for name, path in known.items():
        edges: dict[str, Import] = {}
        for imp in imports(name, path, known, package):
            edges.setdefault(imp.target, imp)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """The shortest cycle through each module that is on one, each once, from its first module
    in sorted order: [a, b, …, a]."""
    found: dict[tuple[str, ...], list[str]] = {}
    for start in sorted(graph):
        before: dict[str, str] = {}
        queue = deque([start])
        while queue:  # breadth first: the first way back to `start` is a shortest one
            node = queue.popleft()
            if start in graph[node]:
                chain = [start]
                while node != start:
                    chain.append(node)
                    node = before[node]
                chain = [start, *reversed(chain[1:]), start]
                i = chain.index(min(chain))  # the same cycle found from each of its modules: once
                ring = tuple(chain[i:-1] + chain[:i])
                found.setdefault(ring, [*ring, ring[0]])
                break
            for nxt in sorted(graph[node]):
                if nxt not in before and nxt != start:
                    before[nxt] = node
                    queue.append(nxt)
    return [found[k] for k in sorted(found)]


def describe(chain: list[str], graph: dict[str, dict[str, Import]]) -> str:
    """``a → b → a`` and, under it, where each import is."""
    steps = [f"    {a} imports {b} at {graph[a][b].where()}" for a, b in zip(chain, chain[1:], strict=False)]
    return "\n".join([" → ".join(chain), *steps])


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


# ----------------------------------------------------------------------------- the package's shape


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, (
        f"{len(found)} import cycle(s) among src/{PACKAGE} modules (lazy imports count):\n"
        + "\n".join(describe(c, graph) for c in found)
    )


# The package's layers, bottom to top, and what each may import (every import counts: at module
# level, inside functions, under TYPE_CHECKING). A unit is a root module or a top-level subpackage.
LAYERS: dict[str, set[str]] = {
    "_version": set(),
    "core": {"_version"},  # errors, atomic writes, JSON out, the table file, the hub
    "text": {"core"},  # tokenizers, vocabularies
    "tasks": {"core"},  # the task registry and the tasks' text
    "tables": {"_version", "core", "text"},  # the table and everything done to one
    "eval": {"_version", "core", "text", "tables"},  # analogies, similarity
    "formats": {"_version", "core", "text", "tables"},  # sources in, exports and injections out
    "model": {"core", "tables"},  # the transformer; never training
    "training": {"_version", "core", "text", "tasks", "tables", "formats", "model"},
    "experiment": {"_version", "core", "text", "tasks", "tables", "formats", "model", "training"},
    "commands": {
        "_version",
        "core",
        "text",
        "tasks",
        "tables",
        "eval",
        "formats",
        "model",
        "training",
        "experiment",
    },  # fmt: skip
    "cli": {"_version", "core", "commands"},
    "docgen": {"cli"},
    "__main__": {"cli"},
}
ROOT_MODULES = {"__init__", "__main__", "_version", "cli", "docgen"}  # besides these, at most 6 at the root
MAX_OTHER_ROOT_MODULES = 6


def unit_of(module: str, package: str = PACKAGE) -> str:
    """``embtool.training.loop`` → ``training``; ``embtool.cli`` → ``cli``; the package itself → ``""``."""
    parts = module.split(".")[1:]
    return parts[0] if parts else ""


def unit_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, dict[str, Import]]:
    """unit → {imported unit → its first import}, counting imports under TYPE_CHECKING too."""
    global _COUNT_TYPE_CHECKING
    _COUNT_TYPE_CHECKING = True
    try:
        graph = import_graph(src, package)
    finally:
        _COUNT_TYPE_CHECKING = False
    units: dict[str, dict[str, Import]] = {}
    for module, edges in graph.items():
        here = unit_of(module, package)
        if not here:  # the package's __init__: the lazy API façade, allowed to name anything
            continue
        out = units.setdefault(here, {})
        for target, imp in edges.items():
            there = unit_of(target, package)
            if there and there != here:
                out.setdefault(there, imp)
    return units


def test_layers_are_acyclic_and_complete() -> None:
    assert not cycles({u: dict.fromkeys(deps) for u, deps in LAYERS.items()}), "LAYERS itself has a cycle"  # type: ignore[misc]
    units = {unit_of(m) for m in modules()} - {""}
    unplaced = sorted(units - set(LAYERS))
    assert not unplaced, f"unit(s) with no place in LAYERS: {unplaced}"


def test_imports_follow_the_layers() -> None:
    bad = [
        f"{here} imports {there} at {imp.where()} (allowed: {', '.join(sorted(LAYERS.get(here, ()))) or 'nothing'})"
        for here, edges in sorted(unit_graph().items())
        for there, imp in sorted(edges.items())
        if there not in LAYERS.get(here, set())
    ]
    assert not bad, "import(s) across the layers the wrong way:\n" + "\n".join(bad)


def test_no_cycle_between_units() -> None:
    graph = unit_graph()
    found = cycles(graph)
    assert not found, "import cycle(s) between units:\n" + "\n".join(describe(c, graph) for c in found)


def test_few_modules_at_the_root() -> None:
    others = sorted(p.stem for p in (SRC / PACKAGE).glob("*.py") if p.stem not in ROOT_MODULES)
    assert len(others) <= MAX_OTHER_ROOT_MODULES, f"{len(others)} modules at the package root: {others}"


MAX_FUNCTION_LINES, MAX_PARAMETERS = 60, 8  # in training/: a step readable in one sitting
# Functions in training/ still over the limits (name → why): the list may only shrink.
OVERSIZED: dict[str, str] = {}


def oversized_functions(folder: Path) -> list[str]:
    """``path:line name (n lines, k parameters)`` for each function over the limits (self/cls not counted)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs] + [x for x in (a.vararg, a.kwarg) if x]
            n_params = len([p for p in params if p.arg not in ("self", "cls")])
            n_lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if n_lines > MAX_FUNCTION_LINES or n_params > MAX_PARAMETERS:
                rel = path.relative_to(SRC).as_posix()
                found.append(f"{rel}:{node.lineno} {node.name} ({n_lines} lines, {n_params} parameters)")
    return found


def test_training_functions_are_small() -> None:
    found = oversized_functions(SRC / PACKAGE / "training")
    names = {f.split(" ")[1] for f in found}
    assert names <= set(OVERSIZED), "function(s) in training/ over 60 lines or 8 parameters:\n" + "\n".join(
        f for f in found if f.split(" ")[1] not in OVERSIZED
    )
    assert not set(OVERSIZED) - names, (
        f"OVERSIZED entries now small enough, remove them: {set(OVERSIZED) - names}"
    )


def _has_logic(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(tree))


def _test_strings() -> set[str]:
    """Every string literal in the tests (a CLI test names its subcommand as one)."""
    out = set()
    for path in TESTS.glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        out |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return out


def _command_names(path: Path) -> set[str]:
    """The subcommands a commands/ module registers (``app.command("name")``), else its file name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {
        n.args[0].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "command"
        and n.args
        and isinstance(n.args[0], ast.Constant)
        and isinstance(n.args[0].value, str)
    }
    return names or {path.stem}


def test_every_module_with_logic_has_a_test_file() -> None:
    """Informative: modules without a test file are reported as a warning, not a failure; the
    allowlist itself must stay true (its patterns match modules that still lack a test)."""
    strings = _test_strings()
    tests = {p.name for p in TESTS.glob("test_*.py")}
    missing, allowed = [], set()
    for name, path in modules().items():
        rel = path.relative_to(SRC).as_posix()
        stem = name.rpartition(".")[2] if path.name == "__init__.py" else path.stem
        pkg = name.split(".")[1] if name.count(".") > 1 else ""
        if not _has_logic(path) or {f"test_{stem}.py", f"test_{pkg}_{stem}.py"} & tests:
            continue
        if rel.startswith(f"{PACKAGE}/commands/") and not path.stem.startswith("_"):
            if _command_names(path) & strings:
                continue
        hits = [pattern for pattern in WITHOUT_OWN_TEST if fnmatch.fnmatch(rel, pattern)]
        if hits:
            allowed |= set(hits)
            continue
        missing.append(f"{rel} ({line_count(path)} lines) → tests/test_{stem}.py")
    stale = sorted(set(WITHOUT_OWN_TEST) - allowed)
    assert not stale, f"WITHOUT_OWN_TEST entries that match no untested module any more, remove them: {stale}"
    assert all(reason.strip() for reason in WITHOUT_OWN_TEST.values())
    if missing:
        warnings.warn(
            f"{len(missing)} module(s) with logic and no tests/test_<module>.py (STYLE.md 11): "
            + "; ".join(missing),
            stacklevel=1,
        )


def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.col_offset == 0:
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.col_offset == 0:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and node.col_offset == 0:
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_lazy_exports_resolve() -> None:
    """Every ``_EXPORTS`` entry names a module of the package that defines the name."""
    known = modules()
    bad = []
    for name, path in known.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not (
                isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_EXPORTS" for t in node.targets)
            ):
                continue
            table = ast.literal_eval(node.value)
            for attr, module in table.items():
                if module not in known:
                    bad.append(f"{name}._EXPORTS[{attr!r}]: no module {module}")
                elif attr not in _top_level_names(known[module]):
                    bad.append(f"{name}._EXPORTS[{attr!r}]: {module} defines no {attr}")
    assert not bad, "\n".join(bad)


# ----------------------------------------------------------------------------- the checker itself

CASES = {  # name → (files of a package `pkg`, the cycles expected)
    "plain": ({"a.py": "import pkg.b\n", "b.py": "from pkg.a import f\n"}, ["pkg.a → pkg.b → pkg.a"]),
    "lazy import": (
        {"a.py": "from pkg import b\n", "b.py": "def f():\n    from pkg.a import g\n"},
        ["pkg.a → pkg.b → pkg.a"],
    ),
    "type-checking only": (
        {
            "a.py": "from pkg import b\n",
            "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
        },
        [],
    ),
    "relative": ({"a.py": "from . import b\n", "b.py": "from .a import f\n"}, ["pkg.a → pkg.b → pkg.a"]),
    "a name from a package is not its submodule": (
        {"__init__.py": "x = 1\n", "a.py": "from pkg import x\n", "b.py": "from pkg.a import f\n"},
        [],
    ),
    "package stands for its __init__": (
        {"a.py": "import pkg.sub\n", "sub/__init__.py": "from ..a import f\n", "sub/c.py": ""},
        ["pkg.a → pkg.sub → pkg.a"],
    ),
    "submodule of a subpackage": (
        {"a.py": "from pkg.sub import c\n", "sub/__init__.py": "", "sub/c.py": "from ... import a\n"},
        [],  # `from ... import a` climbs above pkg: not pkg's module
    ),
    "exports table is not an import": (
        {
            "__init__.py": "import importlib\n_EXPORTS = {'f': 'pkg.a'}\n"
            "def __getattr__(n):\n    return getattr(importlib.import_module(_EXPORTS[n]), n)\n",
            "a.py": "from pkg import VERSION\n",
        },
        [],
    ),
    "literal import_module is an import": (
        {
            "a.py": "import importlib\ndef f():\n    importlib.import_module('pkg.b')\n",
            "b.py": "import pkg.a\n",
        },
        ["pkg.a → pkg.b → pkg.a"],
    ),
    "two cycles through one module": (
        {"a.py": "import pkg.b\nimport pkg.c\n", "b.py": "import pkg.a\n", "c.py": "import pkg.a\n"},
        ["pkg.a → pkg.b → pkg.a", "pkg.a → pkg.c → pkg.a"],
    ),
    "three modules": (
        {"a.py": "import pkg.b\n", "b.py": "import pkg.c\n", "c.py": "import os\nimport pkg.a\n"},
        ["pkg.a → pkg.b → pkg.c → pkg.a"],
    ),
}


@pytest.mark.parametrize(("files", "expected"), list(CASES.values()), ids=list(CASES))
def test_cycle_finder(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    for rel, text in {"__init__.py": "", **files}.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    graph = import_graph(tmp_path, "pkg")
    assert [" → ".join(c) for c in cycles(graph)] == expected


def test_cycle_report_names_each_import() -> None:
    graph = {
        "p.a": {"p.b": Import("p.b", ROOT / "src/p/a.py", 3, False)},
        "p.b": {"p.a": Import("p.a", ROOT / "src/p/b.py", 9, True)},
    }
    assert describe(cycles(graph)[0], graph).splitlines() == [
        "p.a → p.b → p.a",
        "    p.a imports p.b at src/p/a.py:3",
        "    p.b imports p.a at src/p/b.py:9, inside a function",
    ]
