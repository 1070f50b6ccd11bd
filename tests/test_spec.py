"""RunSpec: what a run is, resolved once from its settings and its tables' headers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.training import TrainConfig
from embtool.training.data import CLS, SEP, SPECIALS
from embtool.training.spec import RunSpec
from embtool.training.widths import FAST_D


def _table(tmp_path, make_table, dim: int, name: str = "t") -> str:
    from embtool.tables.table import save

    path = tmp_path / f"{name}.safetensors"
    save(make_table(np.ones((3, dim), np.float32), ["<pad>", "a", "b"]), path)
    return str(path)


@pytest.mark.parametrize(
    ("kw", "d_model", "family", "batch_size", "ff"),
    [({}, 300, "glove", 64, 512),  # Xavier: Table 5's first column gives D, epochs and batch
     ({"family": "mt5"}, 768, "mt5", 96, 512),
     ({"preset": "fast"}, FAST_D, "glove", 128, 0),  # fast: the task's record, D 512, FFN 4·D
     ({"d_model": 64, "heads": 4}, 64, "glove", 64, 512)],
    ids=["xavier", "family", "fast", "given-d"],
)  # fmt: skip
def test_the_spec_resolves_the_column_and_the_width(kw, d_model, family, batch_size, ff) -> None:
    spec = RunSpec.of(TrainConfig(task="multi30k", **kw))
    assert spec.d_model == d_model and spec.paper["family"] == family
    assert (spec.cfg.epochs, spec.cfg.batch_size, spec.cfg.ff) == (20, batch_size, ff)
    assert spec.model_config(50, 40, 2).d_ff == (ff or 4 * d_model)
    assert RunSpec.of(spec.cfg) == spec  # a resolved config resolves to itself
    assert spec.sides == ("src", "tgt") and spec.table("src") is None


def test_a_tables_d_is_the_models_and_the_header_is_read_once(tmp_path, make_table) -> None:
    path = _table(tmp_path, make_table, 16)
    spec = RunSpec.of(TrainConfig(task="sst2", emb=path))
    head = spec.table("src")
    assert spec.d_model == 16 and head is not None and head.dim == 16 and spec.table("tgt") is None
    assert spec.paper["reason"] == "no column has the table's D = 16: the task's first"
    mc = spec.model_config(10, 0, 2)
    assert (mc.d_model, mc.n_heads, mc.d_ff, mc.src_vocab, mc.sep_id) == (16, 8, 512, 10, -1)
    projected = RunSpec.of(TrainConfig(task="sst2", emb=path, input_dim=16))
    assert projected.d_model == FAST_D and projected.model_config(10, 0, 2).emb_dim == 16


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"d_model": 32}, "--d-model 32 differs from the table's D 16 (--emb {t}); leave it out or match it, "
      "or give --input-dim D to project the table"),
     ({"input_dim": 8}, "--input-dim 8 differs from the table's D 16 (--emb {t}); leave it out or match it"),
     ({"out_emb": "{o}", "input_dim": 16}, "--out-emb {o} has D=8 but the output embedding is 512 wide; give --output-dim 8"),
     ({"emb": "{t}x"}, "{t}x: no such file")],
    ids=["d-model", "input-dim", "out-emb-against-the-resolved-d", "first-table-missing"],
)  # fmt: skip
def test_widths_that_cannot_fit_the_tables_fail_naming_them(tmp_path, make_table, kw, message) -> None:
    paths = {"t": _table(tmp_path, make_table, 16), "o": _table(tmp_path, make_table, 8, "o")}
    kw = {"emb": paths["t"], **{k: v.format(**paths) if isinstance(v, str) else v for k, v in kw.items()}}
    with pytest.raises(BadInput) as e:
        RunSpec.of(TrainConfig(task="multi30k", **kw))
    assert str(e.value) == message.format(**paths)


def test_a_target_table_that_cannot_be_read_is_named_when_it_is_sized(tmp_path, make_table) -> None:
    src = _table(tmp_path, make_table, 16)
    spec = RunSpec.of(TrainConfig(task="files", src="a", tgt="b", src_emb=src, tgt_emb=str(tmp_path / "no")))
    assert spec.table("src") is not None
    with pytest.raises(BadInput, match="no such file"):
        spec.table("tgt")


@pytest.mark.parametrize(
    ("kw", "specials", "sep_id"),
    [({"task": "sst2"}, SPECIALS, -1), ({"task": "mnli"}, (*SPECIALS, SEP), 4),
     ({"task": "mnli", "pool": "first"}, (*SPECIALS, SEP, CLS), 4)],
    ids=["sst2", "mnli", "mnli-first"],
)  # fmt: skip
def test_the_specials_and_the_models_sep(kw, specials, sep_id) -> None:
    spec = RunSpec.of(TrainConfig(**kw))
    assert spec.specials["src"] == specials and spec.model_config(20, 0, 3).sep_id == sep_id


def test_the_autocast_and_its_reason_come_from_choose_amp() -> None:
    import torch

    spec = RunSpec.of(TrainConfig(task="sst2", amp="off"))
    choice = spec.amp(torch.device("cpu"))
    assert choice.amp == "off" and "off" in choice.why
    assert RunSpec.of(dataclasses.replace(spec.cfg, amp="bf16")).amp(torch.device("cpu")).amp == "bf16"


def test_the_spec_needs_no_torch() -> None:
    """`experiment` checks every run of its grid through RunSpec before any work, without torch."""
    import subprocess
    import sys

    code = (
        "import sys; from embtool.training.spec import RunSpec; from embtool.training import TrainConfig; "
        "RunSpec.of(TrainConfig(task='mnli')); print('torch' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


def test_the_model_over_prepared_vocabularies(tmp_path) -> None:
    """``model_for(prep)``: the sizes of the vocabularies the run built, the rest from the spec."""
    from embtool.tasks import TaskText, TranslationData
    from embtool.training.setup import prepare

    split = TranslationData(["a b c", "b c"], ["x y", "y"])
    spec = RunSpec.of(
        TrainConfig(task="files", src="s", tgt="t", tokenizer="whitespace", min_freq=1, cache=False)
    )
    mc = spec.model_for(prepare(spec.cfg, TaskText(split, split, split)))
    assert (mc.src_vocab, mc.tgt_vocab, mc.d_model, mc.d_ff) == (4 + 3, 4 + 2, FAST_D, 512)  # paper: FFN 512
