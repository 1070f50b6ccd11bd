"""The paper's vanilla transformer (Vaswani et al., 2017; Kim et al., 2024, Appendix A) and its
variants beyond it.

Two shapes share one set of blocks (``embtool.model.layers``):
- ``Seq2Seq``: encoder-decoder for translation;
- ``Classifier``: encoder, pooled (``embtool.model.pooling``: mean over real tokens, or a first ``<cls>``), one linear layer.
Their residual sub-layers are post-LN (the paper's), pre-LN or Admin (Liu et al. 2020; ``norm``).

Inputs go through ``TokenInput``: embedding × √D + sinusoidal position encoding (Appendix A.1,
Eq. 3), then dropout. With ``input_dim`` E the table has width E and a learned E → D projection
feeds the model; with ``output_dim`` E_out the decoder's output goes through Chung et al.'s head
(decoupled input and output embeddings, 2021): D → E_out, GELU, LayerNorm, then the E_out-wide
output embedding (``layers.output_layer``). Attention is ``scaled_dot_product_attention`` (fused
kernels where the device has them). Every non-embedding weight is Xavier-uniform (Appendix A.2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embtool.core.errors import BadInput
from embtool.model.dropout import Dropout
from embtool.model.layers import (
    NORMS,
    OUTPUT_HEADS,
    Attention,
    Cache,
    DecoderLayer,
    EncoderLayer,
    output_layer,
)
from embtool.model.pooling import Pooler, check_pooling
from embtool.tables.positional import sinusoidal

KINDS = ("translation", "classification")
__all__ = ["NORMS", "Cache", "ModelConfig", "Seq2Seq", "Classifier", "build", "set_embedding"]


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
    enc_layers: int = 0  # encoder layers; 0: n_layers
    dec_layers: int = 0  # decoder layers; 0: n_layers
    norm: str = "post"  # LayerNorm placement: post (the paper's), pre, admin (Liu et al. 2020)
    input_dim: int = 0  # E: embedding-table width, projected E → D; 0: D, no projection
    output_dim: int = 0  # E_out: decoder output goes D → E_out → vocabulary; 0: D → vocabulary
    output_head: str = "chung"  # with output_dim: chung (GELU and LayerNorm at E_out) or linear (rank ≤ D)
    d_ff: int = 0  # feed-forward width; 0: 4·D (TrainConfig's --preset paper gives 512, Table 5)
    dropout: float = 0.1  # dropout on embeddings + positions, inside the FFN, and on each sub-layer's output
    ffn_dropout: float | None = None  # inside the FFN, after its ReLU (fairseq's relu-dropout); None: dropout
    attn_dropout: float = 0.0  # dropout on attention weights: 0 as Vaswani et al. §5.4 (nn.Transformer: 0.1);
    # with 0, SDPA takes its fused kernel (about a quarter faster per step on a CPU)
    max_len: int = 1024  # positions of the sinusoidal table; longer inputs are an error
    posenc: bool = True  # add position encodings (False: the paper's Table 3 "Pos. no")
    scale_emb: bool = True  # multiply embeddings by √D before adding positions (Appendix A.1)
    freeze_emb: bool = False  # embeddings are not trained (Table 3 "Train no")
    tie_output: bool = False  # the decoder's output projection shares its input embedding
    pad_id: int = 0  # padding token id in both vocabularies
    pool: str = (
        "mean"  # classification: mean over real tokens, or first (the <cls> state; embtool.model.pooling)
    )
    segments: bool = False  # classification pairs: a learned segment embedding, 0 up to <sep>, 1 after
    sep_id: int = -1  # the <sep> id in the source vocabulary (MNLI's pairs); -1: none

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
        self.enc_layers = self.enc_layers or self.n_layers
        self.dec_layers = self.dec_layers or self.n_layers
        if self.norm not in NORMS:
            raise BadInput(f"invalid --norm {self.norm!r}; valid choices: {list(NORMS)}")
        for name in ("enc_layers", "dec_layers", "input_dim", "output_dim"):
            if getattr(self, name) < 0:
                raise BadInput(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")
        if self.kind == "classification" and self.output_dim:
            raise BadInput("--output-dim: a classifier has no output embedding (translation only)")
        if self.output_head not in OUTPUT_HEADS:
            raise BadInput(f"invalid --output-head {self.output_head!r}; valid choices: {list(OUTPUT_HEADS)}")
        self.ffn_dropout = self.dropout if self.ffn_dropout is None else self.ffn_dropout
        if self.tie_output and self.emb_dim != self.out_dim:
            raise BadInput(
                f"--tie-output needs one width for the input and output embeddings, got "
                f"{self.emb_dim} (--input-dim) and {self.out_dim} (--output-dim); untie them or match them"
            )
        if not all(0.0 <= p < 1.0 for p in (self.dropout, self.attn_dropout, self.ffn_dropout)):
            raise BadInput(
                "--dropout, --attn-dropout and --ffn-dropout must be in [0, 1), got "
                f"{self.dropout}, {self.attn_dropout}, {self.ffn_dropout}"
            )
        if self.max_len < 2:
            raise BadInput(f"max_len must be at least 2, got {self.max_len}")
        check_pooling(self.pool, self.segments, self.sep_id)
        if self.kind == "classification" and self.n_classes < 2:
            raise BadInput(f"a classifier needs at least 2 classes, got {self.n_classes}")

    @property
    def emb_dim(self) -> int:
        """The embedding tables' width: E, or D without a projection."""
        return self.input_dim or self.d_model

    @property
    def out_dim(self) -> int:
        """The output embedding's width: E_out, or D without a projection."""
        return self.output_dim or self.d_model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class TokenInput(nn.Module):
    """Embedding lookup (× a learned E → D projection with ``input_dim``) × √D + sinusoidal
    positions, then dropout (Appendix A.1, Eq. 3)."""

    def __init__(self, n_tokens: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.emb = nn.Embedding(n_tokens, cfg.emb_dim, padding_idx=cfg.pad_id)
        self.proj = nn.Linear(cfg.input_dim, cfg.d_model, bias=False) if cfg.input_dim else nn.Identity()
        self.scale = math.sqrt(cfg.d_model) if cfg.scale_emb else 1.0
        self.use_posenc = cfg.posenc
        self.pe: Tensor
        # as_tensor, not from_numpy: a model built under ``with torch.device(...)`` gets it there too
        self.register_buffer(
            "pe", torch.as_tensor(sinusoidal(cfg.max_len, cfg.d_model)), persistent=False
        )  # (L, D)
        self.drop = Dropout(cfg.dropout)
        if cfg.freeze_emb:
            self.emb.weight.requires_grad_(False)

    def forward(self, ids: Tensor, start: int = 0, add: Tensor | None = None) -> Tensor:
        T = ids.shape[1]  # ids: (B, T), at positions start … start+T-1; add: (B, T, D) or None
        if start + T > self.pe.shape[0]:
            raise BadInput(
                f"a sequence of {start + T} tokens is longer than the model's max_len {self.pe.shape[0]}"
            )
        x = self.proj(self.emb(ids)) * self.scale  # (B, T, E) → (B, T, D)
        if self.use_posenc:
            x = x + self.pe[start : start + T]  # (T, D) broadcast over the batch
        return self.drop(x if add is None else x + add)  # add: the classifier's segment embeddings


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


def final_norm(cfg: ModelConfig) -> nn.Module:
    """Pre-LN's LayerNorm on a stack's output (its sub-layers leave the residual stream unnormalised)."""
    return nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg.enc_layers)])
        self.final = final_norm(cfg)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask)  # (B, S, D)
        return self.final(x)


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
        self.decoder = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.dec_layers)])
        self.dec_final = final_norm(cfg)
        self.out = output_layer(cfg)
        skip = {id(self.src_in.emb.weight), id(self.tgt_in.emb.weight)}
        _xavier_init(self, skip)
        if cfg.tie_output:
            self.out_embedding().weight = self.tgt_in.emb.weight  # (V, E), shared

    def out_embedding(self) -> nn.Linear:
        """The output embedding: the last Linear, (V, E_out) weight."""
        return self.out[-1] if isinstance(self.out, nn.Sequential) else self.out  # type: ignore[return-value]

    def encode(self, src: Tensor, padded: bool | None = None) -> tuple[Tensor, Tensor | None]:
        """src (B, S) → memory (B, S, D) and its key mask (``padded``: see ``key_padding_mask``)."""
        mask = key_padding_mask(src, self.cfg.pad_id, padded)
        return self.encoder(self.src_in(src), mask), mask

    def decode(self, tgt_in: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        """tgt_in (B, T) → hidden states (B, T, D)."""
        y = self.tgt_in(tgt_in)
        for layer in self.decoder:
            y = layer(y, memory, mask)
        return self.dec_final(y)

    def step(self, tok: Tensor, pos: int, memory: Tensor, mask: Tensor | None, caches: list[Cache]) -> Tensor:
        """One decoding step: tok (B, 1) at position ``pos`` → log-probabilities (B, V).

        ``caches`` (one per layer, start with ``new_caches()``) grow by one position per call.
        """
        y = self.tgt_in(tok, start=pos)  # (B, 1, D)
        for layer, cache in zip(self.decoder, caches, strict=True):
            y = layer(y, memory, mask, cache)
        return F.log_softmax(self.out(self.dec_final(y[:, -1])).float(), dim=-1)  # (B, V)

    def new_caches(self) -> list[Cache]:
        return [{"self": {}, "cross": {}} for _ in self.decoder]

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, mask = self.encode(src)
        return self.out(self.decode(tgt_in, memory, mask))  # (B, T, V)

    def loss(
        self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor, smoothing: float = 0.0
    ) -> tuple[Tensor, int]:
        """Summed cross-entropy (label-smoothed by ``smoothing``) over real target tokens, and their count."""
        keep = tgt_out != self.cfg.pad_id  # (B, T)
        rows = keep.flatten().nonzero().squeeze(1)  # (n,)
        return self.loss_sum(src, tgt_in, tgt_out, rows, smoothing=smoothing), int(rows.shape[0])

    def loss_sum(
        self,
        src: Tensor,
        tgt_in: Tensor,
        tgt_out: Tensor,
        rows: Tensor,
        padded: bool | None = None,
        smoothing: float = 0.0,
    ) -> Tensor:
        """Summed cross-entropy at ``rows``, the flat (B·T) positions of the real target tokens.

        Only those positions go through the output projection (the widest matmul). With ``rows``
        and ``padded`` made on the host with the batch, nothing here waits for the device.
        """
        memory, mask = self.encode(src, padded)
        h = self.decode(tgt_in, memory, mask)  # (B, T, D)
        logits = self.out(h.flatten(0, 1).index_select(0, rows))  # (n, V)
        target = tgt_out.flatten().index_select(0, rows)
        return F.cross_entropy(logits.float(), target, reduction="sum", label_smoothing=smoothing)

    def embeddings(self) -> dict[str, nn.Embedding]:
        return {"src": self.src_in.emb, "tgt": self.tgt_in.emb}


class Classifier(nn.Module):
    """Encoder, pooled (``cfg.pool``; segment embeddings with ``cfg.segments``), linear layer to logits."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        assert cfg.kind == "classification"
        if cfg.src_vocab < 1:
            raise BadInput("classification needs a non-empty vocabulary")
        self.cfg = cfg
        self.src_in = TokenInput(cfg.src_vocab, cfg)
        self.encoder = Encoder(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)
        self.pool = Pooler(cfg)
        _xavier_init(self, {id(self.src_in.emb.weight)})

    def forward(self, src: Tensor, padded: bool | None = None) -> Tensor:
        mask = key_padding_mask(src, self.cfg.pad_id, padded)
        h = self.encoder(self.src_in(src, add=self.pool.segments(src)), mask)  # (B, S, D)
        return self.head(self.pool(h, src))  # (B, D) → (B, C)

    def embeddings(self) -> dict[str, nn.Embedding]:
        return {"src": self.src_in.emb}


def build(cfg: ModelConfig) -> Seq2Seq | Classifier:
    """The model for ``cfg.kind``, randomly initialised (embeddings: PyTorch's N(0, 1) until set)."""
    return Seq2Seq(cfg) if cfg.kind == "translation" else Classifier(cfg)


# parameter groups of ``parameter_counts``: the first name prefix a parameter matches decides
PARAM_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("input_embeddings", ("src_in.emb.", "tgt_in.emb.")),
    ("input_projections", ("src_in.proj.", "tgt_in.proj.")),
    ("encoder", ("encoder.",)),
    ("decoder", ("decoder.",)),
    ("output", ("out.", "head.")),
)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters in total and by part: input embeddings, encoder, decoder, output layer (Table 5).

    A tied output layer counts once (under input embeddings); parameters of no listed part are
    counted under ``other``. ``trainable`` leaves frozen ones out. ``parameter_breakdown``'s figures
    (projections, output embedding, Admin's ω) come with them: config.json records this dict.
    """
    counts = {name: 0 for name, _ in PARAM_GROUPS} | {"other": 0}
    total = trainable = 0
    for name, p in model.named_parameters():  # shared tensors are listed once
        n = p.numel()
        total += n
        trainable += n if p.requires_grad else 0
        group = next((g for g, prefixes in PARAM_GROUPS if name.startswith(prefixes)), "other")
        counts[group] += n
    extra = parameter_breakdown(model) if isinstance(model, (Seq2Seq, Classifier)) else {}
    return {**extra, "total": total, **counts, "trainable": trainable}


def set_embedding(emb: nn.Embedding, rows: Tensor) -> None:
    """Copy (N, D) ``rows`` into an embedding layer, checking the shape."""
    if tuple(rows.shape) != tuple(emb.weight.shape):
        raise BadInput(f"embedding rows {tuple(rows.shape)} do not fit the layer {tuple(emb.weight.shape)}")
    with torch.no_grad():
        emb.weight.copy_(rows.to(emb.weight.dtype))


def parameter_breakdown(model: Seq2Seq | Classifier) -> dict[str, int]:
    """Trainable-or-not parameters by part, each tensor once (a tied output counts as input):
    input embeddings, their E → D projections, output projection and embedding, Admin's ω, the
    rest ("layers": attention, FFN, LayerNorms, the classifier's head), and the total."""
    seen: set[int] = set()

    def count(params: Any) -> int:
        n = 0
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        return n

    inputs = [model.src_in] + ([model.tgt_in] if isinstance(model, Seq2Seq) else [])
    parts = {
        "input_embedding": count(p for m in inputs for p in m.emb.parameters()),
        "input_projection": count(p for m in inputs for p in m.proj.parameters()),
        "output_projection": 0,
        "output_embedding": 0,
    }
    if isinstance(model, Seq2Seq):
        out = model.out_embedding()
        parts["output_embedding"] = count(out.parameters())
        parts["output_projection"] = count(p for p in model.out.parameters())
    parts["admin_omega"] = count(p for n, p in model.named_parameters() if ".omega." in n)
    parts["layers"] = count(model.parameters())
    parts["total"] = sum(parts.values())
    return parts
