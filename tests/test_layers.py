"""Residual placements (post, pre, Admin) and decoupled embeddings: what each adds, exactly."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from embtool.core.errors import BadInput
from embtool.model import layers
from embtool.model.transformer import Classifier, ModelConfig, Seq2Seq, build, parameter_breakdown

V_SRC, V_TGT, D = 20, 17, 16


def _cfg(**kw) -> ModelConfig:
    base = dict(src_vocab=V_SRC, tgt_vocab=V_TGT, d_model=D, n_heads=2, n_layers=2, d_ff=32, dropout=0.0)
    base.update(kw)
    return ModelConfig(**base)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kind", ["translation", "classification"])
def test_pre_ln_adds_one_final_layernorm_per_stack_and_admin_one_vector_per_sublayer(kind):
    post = build(_cfg(kind=kind))
    pre = build(_cfg(kind=kind, norm="pre"))
    admin = build(_cfg(kind=kind, norm="admin"))
    stacks = 2 if kind == "translation" else 1
    sublayers = 2 * 2 + (2 * 3 if kind == "translation" else 0)  # encoder 2 each, decoder 3 each
    assert _count(pre) - _count(post) == stacks * 2 * D  # LayerNorm: weight + bias
    assert _count(admin) - _count(post) == sublayers * D
    assert parameter_breakdown(admin)["admin_omega"] == sublayers * D
    assert all(torch.equal(p, torch.ones(D)) for n, p in admin.named_parameters() if ".omega." in n)


def test_enc_and_dec_layers_override_layers():
    model = build(_cfg(enc_layers=3, dec_layers=1))
    assert isinstance(model, Seq2Seq)
    assert len(model.encoder.layers) == 3 and len(model.decoder) == 1


def test_projections_add_exactly_their_size():
    base = parameter_breakdown(build(_cfg()))
    e = parameter_breakdown(build(_cfg(input_dim=8)))
    # tables are E = 8 wide, plus one E → D matrix per side
    assert e["input_projection"] == 2 * 8 * D
    assert e["input_embedding"] == (V_SRC + V_TGT) * 8
    assert e["total"] - base["total"] == 2 * 8 * D - (V_SRC + V_TGT) * (D - 8)
    o = parameter_breakdown(build(_cfg(output_dim=24)))
    assert o["output_projection"] == D * 24 + 24 + 2 * 24  # Chung et al.'s: D → E_out with bias, LayerNorm
    assert o["output_embedding"] == V_TGT * 24 + V_TGT  # weight and bias
    assert o["total"] - base["total"] == D * 24 + 3 * 24 + V_TGT * (24 - D)
    assert sum(v for k, v in o.items() if k != "total") == o["total"] == _count(build(_cfg(output_dim=24)))
    lin = parameter_breakdown(build(_cfg(output_dim=24, output_head="linear")))
    assert lin["output_projection"] == D * 24  # one matrix, nothing between
    assert lin["total"] - base["total"] == D * 24 + V_TGT * (24 - D)


# ----------------------------------------------------------------------------- the output head (Chung et al.)
E_OUT, V_WIDE = 32, 64  # an output embedding 8 times D wide, over a vocabulary wider than it


def _logits_of_many_states(head: str, d: int = 4) -> torch.Tensor:
    """The output layer's logits of 500 random hidden states, (500, V): their rank is the head's capacity."""
    torch.manual_seed(0)
    model = build(_cfg(d_model=d, n_heads=1, tgt_vocab=V_WIDE, output_dim=E_OUT, output_head=head))
    assert isinstance(model, Seq2Seq)
    with torch.no_grad():  # float64: float32's rounding would count as rank
        return model.out.double()(torch.randn(500, d, dtype=torch.float64) * 3)  # (500, V)


def test_chungs_head_spans_more_than_d_dimensions_and_the_linear_one_does_not():
    """Issue 25.4: D → E_out → V with nothing between is a rank-≤ D factorisation (+1 for the bias),
    whatever E_out; Chung et al.'s GELU and LayerNorm at E_out let the logits of many hidden states
    span more than D dimensions, up to E_out + 1."""
    d = 4
    linear = torch.linalg.matrix_rank(_logits_of_many_states("linear", d)).item()
    chung = torch.linalg.matrix_rank(_logits_of_many_states("chung", d)).item()
    assert linear <= d + 1
    assert chung > 4 * (d + 1)  # 32 + 1 at most; far above what a linear head can reach


def test_chungs_head_is_projection_gelu_layernorm_then_the_output_embedding():
    torch.manual_seed(0)
    model = build(_cfg(output_dim=E_OUT))
    assert isinstance(model, Seq2Seq)
    proj, _, ln, emb = model.out
    h = torch.randn(3, 5, D)  # (B, T, D)
    z = F.gelu(h @ proj.weight.T + proj.bias)  # (B, T, E_out)
    z = (z - z.mean(-1, keepdim=True)) / torch.sqrt(z.var(-1, unbiased=False, keepdim=True) + ln.eps)
    want = (z * ln.weight + ln.bias) @ emb.weight.T + emb.bias  # (B, T, V)
    assert torch.allclose(model.out(h), want, atol=1e-5)
    assert model.out_embedding() is emb and emb.weight.shape == (V_TGT, E_OUT)


def test_output_head_is_checked():
    with pytest.raises(BadInput, match=r"invalid --output-head 'mlp'; valid choices: \['chung', 'linear'\]"):
        _cfg(output_dim=8, output_head="mlp")


def test_ffn_dropout_is_the_ffns_own_and_defaults_to_dropout():
    """fairseq's relu-dropout (Liu et al.'s recipe: 0.1 beside a dropout of 0.3) is the FFN's own rate."""
    own = build(_cfg(dropout=0.3, ffn_dropout=0.1))
    assert isinstance(own, Seq2Seq)
    layer = own.encoder.layers[0]
    assert (layer.ffn.drop.p, layer.drop.p, own.src_in.drop.p) == (0.1, 0.3, 0.3)
    assert own.decoder[0].ffn.drop.p == 0.1
    same = build(_cfg(dropout=0.3))
    assert same.cfg.ffn_dropout == 0.3 and same.encoder.layers[0].ffn.drop.p == 0.3
    with pytest.raises(BadInput, match="--ffn-dropout"):
        _cfg(ffn_dropout=1.0)


