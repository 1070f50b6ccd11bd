"""The transformer: shapes, the input process (Appendix A.1), init, cached decoding, config checks."""

from __future__ import annotations

import math

import pytest
import torch

from embtool.core.errors import BadInput
from embtool.model.transformer import Classifier, ModelConfig, Seq2Seq, build, default_heads, set_embedding
from embtool.tables.positional import sinusoidal


def tiny(**kw) -> ModelConfig:
    base = dict(
        kind="translation", src_vocab=11, tgt_vocab=13, d_model=16, n_heads=4, n_layers=2, dropout=0.0
    )
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize(("d", "heads"), [(512, 8), (768, 8), (300, 10), (16, 8), (30, 10), (7, 7)])
def test_default_heads(d, heads):
    assert default_heads(d) == heads
    assert ModelConfig(d_model=d).n_heads == heads


def test_config_defaults_follow_the_paper():
    cfg = ModelConfig(d_model=300)
    assert (cfg.n_heads, cfg.n_layers, cfg.d_ff, cfg.dropout) == (10, 3, 1200, 0.1)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"kind": "lm"}, "valid choices: ['translation', 'classification']"),
        ({"d_model": 16, "n_heads": 5}, "does not divide"),
        ({"dropout": 1.0}, "--dropout"),
        ({"kind": "classification", "n_classes": 1}, "at least 2 classes"),
    ],
)
def test_config_errors_name_the_choice(kw, message):
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        ModelConfig(**kw)


def test_seq2seq_shapes_and_loss():
    torch.manual_seed(0)
    model = Seq2Seq(tiny())
    src = torch.tensor([[4, 5, 6, 3], [7, 3, 0, 0]])  # (2, 4), second row padded
    tgt_in = torch.tensor([[2, 4, 5], [2, 6, 0]])
    tgt_out = torch.tensor([[4, 5, 3], [6, 3, 0]])
    assert model(src, tgt_in).shape == (2, 3, 13)
    loss, n = model.loss(src, tgt_in, tgt_out)
    assert n == 5
    logits = model(src, tgt_in)
    ref = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 13), tgt_out.reshape(-1), ignore_index=0, reduction="sum"
    )
    torch.testing.assert_close(loss, ref)


def test_padding_does_not_change_real_positions():
    torch.manual_seed(0)
    model = Seq2Seq(tiny()).eval()
    src = torch.tensor([[4, 5, 3]])
    padded = torch.tensor([[4, 5, 3, 0, 0]])
    tgt = torch.tensor([[2, 6, 7]])
    torch.testing.assert_close(model(src, tgt), model(padded, tgt))


def test_cached_steps_equal_the_full_forward():
    torch.manual_seed(0)
    model = Seq2Seq(tiny()).eval()
    src = torch.tensor([[4, 5, 6, 3], [7, 8, 3, 0]])
    tgt = torch.tensor([[2, 9, 10, 11], [2, 4, 4, 5]])
    full = torch.log_softmax(model(src, tgt), -1)  # (2, 4, V)
    memory, mask = model.encode(src)
    caches = model.new_caches()
    for t in range(tgt.shape[1]):
        step = model.step(tgt[:, t : t + 1], t, memory, mask, caches)
        torch.testing.assert_close(step, full[:, t], atol=1e-5, rtol=1e-5)


def test_input_is_scaled_embedding_plus_position():
    model = Seq2Seq(tiny())
    inp = model.src_in
    ids = torch.tensor([[4, 5, 6]])
    expected = inp.emb(ids) * math.sqrt(16) + torch.from_numpy(sinusoidal(1024, 16))[:3]
    torch.testing.assert_close(inp(ids), expected)


def test_no_posenc_removes_the_encoding():
    model = Seq2Seq(tiny(posenc=False))
    ids = torch.tensor([[4, 4, 4]])
    x = model.src_in(ids)
    torch.testing.assert_close(x, model.src_in.emb(ids) * 4.0)
    torch.testing.assert_close(x[0, 0], x[0, 2])  # same token, any position: same input


