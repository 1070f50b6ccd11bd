"""The documentation: README.md stays a front page, and every relative link in it and in docs/ resolves.

A link's #anchor must name a heading of its target as GitHub and the site (MkDocs, Python-Markdown's
toc) both slug it, so the README and the pages work in either place. `make test` also builds the site
with `mkdocs build --strict` (every page in the nav, no broken link).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
PAGES = sorted((ROOT / "docs").rglob("*.md"))
LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)\)")  # [text](target); images are not links
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked out."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(CODE_SPAN.sub("", line))
    return lines


def _heading_texts(text: str) -> list[str]:
    """The ATX headings' text as rendered: no backticks, emphasis or link syntax."""
    texts, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).replace("`", "")
            texts.append(re.sub(r"(\*\*|__|\*)", "", plain))
    return texts


def github_slug(text: str) -> str:
    """GitHub's heading id: lower case, punctuation and symbols dropped, each space a hyphen."""
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -_" or unicodedata.category(c) == "Mn")
    return kept.replace(" ", "-")


def toc_slug(text: str) -> str:
    """Python-Markdown toc's default slugify (MkDocs): ASCII only, runs of spaces/hyphens one hyphen."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", ascii_text).strip().lower())


def _anchors(path: Path, slug) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for text in _heading_texts(path.read_text(encoding="utf-8")):
        base = slug(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}" if slug is github_slug else f"{base}_{n}")
    return out


def _links(path: Path) -> list[str]:
    return [m.group(1) for line in _prose(path.read_text(encoding="utf-8")) for m in LINK.finditer(line)]


def _broken(path: Path) -> list[str]:
    """What each relative link of ``path`` fails on: a missing file, or an anchor no heading has."""
    problems = []
    for target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:: not checked here
            continue
        if target.startswith("/"):
            problems.append(f"{target}: an absolute path (give it relative to {path.name})")
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(
                f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
            )
        elif anchor and dest.suffix == ".md":
            for slug in (github_slug, toc_slug):
                if anchor not in _anchors(dest, slug):
                    problems.append(
                        f"{target}: no heading of {dest.name} has the id {anchor!r} ({slug.__name__})"
                    )
    return problems


@pytest.mark.parametrize(
    ("heading", "github", "toc"),
    [
        ("The demo: the paper's GloVe experiment in miniature", "the-demo-the-papers-glove-experiment-in-miniature",
         "the-demo-the-papers-glove-experiment-in-miniature"),
        ("make gpu-check", "make-gpu-check", "make-gpu-check"),
        ("experiment: variants × seeds × settings", "experiment-variants--seeds--settings",
         "experiment-variants-seeds-settings"),
        ("Norms: --norm post|pre|admin", "norms---norm-postpreadmin", "norms-norm-postpreadmin"),
        ("σ against Xavier", "σ-against-xavier", "against-xavier"),
    ],
)  # fmt: skip
def test_slugs_are_githubs_and_mkdocs(heading: str, github: str, toc: str) -> None:
    """Known ids: GitHub keeps a double hyphen and non-ASCII letters, Python-Markdown neither."""
    assert (github_slug(heading), toc_slug(heading)) == (github, toc)


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_links_into_the_site() -> None:
    """The front page links every page of the site's guide (docs/ but the measurements)."""
    linked = {
        (ROOT / t.partition("#")[0]).resolve() for t in _links(ROOT / "README.md") if not t.startswith("#")
    }
    missing = [p.relative_to(ROOT).as_posix() for p in PAGES if p.resolve() not in linked]
    assert not missing, f"README.md links none of: {missing}"


@pytest.mark.parametrize("path", [ROOT / "README.md", *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path: Path) -> None:
    assert _broken(path) == []


def test_a_broken_link_and_anchor_are_found(tmp_path: Path) -> None:
    """The checker itself: a missing file, a missing heading, and one GitHub and the site slug apart."""
    (tmp_path / "a.md").write_text("# Title\n\n## x × y\n", encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#title) [gone](c.md) [no](a.md#nothing) [apart](a.md#x--y) `[code](c.md)`\n"
        "```\n[fenced](c.md)\n```\n",
        encoding="utf-8",
    )
    problems = _broken(page)
    assert [p.split(":")[0] for p in problems] == ["c.md", "a.md#nothing", "a.md#nothing", "a.md#x--y"]
    assert "toc_slug" in problems[-1]


def test_every_name_the_docs_import_from_embtool_exists() -> None:
    """`from embtool import …` in README.md and docs/ (code blocks and prose): each name is exported."""
    import embtool

    names = set()
    for path in [ROOT / "README.md", *PAGES]:
        for m in re.finditer(r"from embtool import ([\w, ]+)", path.read_text(encoding="utf-8")):
            names |= {n.strip() for n in m.group(1).split(",") if n.strip()}
    assert {"load", "standardize", "train", "TrainConfig"} <= names
    assert sorted(n for n in names if not hasattr(embtool, n)) == []
