"""Tokenize once: a task's tokenized splits, kept under ``$EMBTOOL_CACHE`` for the runs that follow.

IWSLT2017's 206k pairs take minutes through spaCy, and every run of a grid tokenizes the same text
the same way. An entry is one split's token lists for one tokenizer, keyed by the task and split
(for its file name), the tokenizer spec (its lower-casing included), the versions of embtool and of
the packages that tokenize (spaCy, tokenizers, transformers) and a hash of the text itself (so an
edited file is never read from an old entry). Entries are written atomically (a temporary file,
then a rename), so concurrent writers of one entry leave one whole file. A broken cache costs the
tokenizing, never the run: a damaged entry is tokenized anew and replaced; a cache that cannot be read
or written (a full disk, a folder where an entry belongs) is left alone for the rest of the process.
Either says so once per process (a ``CacheWarning``, one line). ``--no-cache`` neither reads nor
writes. Default folder: ``$XDG_CACHE_HOME/embtool`` (``~/.cache/embtool``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embtool._version import __version__
from embtool.core.errors import EmbtoolError

TOKENIZER_PACKAGES = ("spacy", "tokenizers", "transformers")

_warned = False  # this process has said that the cache is broken (it says so once)
_off = False  # this process met a cache it cannot read or write: it tokenizes without it from then on


class CacheWarning(UserWarning):
    """The tokenization cache is broken; the results are not affected."""


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
    """``tokenize(spec, lines)``, read from the cache when it holds this split (``use``).

    Whatever goes wrong with the cache, the result is ``tokenize``'s (see the module docstring)."""
    global _off
    if not use or not lines or _off:
        return tokenize(spec, lines)
    key = entry_key(task, split, spec, lines)
    path = entry_path(task, split, spec, key)
    name = path.relative_to(cache_dir())
    data = None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        pass  # not cached yet
    except OSError as e:  # a folder where the entry belongs, a file where the folder belongs, a bad disk
        _off = True
        _warn(f"could not read {name} ({_reason(e, path)})", True)
    if data is not None:
        try:
            tokens = _entry_tokens(json.loads(data), key, len(lines))
        except ValueError as e:  # not UTF-8, bad JSON, JSON that is not an entry: tokenized anew, replaced
            _warn(f"{name} is damaged ({e})", False)
        else:
            if tokens is not None:
                return tokens
    tokens = tokenize(spec, lines)
    if _off:
        return tokens
    try:
        from embtool.core import atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps({"key": key, "tokens": tokens}, ensure_ascii=False))
    except (OSError, EmbtoolError) as e:  # a full disk, a read-only folder, a folder in the entry's place
        _off = True
        _warn(f"could not write {name} ({_reason(e, path)})", True)
    return tokens


def _entry_tokens(value: Any, key: str, n: int) -> list[list[str]] | None:
    """An entry's token lists; None when it holds another key's (a clash of file names); ValueError
    when it is not an entry of ``n`` token lists."""
    if not isinstance(value, dict) or not isinstance(value.get("tokens"), list):
        raise ValueError("not a JSON object with a 'tokens' list")
    if value.get("key") != key:
        return None
    tokens = value["tokens"]
    if len(tokens) != n or not all(
        isinstance(t, list) and all(isinstance(s, str) for s in t) for t in tokens
    ):
        raise ValueError(f"not {n} lists of token strings")
    return tokens


def _reason(e: BaseException, path: Path) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e).removeprefix(f"{path}: ")  # the atomic writer's errors start with the path


def _warn(what: str, off: bool) -> None:
    """Say once per process that the cache is broken (one line: the warning has no source line)."""
    global _warned
    if _warned:
        return
    _warned = True
    then = "the run goes on without the cache" if off else "it is tokenized anew and replaced"
    # warn_explicit with line 0: Python's warning line alone, without a source line under it
    warnings.warn_explicit(
        f"tokenization cache {cache_dir()} ($EMBTOOL_CACHE): {what}; {then}, results are unaffected",
        CacheWarning,
        "embtool",
        0,
        module=__name__,
    )
