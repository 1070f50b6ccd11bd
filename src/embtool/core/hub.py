"""Is the Hugging Face hub reachable? Asked once per process, so an offline run fails in seconds.

Without network, huggingface_hub retries every request with back-off (five tries, 22–33 lines of
warnings, about a minute) before it gives up. embtool asks once instead: ``HF_HUB_OFFLINE`` set
means offline; otherwise one TCP connection to the hub (or the proxy) with a short timeout. When
offline, hub files come from the local cache only (``local_files_only``) and a miss is one line
that says how to point at a local folder.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from embtool.core.errors import WorkFailure

PROBE_TIMEOUT = 3.0  # seconds for the one connection attempt
_TRUE = ("1", "true", "yes", "on")
_reachable: dict[str, bool] = {}  # endpoint → answer, for this process


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set or the hub cannot be reached (probed once)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    host, port = _probe_target()
    if f"{host}:{port}" not in _reachable:
        _reachable[f"{host}:{port}"] = _connects(host, port)
    return not _reachable[f"{host}:{port}"]


def _probe_target() -> tuple[str, int]:
    """The host and port a hub request would connect to first: the HTTPS proxy, else the endpoint."""
    url = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or ""
    url = url or os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parts = urlsplit(url if "//" in url else f"http://{url}")
    return parts.hostname or "huggingface.co", parts.port or (443 if parts.scheme == "https" else 80)


def _connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
    except OSError:  # no DNS, refused, unreachable, timed out
        return False
    return True


def cached(repo: str) -> bool:
    """Whether the local hub cache holds a snapshot of ``repo`` (its config or tokenizer config)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return any(
            isinstance(try_to_load_from_cache(repo, name), str)
            for name in ("config.json", "tokenizer_config.json")
        )
    except ValueError:  # not a valid repo id
        return False


def unreachable(what: str, fix: str) -> WorkFailure:
    """The one-line error for a hub file that is neither reachable nor in the local cache."""
    why = (
        "HF_HUB_OFFLINE is set"
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
        else "no network"
    )
    return WorkFailure(
        f"{what}: the Hugging Face hub is unreachable ({why}) and it is not in the local cache; {fix}"
    )