def test_non_embedding_weights_are_xavier():
    torch.manual_seed(0)
    model = Seq2Seq(tiny(d_model=32, n_heads=4))
    w = model.encoder.layers[0].ffn.fc.weight.detach()  # (4D, D)
    bound = math.sqrt(6 / (w.shape[0] + w.shape[1]))
    assert float(w.abs().max()) <= bound
    assert float(w.abs().max()) > 0.9 * bound
    assert float(model.encoder.layers[0].ffn.fc.bias.detach().abs().max()) == 0.0


def test_freeze_and_tie():
    model = Seq2Seq(tiny(freeze_emb=True, tie_output=True))
    assert not model.src_in.emb.weight.requires_grad
    assert model.out.weight is model.tgt_in.emb.weight
    assert model.out.bias is None


def test_set_embedding_checks_shape():
    model = Seq2Seq(tiny())
    rows = torch.randn(11, 16)
    set_embedding(model.src_in.emb, rows)
    assert torch.equal(model.src_in.emb.weight, rows)
    with pytest.raises(BadInput, match="do not fit"):
        set_embedding(model.src_in.emb, torch.randn(10, 16))


def test_classifier_pools_real_tokens_only():
    torch.manual_seed(0)
    model = build(
        ModelConfig(
            kind="classification", src_vocab=9, n_classes=3, d_model=16, n_heads=2, n_layers=1, dropout=0.0
        )
    ).eval()
    assert isinstance(model, Classifier)
    a = model(torch.tensor([[4, 5, 6]]))
    b = model(torch.tensor([[4, 5, 6, 0, 0]]))
    assert a.shape == (1, 3)
    torch.testing.assert_close(a, b)


def test_too_long_input_is_an_error():
    model = Seq2Seq(tiny(max_len=4))
    with pytest.raises(BadInput, match="max_len"):
        model.src_in(torch.ones(1, 5, dtype=torch.long))


def test_attention_projections_share_one_xavier_bound():
    """q, k, v as one (3D, D) matrix in self- and cross-attention (nn.MultiheadAttention's in_proj)."""
    torch.manual_seed(0)
    model = Seq2Seq(tiny(d_model=64, n_heads=4))
    bound = math.sqrt(6 / (64 + 3 * 64))
    layer = model.decoder[0]
    for w in (layer.self_attn.qkv.weight, layer.cross_attn.q.weight, layer.cross_attn.kv.weight):
        assert 0.95 * bound < float(w.detach().abs().max()) <= bound


# ----------------------------------------------------------------------------- device placement
# The meta device stands in for a GPU: a tensor made on the CPU beside the model's (a mask, the
# position table, the heads' padding) is a device mismatch there, and a host read is a sync.


@pytest.mark.parametrize("made", ["moved", "built"])  # built on the CPU and moved, or under torch.device
def test_every_tensor_of_the_model_stays_on_its_device(made):
    from conftest import meta_only

    cfg = dict(
        d_model=300, n_heads=10, n_layers=1, d_ff=64, dropout=0.1
    )  # GloVe's: heads of 30, padded to 32
    if made == "moved":
        s2s, clf = Seq2Seq(tiny(**cfg)).to("meta"), build(tiny(kind="classification", **cfg)).to("meta")
    else:
        with torch.device("meta"):
            s2s, clf = Seq2Seq(tiny(**cfg)), build(tiny(kind="classification", **cfg))
    src = torch.randint(1, 11, (2, 5), device="meta")  # (B, S)
    tgt = torch.randint(1, 13, (2, 4), device="meta")  # (B, T)
    rows = torch.arange(7, device="meta")  # the real target tokens' flat positions
    with meta_only() as mode:
        s2s.train()
        s2s.loss_sum(src, tgt, tgt, rows, padded=True, smoothing=0.1).backward()  # causal mask, dropout
        s2s.eval()
        memory, mask = s2s.encode(src, padded=True)
        caches = s2s.new_caches()
        for t in range(3):
            assert s2s.step(tgt[:, t : t + 1], t, memory, mask, caches).shape == (2, 13)
        assert clf(src, padded=True).shape == (2, 2)
    assert mode.reads == []
    assert caches[0]["self"]["k"].shape == (2, 10, 3, 32)  # (B, H, t, W): padded on the device
    assert s2s.src_in.pe.device.type == "meta"
