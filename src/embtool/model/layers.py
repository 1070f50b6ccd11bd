"""The transformer's layers: attention, feed-forward, the decoder's output layer (``output_layer``:
Chung et al.'s head with ``--output-dim``), and encoder/decoder layers whose residual sub-layers
place their LayerNorm one of three ways (``NORMS``; Liu et al. 2020):

- ``post`` (Vaswani et al.; the paper's): x_i = LN(x_{i−1} + f_i(x_{i−1}));
- ``pre``: x_i = x_{i−1} + f_i(LN(x_{i−1})), and one final LayerNorm on each stack's output (model.py);
- ``admin``: x_i = LN(x_{i−1} ⊙ ω_i + f_i(x_{i−1})), ω_i a learned D-vector per sub-layer, set
  before training by a profiling pass (``embtool.training.admin``).

``f_i`` includes the dropout on the sub-layer's output. A layer's ``probe`` (None in training) sees
each post/admin sub-layer's (index, x_{i−1}, f_i, ω_i) before they are added: the Admin profiling
sets ω_i there, and the embedding-dynamics pass reads the residual-branch ratios.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embtool.model.choices import NORMS as NORMS  # re-exported: the layers implement these
from embtool.model.choices import OUTPUT_HEADS as OUTPUT_HEADS
from embtool.model.dropout import Dropout

if TYPE_CHECKING:
    from embtool.model.transformer import ModelConfig

Cache = dict[str, dict[str, Tensor]]  # one decoder layer's {"self": {k, v}, "cross": {k, v}}
Probe = Callable[[int, Tensor, Tensor, "Tensor | None"], None]  # (sub-layer, x, f(x), ω or None)


ALIGN = 8  # CUDA's fused SDPA kernels (flash, memory-efficient) take head widths in multiples of 8


def padded_head_dim(head_dim: int, device: torch.device) -> int:
    """The head width SDPA is given: off the CPU the next multiple of ``ALIGN`` (32 for GloVe's
    300 / 10 heads = 30, which would otherwise always take the slow math path), on a CPU the width
    itself (its kernels take any width, and padding measured 20–130% slower there)."""
    if device.type == "cpu":
        return head_dim
    return -(-head_dim // ALIGN) * ALIGN


def _pad_heads(t: Tensor, width: int) -> Tensor:
    """(…, d) → (…, width) with zero columns: they add nothing to q·k and give zero output columns."""
    return F.pad(t, (0, width - t.shape[-1])) if width > t.shape[-1] else t


class Attention(nn.Module):
    """Multi-head attention through ``F.scaled_dot_product_attention``. Off the CPU a head width that
    is not a multiple of 8 is zero-padded to one (``padded_head_dim``) with the softmax scale of the
    true width, and the output sliced back: the same result, on the fused kernels."""

    def __init__(self, cfg: ModelConfig, cross: bool = False) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.cross = cross
        if cross:
            self.q = nn.Linear(d, d)
            self.kv = nn.Linear(d, 2 * d)  # keys and values from the encoder memory
        else:
            self.qkv = nn.Linear(d, 3 * d)  # one matmul for q, k, v
        self.proj = nn.Linear(d, d)
        self.dropout = cfg.attn_dropout

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """x (B, T, D) → (B, T, D). ``cache`` (decoding one step at a time) keeps keys and values,
        padded (W = ``padded_head_dim``): a step pads only its own position's."""
        B, T, C = x.shape  # batch, query length, D
        H = self.n_heads
        d = C // H  # head width
        W = padded_head_dim(d, x.device)  # the width SDPA sees: d, or d and zero columns
        if self.cross:
            q = _pad_heads(self.q(x).view(B, T, H, d).transpose(1, 2), W)  # (B, H, T, W)
            if cache is not None and "k" in cache:
                k, v = cache["k"], cache["v"]  # (B, H, S, W): the memory's, computed once
            else:
                assert memory is not None
                S = memory.shape[1]
                kv = self.kv(memory).view(B, S, 2, H, d).permute(2, 0, 3, 1, 4)  # (2, B, H, S, d)
                k, v = _pad_heads(kv, W)  # (B, H, S, W) each
                if cache is not None:
                    cache["k"], cache["v"] = k, v
        else:
            qkv = self.qkv(x).view(B, T, 3, H, d).permute(2, 0, 3, 1, 4)  # (3, B, H, T, d)
            q, k, v = _pad_heads(qkv, W)  # (B, H, T, W) each
            if cache is not None:
                if "k" in cache:  # the earlier positions' keys and values
                    k = torch.cat([cache["k"], k], dim=2)  # (B, H, t, W)
                    v = torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
                causal = False  # one new position sees every cached one
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
            scale=1.0 / math.sqrt(d) if W != d else None,  # the true width's 1/√d, not 1/√W
        )  # (B, H, T, W)
        y = y[..., :d].transpose(1, 2).reshape(B, T, C)  # (B, T, D)
        return self.proj(y)


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.out = nn.Linear(cfg.d_ff, cfg.d_model)
        self.drop = Dropout(cfg.dropout if cfg.ffn_dropout is None else cfg.ffn_dropout)  # relu-dropout

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.drop(F.relu(self.fc(x))))  # (B, T, D)


