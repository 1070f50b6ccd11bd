"""The paper's vanilla transformer (Vaswani et al., 2017; Kim et al., 2024, Appendix A).

Two shapes share one set of blocks:
- ``Seq2Seq``: post-LN encoder-decoder for translation;
- ``Classifier``: post-LN encoder, mean-pooled over real tokens, then one linear layer.

Inputs go through ``TokenInput``: embedding × √D + sinusoidal position encoding (Appendix A.1,
Eq. 3), then dropout. Attention is ``scaled_dot_product_attention`` (fused kernels where the
device has them). Every non-embedding weight is Xavier-uniform (Appendix A.2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embtool.errors import BadInput
from embtool.positional import sinusoidal
from embtool.training.cpu import Dropout

KINDS = ("translation", "classification")
Cache = dict[str, dict[str, Tensor]]  # one decoder layer's {"self": {k, v}, "cross": {k, v}}


def default_heads(d_model: int) -> int:
    """8 heads when they divide D (the paper), else the largest count ≤ 10 that does (10 for 300)."""
    if d_model % 8 == 0:
        return 8
    return max(h for h in range(1, 11) if d_model % h == 0)


@dataclass
class ModelConfig:
    kind: str = "translation"  # "translation" (encoder-decoder) or "classification" (encoder + linear)
    src_vocab: int = 0  # rows of the source (encoder) embedding
    tgt_vocab: int = 0  # rows of the target (decoder) embedding; 0 for classification
    n_classes: int = 2  # classification labels (SST-2: 2, MNLI: 3)
    d_model: int = 512  # D: embedding and hidden width (the table's D by default)
    n_heads: int = 0  # attention heads; 0: default_heads(D) (8, or 10 for GloVe's 300)
    n_layers: int = 3  # layers in the encoder and (translation) in the decoder, each
    d_ff: int = 0  # feed-forward width; 0: 4·D
    dropout: float = 0.1  # dropout on embeddings + positions, inside the FFN, and on each sub-layer's output
    attn_dropout: float = 0.0  # dropout on attention weights: 0 as Vaswani et al. §5.4 (nn.Transformer: 0.1);
    # with 0, SDPA takes its fused kernel (about a quarter faster per step on a CPU)
    max_len: int = 1024  # positions of the sinusoidal table; longer inputs are an error
    posenc: bool = True  # add position encodings (False: the paper's Table 3 "Pos. no")
    scale_emb: bool = True  # multiply embeddings by √D before adding positions (Appendix A.1)
    freeze_emb: bool = False  # embeddings are not trained (Table 3 "Train no")
    tie_output: bool = False  # the decoder's output projection shares its input embedding
    pad_id: int = 0  # padding token id in both vocabularies

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadInput(f"invalid model kind {self.kind!r}; valid choices: {list(KINDS)}")
        if self.d_model < 1:
            raise BadInput(f"--d-model must be at least 1, got {self.d_model}")
        if self.n_heads == 0:
            self.n_heads = default_heads(self.d_model)
        if self.n_heads < 1 or self.d_model % self.n_heads:
            raise BadInput(
                f"--heads {self.n_heads} does not divide --d-model {self.d_model}; "
                f"choose a divisor of {self.d_model}"
            )
        if self.d_ff == 0:
            self.d_ff = 4 * self.d_model
        if self.n_layers < 1 or self.d_ff < 1:
            raise BadInput(f"--layers and the FFN width must be ≥ 1, got {self.n_layers}, {self.d_ff}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.attn_dropout < 1.0:
            raise BadInput(
                f"--dropout and --attn-dropout must be in [0, 1), got {self.dropout}, {self.attn_dropout}"
            )
        if self.max_len < 2:
            raise BadInput(f"max_len must be at least 2, got {self.max_len}")
        if self.kind == "classification" and self.n_classes < 2:
            raise BadInput(f"a classifier needs at least 2 classes, got {self.n_classes}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Attention(nn.Module):
    """Multi-head attention through ``F.scaled_dot_product_attention``."""

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
        """x (B, T, D) → (B, T, D). ``cache`` (decoding one step at a time) keeps keys and values."""
        B, T, C = x.shape  # batch, query length, D
        H = self.n_heads
        if self.cross:
            q = self.q(x).view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D/H)
            if cache is not None and "k" in cache:
                k, v = cache["k"], cache["v"]  # (B, H, S, D/H): the memory's, computed once
            else:
                assert memory is not None
                S = memory.shape[1]
                k, v = self.kv(memory).view(B, S, 2, H, C // H).permute(2, 0, 3, 1, 4)  # (B, H, S, D/H) each
                if cache is not None:
                    cache["k"], cache["v"] = k, v
        else:
            q, k, v = self.qkv(x).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)  # (B, H, T, D/H) each
            if cache is not None:
                if "k" in cache:  # the earlier positions' keys and values
                    k = torch.cat([cache["k"], k], dim=2)  # (B, H, t, D/H)
                    v = torch.cat([cache["v"], v], dim=2)
                cache["k"], cache["v"] = k, v
                causal = False  # one new position sees every cached one
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=causal
        )  # (B, H, T, D/H)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, D)
        return self.proj(y)


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.out = nn.Linear(cfg.d_ff, cfg.d_model)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.drop(F.relu(self.fc(x))))  # (B, T, D)


class EncoderLayer(nn.Module):
    """Post-LN: x = LN(x + Attn(x)); x = LN(x + FFN(x)) (Vaswani et al.)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg)
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.ln1(x + self.drop(self.attn(x, mask=mask)))  # (B, S, D)
        return self.ln2(x + self.drop(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Post-LN: causal self-attention, cross-attention to the encoder, feed-forward."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_attn = Attention(cfg)
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.cross_attn = Attention(cfg, cross=True)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg)
        self.ln3 = nn.LayerNorm(cfg.d_model)
        self.drop = Dropout(cfg.dropout)

    def forward(
        self, y: Tensor, memory: Tensor, memory_mask: Tensor | None, cache: Cache | None = None
    ) -> Tensor:
        # Padding sits at the end of each target, so the causal mask alone keeps real positions
        # from seeing it; padded positions' outputs are never scored.
        c_self, c_cross = (cache["self"], cache["cross"]) if cache is not None else (None, None)
        y = self.ln1(y + self.drop(self.self_attn(y, causal=True, cache=c_self)))  # (B, T, D)
        y = self.ln2(y + self.drop(self.cross_attn(y, memory=memory, mask=memory_mask, cache=c_cross)))
        return self.ln3(y + self.drop(self.ffn(y)))


class TokenInput(nn.Module):
    """Embedding lookup × √D + sinusoidal positions, then dropout (Appendix A.1, Eq. 3)."""

    def __init__(self, n_tokens: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.emb = nn.Embedding(n_tokens, cfg.d_model, padding_idx=cfg.pad_id)
        self.scale = math.sqrt(cfg.d_model) if cfg.scale_emb else 1.0
        self.use_posenc = cfg.posenc
        self.pe: Tensor
        self.register_buffer(
            "pe", torch.from_numpy(sinusoidal(cfg.max_len, cfg.d_model)), persistent=False
        )  # (L, D)
        self.drop = Dropout(cfg.dropout)
        if cfg.freeze_emb:
            self.emb.weight.requires_grad_(False)

    def forward(self, ids: Tensor, start: int = 0) -> Tensor:
        T = ids.shape[1]  # ids: (B, T), at positions start … start+T-1
        if start + T > self.pe.shape[0]:
            raise BadInput(
                f"a sequence of {start + T} tokens is longer than the model's max_len {self.pe.shape[0]}"
            )
        x = self.emb(ids) * self.scale  # (B, T, D)
        if self.use_posenc:
            x = x + self.pe[start : start + T]  # (T, D) broadcast over the batch
        return self.drop(x)


def key_padding_mask(ids: Tensor, pad_id: int, padded: bool | None = None) -> Tensor | None:
    """(B, 1, 1, S) boolean mask, True where attention may look; None when nothing is padded.

    ``padded`` says from the host whether any row is padded (a batch knows it when it is made);
    None asks the device, which waits for it (a host sync, and a graph break under compile).
    """
    keep = ids != pad_id  # (B, S)
    if padded is None:
        padded = not bool(keep.all())
    if not padded:
        return None  # lets SDPA take its unmasked (fastest) path
    return keep[:, None, None, :]


def _xavier_init(module: nn.Module, skip: set[int]) -> None:
    """Xavier-uniform for every matrix except embeddings (Appendix A.2); zero biases."""
    for p in module.parameters():
        if id(p) in skip:
            continue
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    for m in module.modules():
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        if isinstance(m, Attention) and m.cross and id(m.q.weight) not in skip:
            # q, k and v as one (3D, D) matrix, as self-attention's qkv, nn.MultiheadAttention's
            # in_proj and fairseq's separate projections (gain 1/√2) all have it: U(±√(6/4D))
            bound = math.sqrt(6.0 / (m.q.weight.shape[1] + 3 * m.q.weight.shape[0]))
            nn.init.uniform_(m.q.weight, -bound, bound)
            nn.init.uniform_(m.kv.weight, -bound, bound)


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg.n_layers)])

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask)  # (B, S, D)
        return x


