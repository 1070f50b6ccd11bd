"""Build a vocabulary: count tokens in text, keep those with frequency ≥ min_freq, specials first.

The paper keeps tokens seen at least twice (five times for IWSLT2017), Appendix A.2.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from embtool.core.errors import BadInput
from embtool.text.vocabfile import Vocabulary

DEFAULT_SPECIALS = ("<unk>", "<pad>", "<bos>", "<eos>")


def parse_specials(text: str) -> tuple[str, ...]:
    """``"<unk>,<pad>"`` → ("<unk>", "<pad>"); an empty string means no specials."""
    items = tuple(s.strip() for s in text.split(",")) if text.strip() else ()
    if any(not s or any(c.isspace() for c in s) for s in items):
        raise BadInput(f"--specials {text!r}: give comma-separated tokens without spaces, e.g. '<unk>,<pad>'")
    if len(set(items)) != len(items):
        raise BadInput(f"--specials {text!r}: a special token is given twice")
    return items


def count_tokens(
    token_lists: Iterable[list[str]], progress: Callable[[int], None] | None = None
) -> Counter[str]:
    """How often each token occurs; ``progress(n)`` is called every 1000 lines."""
    counts: Counter[str] = Counter()
    for i, tokens in enumerate(token_lists, start=1):
        counts.update(tokens)
        if progress is not None and i % 1000 == 0:
            progress(1000)
    return counts


def build_vocab(
    counts: Counter[str],
    min_freq: int = 2,
    specials: Sequence[str] = DEFAULT_SPECIALS,
    max_size: int | None = None,
    info: dict[str, str] | None = None,
) -> Vocabulary:
    """Specials first, then tokens with count ≥ ``min_freq``, most frequent first (ties by token).

    ``max_size`` caps the number of non-special tokens. Each token keeps its corpus count (specials
    theirs, usually 0), so ``extract`` can report the share of corpus tokens it covers.
    """
    if min_freq < 1:
        raise BadInput(f"--min-freq must be at least 1, got {min_freq}")
    if max_size is not None and max_size < 0:
        raise BadInput(f"--max-size must not be negative, got {max_size}")
    special_set = set(specials)
    kept = sorted(
        ((t, c) for t, c in counts.items() if c >= min_freq and t not in special_set),
        key=lambda tc: (-tc[1], tc[0]),
    )
    if max_size is not None:
        kept = kept[:max_size]
    bad = next((t for t, _ in kept if any(ch in t for ch in "\t\n\r")), None)
    if bad is not None:
        raise BadInput(f"token {bad!r} holds a tab or line break; it cannot go in a vocabulary file")
    tokens = [*specials, *(t for t, _ in kept)]
    if not tokens:
        raise BadInput(f"no token occurs at least {min_freq} time(s); lower --min-freq")
    values = [counts.get(s, 0) for s in specials] + [c for _, c in kept]
    return Vocabulary(tokens, values, dict(info or {}))
