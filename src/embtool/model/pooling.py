"""How the classifier (SST-2, MNLI) reads one vector out of the encoder, and how it sees a pair.

The paper says only "two classification tasks … on an encoder-only transformer" (§4): the pooling
and the pair's form are choices, so they are options (issue 22.2).

- ``pool="mean"`` (the default): the mean of the real tokens' final states, padding left out;
- ``pool="first"``: the final state of the first position, where data prep puts a ``<cls>`` token
  in front of every source (BERT's way; ``training.setup.source_specials``).

An MNLI pair runs as one sequence, ``premise <sep> hypothesis``, the positions going on through
both. ``segments=True`` adds a learned segment embedding to the inputs (BERT's token types):
segment 0 up to and including the first ``<sep>``, segment 1 after it. It is Xavier-initialised
with the other non-embedding weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from embtool.core.errors import BadInput
from embtool.model.choices import POOLS

if TYPE_CHECKING:
    from embtool.model.transformer import ModelConfig


def check_pooling(pool: str, segments: bool, sep_id: int) -> None:
    """BadInput unless ``pool`` is one of ``POOLS`` and ``segments`` has a ``<sep>`` to split at."""
    if pool not in POOLS:
        raise BadInput(f"invalid --pool {pool!r}; valid choices: {list(POOLS)}")
    if segments and sep_id < 0:
        raise BadInput("--segments needs sentence pairs (mnli: premise <sep> hypothesis)")


def segment_ids(src: Tensor, sep_id: int) -> Tensor:
    """(B, S) token ids → (B, S) segment ids: 0 up to and including the first ``sep_id``, 1 after."""
    is_sep = (src == sep_id).long()  # (B, S)
    before = is_sep.cumsum(1) - is_sep  # (B, S) separators strictly before each position
    return before.clamp(max=1)


def pool(h: Tensor, src: Tensor, how: str, pad_id: int) -> Tensor:
    """(B, S, D) encoder states of (B, S) ids → (B, D): ``mean`` over the real tokens, or ``first``."""
    if how == "first":
        return h[:, 0]  # (B, D): the <cls> position
    keep = (src != pad_id).unsqueeze(-1).to(h.dtype)  # (B, S, 1)
    return (h * keep).sum(1) / keep.sum(1).clamp(min=1)  # (B, D)


class Pooler(nn.Module):
    """The classifier's pooling and, with ``cfg.segments``, its segment embedding (2, D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.how, self.pad_id, self.sep_id = cfg.pool, cfg.pad_id, cfg.sep_id
        self.segment = nn.Embedding(2, cfg.d_model) if cfg.segments else None

    def segments(self, src: Tensor) -> Tensor | None:
        """(B, S) ids → (B, S, D) segment embeddings to add to the inputs; None without segments."""
        if self.segment is None:
            return None
        return self.segment(segment_ids(src, self.sep_id))  # (B, S, D)

    def forward(self, h: Tensor, src: Tensor) -> Tensor:
        return pool(h, src, self.how, self.pad_id)  # (B, D)


__all__ = ["POOLS", "Pooler", "check_pooling", "pool", "segment_ids"]
