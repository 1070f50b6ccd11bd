"""The paper's settings: Table 5's column for a run, and what the presets fill in."""

from __future__ import annotations

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.tasks.registry import TASKS
from embtool.training.config import TrainConfig
from embtool.training.paper import PAPER_FFN, choose_column, source_family, table_shape_source


@pytest.mark.parametrize(
    ("task", "dim", "source", "family", "chosen"),
    [
        ("multi30k", 300, "glove:glove.6B.300d.txt", None, "glove"),
        ("multi30k", 768, "hf:google/mt5-base", None, "mt5"),
        ("multi30k", 768, "hf:bert-base-multilingual-cased", None, "mbert"),
        ("multi30k", 768, "hf:bert-base-uncased", None, "mbert"),  # translation: the multilingual twin
        ("sst2", 768, "hf:google/mt5-base", None, "t5"),  # classification: the monolingual twin
        ("sst2", 512, "xavier", None, "t5"),  # by D
        ("mnli", 768, "xavier", None, "bert"),
        ("multi30k", 768, "word2vec:x.txt", None, "mbert"),  # the task's first 768 column
        ("multi30k", 64, "xavier", None, "glove"),  # no column has D 64: the first
        ("multi30k", None, None, None, "glove"),  # Xavier baseline
        ("multi30k", 300, "glove:x.txt", "mt5", "mt5"),  # --family wins
    ],
)
def test_choose_column(task, dim, source, family, chosen) -> None:
    choice = choose_column(TASKS[task], dim, source, family)
    assert choice.column is not None and choice.column.family == chosen


def test_choose_column_errors_and_tasks_without_columns() -> None:
    with pytest.raises(BadInput, match="no Table 5 column for 't5'; valid choices: glove, mbert, mt5"):
        choose_column(TASKS["multi30k"], 300, None, "t5")
    with pytest.raises(BadInput, match="invalid --family 'gpt'"):
        choose_column(TASKS["multi30k"], 300, None, "gpt")
    assert choose_column(TASKS["files"], 300, None, None).column is None
    assert source_family("glove:glove.840B.300d.txt") == "glove" and source_family("xavier") is None


def test_paper_preset_fills_the_column_and_fast_keeps_the_old_choices() -> None:
    cfg = TrainConfig(task="multi30k").resolved()  # Xavier: the GloVe column, D 300
    assert (cfg.epochs, cfg.batch_size, cfg.ff, cfg.d_model, cfg.lr) == (20, 64, PAPER_FFN, 300, 2e-4)
    assert TrainConfig(task="mnli").resolved().epochs == 9
    assert TrainConfig(task="mnli", family="bert").resolved().epochs == 10
    mt5 = TrainConfig(task="iwslt2017", family="mt5").resolved()
    assert (mt5.batch_size, mt5.d_model) == (112, 768)
    fast = TrainConfig(task="multi30k", preset="fast").resolved()
    assert (fast.batch_size, fast.ff, fast.d_model) == (128, 0, 0)  # 0: 4·D, and D 512 without a table
    given = TrainConfig(task="multi30k", batch_size=8, ff=64, epochs=2).resolved()
    assert (given.batch_size, given.ff, given.epochs) == (8, 64, 2)


def test_the_column_follows_the_tables_header(tmp_path, make_table) -> None:
    from embtool.tables.table import save

    path = tmp_path / "t.safetensors"
    save(make_table(np.zeros((5, 768), np.float32), source="hf:google/mt5-base"), path)
    assert table_shape_source(str(path)) == (768, "hf:google/mt5-base")
    cfg = TrainConfig(task="multi30k", emb=str(path)).resolved()
    assert (cfg.batch_size, cfg.d_model) == (96, 0)  # mT5's column; D stays the table's
    with pytest.raises(BadInput, match="nope.safetensors: no such file"):
        TrainConfig(task="multi30k", emb=str(tmp_path / "nope.safetensors")).resolved()


def test_clinic_preset_sets_liu_et_al_recipe_where_left_at_default() -> None:
    """--preset clinic: Transformer-Clinic's IWSLT'14 recipe on the paper's column; a value the user
    gave stays, and a run with an output table keeps its untied output layer."""
    from embtool.training.paper import CLINIC

    cfg = TrainConfig(task="multi30k", preset="clinic").resolved()
    assert {k: getattr(cfg, k) for k in CLINIC} == CLINIC
    assert cfg.ff == 512 and cfg.epochs == TrainConfig(task="multi30k").resolved().epochs
    mine = TrainConfig(
        task="multi30k", preset="clinic", dropout=0.2, lr=1e-3, out_emb="o.safetensors"
    ).resolved()
    assert (mine.dropout, mine.lr, mine.tie_output, mine.optimizer) == (0.2, 1e-3, False, "radam")
    sst2 = TrainConfig(task="sst2", preset="clinic").resolved()
    assert (sst2.tie_output, sst2.max_tokens, sst2.label_smoothing) == (False, 0, 0.1)


def test_clinic_has_liu_et_al_relu_dropout_beside_their_dropout() -> None:
    """Transformer-Clinic's IWSLT'14 commands: --dropout 0.3 --attention-dropout 0.1 --relu-dropout 0.1
    (issue 25.5: the FFN took the main 0.3 before); the paper preset leaves the FFN at --dropout."""
    cfg = TrainConfig(task="iwslt2017", preset="clinic").resolved()
    assert (cfg.dropout, cfg.attn_dropout, cfg.ffn_dropout) == (0.3, 0.1, 0.1)
    assert TrainConfig(task="iwslt2017").resolved().ffn_dropout is None  # ModelConfig: --dropout's
    assert TrainConfig(task="iwslt2017", preset="clinic", ffn_dropout=0.0).resolved().ffn_dropout == 0.0
