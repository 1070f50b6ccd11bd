"""The task registry: one record per task, consistent with itself and with the paper's Table 5."""

from __future__ import annotations

import pytest

from embtool.core.errors import BadInput
from embtool.tasks.registry import CLASSIFICATION, TASKS, TRANSLATION, get_task, task_title


@pytest.mark.parametrize("name", [n for n, t in TASKS.items() if not t.local_only])
def test_every_split_a_record_uses_is_defined(name) -> None:
    task = TASKS[name]
    used = {"train", task.val, task.test, *task.extra_val.values()}
    assert used <= set(task.splits)
    assert task.kind in (TRANSLATION, CLASSIFICATION)
    assert (task.kind == CLASSIFICATION) == bool(task.labels and task.fields)


def test_table5_columns_match_the_paper() -> None:
    # Table 5: epochs and batch size per column; D = 300 GloVe, 512 T5, 768 BERT/mBERT/mT5 (A.2)
    assert [(c.family, c.epochs, c.batch_size) for c in TASKS["multi30k"].table5] == [
        ("glove", 20, 64),
        ("mbert", 20, 128),
        ("mt5", 20, 96),
    ]
    assert TASKS["mnli"].column("glove").epochs == 9 and TASKS["iwslt2017"].column("mt5").batch_size == 112
    dims = {"glove": 300, "t5": 512, "bert": 768, "mbert": 768, "mt5": 768}
    assert all(c.dim == dims[c.family] for t in TASKS.values() for c in t.table5)
    assert [TASKS[n].seeds for n in ("multi30k", "iwslt2017", "mnli", "sst2")] == [4, 4, 3, 5]


def test_lookups_list_the_valid_choices() -> None:
    with pytest.raises(
        BadInput, match="unknown task 'wmt'; valid choices: multi30k, iwslt2017, sst2, mnli, files"
    ):
        get_task("wmt")
    with pytest.raises(BadInput, match="no Table 5 column for 't5'; valid choices: glove, mbert, mt5"):
        TASKS["multi30k"].column("t5")
    assert task_title("sst2") == "SST2" and task_title("mine") == "mine"


def test_default_tokenizers_are_spacy_in_the_sides_language() -> None:
    # Multi30k lower-cased: the paper's N (7.8k de / 5,893 en) are lower-cased spaCy tokens
    assert TASKS["multi30k"].tokenizer("src") == "spacy:de+lower"
    assert TASKS["multi30k"].tokenizer("tgt") == "spacy:en+lower"
    assert TASKS["sst2"].tokenizer("src") == "spacy:en"


def test_table5_columns_record_the_papers_vocab_sizes_and_heads() -> None:
    glove, mbert, _ = TASKS["multi30k"].table5
    assert (glove.vocab, glove.heads, mbert.heads) == ("7.8k/5.9k", 10, 8)
    assert TASKS["mnli"].column("glove").vocab == "79k" and TASKS["iwslt2017"].train_size == "206k"