class Seq2Seq(nn.Module):
    """Encoder-decoder for translation. ``forward`` returns logits for the given target prefix."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        assert cfg.kind == "translation"
        if cfg.src_vocab < 1 or cfg.tgt_vocab < 1:
            raise BadInput("translation needs non-empty source and target vocabularies")
        self.cfg = cfg
        self.src_in = TokenInput(cfg.src_vocab, cfg)
        self.tgt_in = TokenInput(cfg.tgt_vocab, cfg)
        self.encoder = Encoder(cfg)
        self.decoder = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.n_layers)])
        self.out = nn.Linear(cfg.d_model, cfg.tgt_vocab, bias=not cfg.tie_output)
        skip = {id(self.src_in.emb.weight), id(self.tgt_in.emb.weight)}
        _xavier_init(self, skip)
        if cfg.tie_output:
            self.out.weight = self.tgt_in.emb.weight  # (V, D), shared

    def encode(self, src: Tensor, padded: bool | None = None) -> tuple[Tensor, Tensor | None]:
        """src (B, S) → memory (B, S, D) and its key mask (``padded``: see ``key_padding_mask``)."""
        mask = key_padding_mask(src, self.cfg.pad_id, padded)
        return self.encoder(self.src_in(src), mask), mask

    def decode(self, tgt_in: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        """tgt_in (B, T) → hidden states (B, T, D)."""
        y = self.tgt_in(tgt_in)
        for layer in self.decoder:
            y = layer(y, memory, mask)
        return y

    def step(self, tok: Tensor, pos: int, memory: Tensor, mask: Tensor | None, caches: list[Cache]) -> Tensor:
        """One decoding step: tok (B, 1) at position ``pos`` → log-probabilities (B, V).

        ``caches`` (one per layer, start with ``new_caches()``) grow by one position per call.
        """
        y = self.tgt_in(tok, start=pos)  # (B, 1, D)
        for layer, cache in zip(self.decoder, caches, strict=True):
            y = layer(y, memory, mask, cache)
        return F.log_softmax(self.out(y[:, -1]).float(), dim=-1)  # (B, V)

    def new_caches(self) -> list[Cache]:
        return [{"self": {}, "cross": {}} for _ in self.decoder]

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, mask = self.encode(src)
        return self.out(self.decode(tgt_in, memory, mask))  # (B, T, V)

    def loss(self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor) -> tuple[Tensor, int]:
        """Summed cross-entropy over real target tokens, and their count."""
        keep = tgt_out != self.cfg.pad_id  # (B, T)
        rows = keep.flatten().nonzero().squeeze(1)  # (n,)
        return self.loss_sum(src, tgt_in, tgt_out, rows), int(rows.shape[0])

    def loss_sum(
        self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor, rows: Tensor, padded: bool | None = None
    ) -> Tensor:
        """Summed cross-entropy at ``rows``, the flat (B·T) positions of the real target tokens.

        Only those positions go through the output projection (the widest matmul). With ``rows``
        and ``padded`` made on the host with the batch, nothing here waits for the device.
        """
        memory, mask = self.encode(src, padded)
        h = self.decode(tgt_in, memory, mask)  # (B, T, D)
        logits = self.out(h.flatten(0, 1).index_select(0, rows))  # (n, V)
        return F.cross_entropy(logits.float(), tgt_out.flatten().index_select(0, rows), reduction="sum")

    def embeddings(self) -> dict[str, nn.Embedding]:
        return {"src": self.src_in.emb, "tgt": self.tgt_in.emb}


class Classifier(nn.Module):
    """Encoder, mean over real tokens, linear layer to class logits."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        assert cfg.kind == "classification"
        if cfg.src_vocab < 1:
            raise BadInput("classification needs a non-empty vocabulary")
        self.cfg = cfg
        self.src_in = TokenInput(cfg.src_vocab, cfg)
        self.encoder = Encoder(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)
        _xavier_init(self, {id(self.src_in.emb.weight)})

    def forward(self, src: Tensor, padded: bool | None = None) -> Tensor:
        mask = key_padding_mask(src, self.cfg.pad_id, padded)
        h = self.encoder(self.src_in(src), mask)  # (B, S, D)
        keep = (src != self.cfg.pad_id).unsqueeze(-1).to(h.dtype)  # (B, S, 1)
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1)  # (B, D)
        return self.head(pooled)  # (B, C)

    def embeddings(self) -> dict[str, nn.Embedding]:
        return {"src": self.src_in.emb}


def build(cfg: ModelConfig) -> Seq2Seq | Classifier:
    """The model for ``cfg.kind``, randomly initialised (embeddings: PyTorch's N(0, 1) until set)."""
    return Seq2Seq(cfg) if cfg.kind == "translation" else Classifier(cfg)


def set_embedding(emb: nn.Embedding, rows: Tensor) -> None:
    """Copy (N, D) ``rows`` into an embedding layer, checking the shape."""
    if tuple(rows.shape) != tuple(emb.weight.shape):
        raise BadInput(f"embedding rows {tuple(rows.shape)} do not fit the layer {tuple(emb.weight.shape)}")
    with torch.no_grad():
        emb.weight.copy_(rows.to(emb.weight.dtype))