def output_layer(cfg: ModelConfig) -> nn.Module:
    """The decoder's output layer, hidden states (…, D) → logits (…, V). Its last Linear is the
    output embedding, (V, E_out) (no bias when tied to the input embedding).

    - no ``output_dim``: one D → V Linear (the paper's);
    - ``output_head`` "chung" (Chung et al. 2021, as RemBERT's LM head): a D → E_out Linear, GELU,
      LayerNorm over E_out, then the E_out-wide output embedding. The nonlinearity is what lets a
      wider output embedding add capacity: the logits of many hidden states span more than D
      dimensions (up to E_out + 1);
    - "linear": D → E_out → V with nothing between, a rank-≤ D factorisation of one D → V layer
      (more parameters, no more capacity); what ``--output-dim`` built before issue 25.
    """
    out = nn.Linear(cfg.out_dim, cfg.tgt_vocab, bias=not cfg.tie_output)
    if not cfg.output_dim:
        return out
    if cfg.output_head == "linear":
        return nn.Sequential(nn.Linear(cfg.d_model, cfg.output_dim, bias=False), out)
    proj = nn.Linear(cfg.d_model, cfg.output_dim)  # (E_out, D), with a bias as RemBERT's
    return nn.Sequential(proj, nn.GELU(), nn.LayerNorm(cfg.output_dim), out)


class Residual(nn.Module):
    """Base of a layer of residual sub-layers (see the module docstring for the three norms)."""

    def __init__(self, cfg: ModelConfig, n_sublayers: int) -> None:
        super().__init__()
        self.norm = cfg.norm
        self.drop = Dropout(cfg.dropout)
        admin = cfg.norm == "admin"
        # ω_i: ones until the profiling pass sets them; a learned parameter afterwards
        self.omega = nn.ParameterList(
            [nn.Parameter(torch.ones(cfg.d_model)) for _ in range(n_sublayers)] if admin else []
        )
        self.probe: Probe | None = None

    def sublayer(self, i: int, x: Tensor, ln: nn.LayerNorm, branch: Callable[[Tensor], Tensor]) -> Tensor:
        """Sub-layer ``i``: x (B, T, D) → (B, T, D) through ``branch`` and its residual connection."""
        if self.norm == "pre":
            return x + self.drop(branch(ln(x)))
        f = self.drop(branch(x))  # (B, T, D)
        omega = self.omega[i] if self.norm == "admin" else None  # (D,)
        if self.probe is not None:
            self.probe(i, x, f, omega)
        return ln(x * omega + f) if omega is not None else ln(x + f)


class EncoderLayer(Residual):
    """Self-attention, then feed-forward, each a residual sub-layer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, 2)
        self.attn = Attention(cfg)
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.sublayer(0, x, self.ln1, lambda h: self.attn(h, mask=mask))  # (B, S, D)
        return self.sublayer(1, x, self.ln2, self.ffn)


class DecoderLayer(Residual):
    """Causal self-attention, cross-attention to the encoder, feed-forward."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, 3)
        self.self_attn = Attention(cfg)
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.cross_attn = Attention(cfg, cross=True)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg)
        self.ln3 = nn.LayerNorm(cfg.d_model)

    def forward(
        self, y: Tensor, memory: Tensor, memory_mask: Tensor | None, cache: Cache | None = None
    ) -> Tensor:
        # Padding sits at the end of each target, so the causal mask alone keeps real positions
        # from seeing it; padded positions' outputs are never scored.
        c_self, c_cross = (cache["self"], cache["cross"]) if cache is not None else (None, None)
        y = self.sublayer(0, y, self.ln1, lambda h: self.self_attn(h, causal=True, cache=c_self))  # (B, T, D)
        y = self.sublayer(
            1, y, self.ln2, lambda h: self.cross_attn(h, memory=memory, mask=memory_mask, cache=c_cross)
        )
        return self.sublayer(2, y, self.ln3, self.ffn)
