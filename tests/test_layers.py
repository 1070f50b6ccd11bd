"""Residual placements (post, pre, Admin) and decoupled embeddings: what each adds, exactly."""

from __future__ import annotations

import pytest
import torch

from embtool.errors import BadInput
from embtool.model import Classifier, ModelConfig, Seq2Seq, build, parameter_breakdown

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
    assert o["output_projection"] == D * 24
    assert o["output_embedding"] == V_TGT * 24 + V_TGT  # weight and bias
    assert o["total"] - base["total"] == D * 24 + V_TGT * (24 - D)
    assert sum(v for k, v in o.items() if k != "total") == o["total"] == _count(build(_cfg(output_dim=24)))


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