def test_a_300_wide_table_feeds_a_wider_model():
    model = build(_cfg(input_dim=12, d_model=32, n_heads=4))
    assert isinstance(model, Seq2Seq)
    assert model.src_in.emb.weight.shape == (V_SRC, 12)
    src = torch.randint(1, V_SRC, (2, 5))
    assert model(src, torch.randint(1, V_TGT, (2, 4))).shape == (2, 4, V_TGT)


def test_tie_output_where_shapes_allow_and_refused_where_not():
    tied = build(_cfg(tie_output=True, input_dim=8, output_dim=8))
    assert isinstance(tied, Seq2Seq)
    assert tied.out_embedding().weight is tied.tgt_in.emb.weight
    with pytest.raises(BadInput, match="--tie-output"):
        _cfg(tie_output=True, output_dim=24)
    with pytest.raises(BadInput, match="--tie-output"):
        _cfg(tie_output=True, input_dim=8)
    with pytest.raises(BadInput, match="--output-dim"):
        _cfg(kind="classification", output_dim=8)


def test_bad_norm_is_named():
    with pytest.raises(BadInput, match=r"invalid --norm 'mid'; valid choices: \['post', 'pre', 'admin'\]"):
        _cfg(norm="mid")


@pytest.mark.parametrize("norm", ["post", "pre", "admin"])
def test_each_norm_computes_its_formula(norm):
    torch.manual_seed(0)
    model = build(_cfg(kind="classification", norm=norm, n_layers=1))
    assert isinstance(model, Classifier)
    layer = model.encoder.layers[0]
    if norm == "admin":
        with torch.no_grad():
            layer.omega[0].fill_(2.0)
            layer.omega[1].fill_(3.0)
    model.eval()
    x = torch.randn(2, 5, D)
    got = layer(x, None)
    if norm == "pre":
        h = x + layer.attn(layer.ln1(x))
        want = h + layer.ffn(layer.ln2(h))
    else:
        w1, w2 = (2.0, 3.0) if norm == "admin" else (1.0, 1.0)
        h = layer.ln1(x * w1 + layer.attn(x))
        want = layer.ln2(h * w2 + layer.ffn(h))
    assert torch.allclose(got, want, atol=1e-6)


def test_pre_ln_cached_decoding_equals_the_full_pass():
    torch.manual_seed(0)
    model = build(_cfg(norm="pre"))
    assert isinstance(model, Seq2Seq)
    model.eval()
    src, tgt = torch.randint(1, V_SRC, (2, 6)), torch.randint(1, V_TGT, (2, 4))
    full = torch.log_softmax(model(src, tgt), dim=-1)  # (B, T, V)
    memory, mask = model.encode(src)
    caches = model.new_caches()
    for t in range(4):
        step = model.step(tgt[:, t : t + 1], t, memory, mask, caches)
        assert torch.allclose(step, full[:, t], atol=1e-5)


# ----------------------------------------------------------------------------- head widths padded for fused SDPA
# GloVe's D = 300 over 10 heads is 30 wide: off the CPU each head is zero-padded to 32 (the fused
# kernels need a multiple of 8) with the softmax scale of 30, and sliced back.


@pytest.mark.parametrize(
    ("head_dim", "device", "width"),
    [(30, "cuda", 32), (12, "cuda", 16), (64, "cuda", 64), (1, "cuda", 8), (30, "meta", 32), (30, "cpu", 30)],
)
def test_padded_head_dim(head_dim, device, width):
    assert layers.padded_head_dim(head_dim, torch.device(device)) == width


def _pad_as_on_a_gpu(monkeypatch):
    real = layers.padded_head_dim
    monkeypatch.setattr(layers, "padded_head_dim", lambda d, device: real(d, torch.device("cuda")))


