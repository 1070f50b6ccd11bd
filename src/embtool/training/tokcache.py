"""Tokenize once: a task's tokenized splits, kept under ``$EMBTOOL_CACHE`` for the runs that follow.

IWSLT2017's 206k pairs take minutes through spaCy, and every run of a grid tokenizes the same text
the same way. An entry is one split's token lists for one tokenizer, keyed by the task and split
(for its file name), the tokenizer spec (its lower-casing included), the versions of embtool and of
the packages that tokenize (spaCy, tokenizers, transformers) and a hash of the text itself (so an
edited file is never read from an old entry). Entries are written atomically (a temporary file,
then a rename), so concurrent writers of one entry leave one whole file; an unreadable entry is
tokenized anew. ``--no-cache`` neither reads nor writes. Default folder: ``$XDG_CACHE_HOME/embtool``
(``~/.cache/embtool``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from embtool._version import __version__

TOKENIZER_PACKAGES = ("spacy", "tokenizers", "transformers")


def cache_dir() -> Path:
    """``$EMBTOOL_CACHE``, else ``$XDG_CACHE_HOME/embtool``, else ``~/.cache/embtool``."""
    if os.environ.get("EMBTOOL_CACHE"):
        return Path(os.environ["EMBTOOL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "embtool"


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"embtool": __version__}
    for name in TOKENIZER_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


def entry_key(task: str, split: str, spec: str, lines: list[str]) -> str:
    """The hex key of one split's tokenization (see the module docstring)."""
    text = hashlib.sha256()
    for line in lines:
        text.update(line.encode("utf-8", "surrogatepass"))
        text.update(b"\n")
    what = {
        "task": task,
        "split": split,
        "spec": spec,
        "versions": package_versions(),
        "text": text.hexdigest(),
        "n": len(lines),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def entry_path(task: str, split: str, spec: str, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", f"{task}.{split}.{spec}")[:120]
    return cache_dir() / "tokens" / f"{safe}.{key[:24]}.json"


def cached(
    tokenize: Callable[[str, list[str]], list[list[str]]],
    spec: str,
    lines: list[str],
    task: str,
    split: str,
    use: bool = True,
) -> list[list[str]]:
    """``tokenize(spec, lines)``, read from the cache when it holds this split (``use``)."""
    if not use or not lines:
        return tokenize(spec, lines)
    key = entry_key(task, split, spec, lines)
    path = entry_path(task, split, spec, key)
    if path.is_file():
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
            if value.get("key") == key and len(value["tokens"]) == len(lines):
                return [list(t) for t in value["tokens"]]
        except (OSError, ValueError, KeyError, AttributeError, TypeError):
            pass  # a broken entry: tokenize again and replace it
    tokens = tokenize(spec, lines)
    try:
        from embtool import atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps({"key": key, "tokens": tokens}, ensure_ascii=False))
    except OSError:
        pass  # a read-only or full cache folder costs the next run the tokenizing, nothing else
    return tokens