def _reference(attn: layers.Attention, x, memory, mask, causal):
    """softmax(q·kᵀ/√d + mask) v per head, written out (float64), then the output projection."""
    B, T, D = x.shape
    H = attn.n_heads
    d = D // H
    if attn.cross:
        q, (k, v) = attn.q(x), attn.kv(memory).chunk(2, dim=-1)
    else:
        q, k, v = attn.qkv(x).chunk(3, dim=-1)
    q, k, v = (t.view(B, -1, H, d).transpose(1, 2) for t in (q, k, v))  # (B, H, ·, d)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, H, T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    if causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = scores.softmax(-1) @ v  # (B, H, T, d)
    return attn.proj(y.transpose(1, 2).reshape(B, T, D))


def _attention_case(head_dim: int, cross: bool):
    from embtool.model.transformer import ModelConfig

    torch.manual_seed(0)
    H = 2
    cfg = ModelConfig(src_vocab=5, tgt_vocab=5, d_model=H * head_dim, n_heads=H, dropout=0.0)
    attn = layers.Attention(cfg, cross=cross).double().eval()
    x = torch.randn(3, 5, H * head_dim, dtype=torch.float64, requires_grad=True)  # (B, T, D)
    memory = torch.randn(3, 7, H * head_dim, dtype=torch.float64, requires_grad=True)  # (B, S, D)
    keep = torch.tensor([[True] * 7, [True] * 4 + [False] * 3, [True] * 2 + [False] * 5])  # (B, S)
    return attn, x, memory, keep[:, None, None, :]  # mask (B, 1, 1, S)


@pytest.mark.parametrize("head_dim", [30, 12, 64])
@pytest.mark.parametrize("how", ["self, masked", "self, causal", "cross, masked"])
def test_padded_heads_give_the_unpadded_outputs_and_gradients(monkeypatch, head_dim, how):
    cross, causal = how.startswith("cross"), how.endswith("causal")
    attn, x, memory, mask = _attention_case(head_dim, cross)
    mask = None if causal else mask
    if not cross:  # self-attention's keys are the query positions
        mask = mask[..., :5] if mask is not None else None

    def run(fn):
        out = fn()
        grads = torch.autograd.grad(out.square().sum(), [x, memory, *attn.parameters()], allow_unused=True)
        return out, grads

    def call():
        return attn(x, memory=memory if cross else None, mask=mask, causal=causal)

    want, want_grads = run(lambda: _reference(attn, x, memory if cross else x, mask, causal))
    plain, plain_grads = run(call)  # on the CPU: no padding
    _pad_as_on_a_gpu(monkeypatch)
    padded, padded_grads = run(call)
    for got, grads in ((plain, plain_grads), (padded, padded_grads)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        for g, w in zip(grads, want_grads, strict=True):
            assert (g is None) == (w is None)
            if g is not None:
                torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("head_dim", "width"), [(30, 32), (12, 16), (64, 64)])
def test_sdpa_sees_padded_heads_with_the_true_scale(monkeypatch, head_dim, width):
    seen = []
    real_sdpa = F.scaled_dot_product_attention

    def record(q, k, v, **kw):
        seen.append((q.shape, k.shape, v.shape, kw.get("scale")))
        return real_sdpa(q, k, v, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", record)
    _pad_as_on_a_gpu(monkeypatch)
    attn, x, memory, mask = _attention_case(head_dim, cross=True)
    with torch.no_grad():
        out = attn(x, memory=memory, mask=mask)
    assert out.shape == x.shape
    scale = 1 / math.sqrt(head_dim) if width != head_dim else None  # None: SDPA's own 1/√width
    assert seen == [((3, 2, 5, width), (3, 2, 7, width), (3, 2, 7, width), scale)]


def test_cached_decoding_keeps_padded_keys_and_equals_the_full_pass(monkeypatch):
    """D = 60 over 2 heads of 30: the cached steps (padded keys kept, one position padded a step)
    give the full pass's log-probabilities, as on the CPU."""
    from embtool.model.transformer import Seq2Seq

    torch.manual_seed(0)
    model = Seq2Seq(_cfg(d_model=60, n_heads=2)).double().eval()
    src = torch.tensor([[4, 5, 6, 3], [7, 8, 3, 0]])
    tgt = torch.tensor([[2, 9, 10, 11], [2, 4, 4, 5]])
    want = torch.log_softmax(model(src, tgt).float(), -1)  # unpadded, (2, 4, V)
    _pad_as_on_a_gpu(monkeypatch)
    memory, mask = model.encode(src)
    caches = model.new_caches()
    for t in range(tgt.shape[1]):
        step = model.step(tgt[:, t : t + 1], t, memory, mask, caches)  # (2, V)
        torch.testing.assert_close(step, want[:, t], rtol=1e-5, atol=1e-5)
    assert caches[0]["self"]["k"].shape == (2, 2, 4, 32)  # (B, H, t, W)
    assert caches[0]["cross"]["v"].shape == (2, 2, 4, 32)  # (B, H, S, W)
