"""From settings to what the loop needs: each side's tokenizer, vocabulary, rows and id lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embtool.core.errors import BadInput
from embtool.tasks import TaskText, TranslationData
from embtool.training import TrainConfig
from embtool.training.setup import prepare, side_tokenizer


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"task": "files", "src": "a", "tgt": "b", **kw})


@pytest.mark.parametrize(
    ("table_tok", "single", "override", "lang", "spec"),
    [
        (None, True, None, "de", "spacy:de"),  # no table: the side's language
        (
            "hf:bert",
            True,
            None,
            "de",
            "hf:bert-base-uncased",
        ),  # language-independent: serves both sides (alias resolved)
        ("spacy:en+lower", True, None, "de", "spacy:de+lower"),  # one spaCy table: each side its language
        ("spacy:en+lower", False, None, "de", "spacy:en+lower"),  # a side's own table
        ("hf:bert", True, "whitespace", "de", "whitespace"),  # --tokenizer wins
    ],
)
def test_side_tokenizer(make_table, table_tok, single, override, lang, spec) -> None:
    table = make_table(np.ones((2, 3), dtype=np.float32), tokenizer=table_tok) if table_tok else None
    assert side_tokenizer(_cfg(tokenizer=override), table, lang, single) == spec


def _text(src: list[str], tgt: list[str]) -> TaskText:
    split = TranslationData(src, tgt)
    return TaskText(split, split, split)


def test_prepare_builds_vocabularies_rows_by_token_and_drops_long_examples(
    tmp_path: Path, make_table
) -> None:
    from embtool.tables.table import save

    save(
        make_table(
            np.arange(6, dtype=np.float32).reshape(3, 2) + 1, ["b", "a", "zz"], tokenizer="whitespace"
        ),
        tmp_path / "t.safetensors",
    )
    cfg = _cfg(emb=str(tmp_path / "t.safetensors"), min_freq=1, max_len=5)
    prep = prepare(cfg, _text(["a b", "a a a a a a"], ["b", "a"]))
    assert prep.src.vocab == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"]
    assert (
        prep.src.rows is not None
        and prep.src.rows[4].tolist() == [3.0, 4.0]
        and prep.src.rows[5].tolist() == [1.0, 2.0]
    )
    assert prep.src.missing == 4  # the specials: not in the table, filled
    assert prep.dropped == 1 and prep.train == [([4, 5, 3], [5])]  # the source ends with <eos>
    with pytest.raises(BadInput, match="no training example is at most --max-len 4"):
        prepare(_cfg(max_len=4, tokenizer="whitespace").resolved(), _text(["a a a a a a"], ["x"]))


def test_a_table_with_nan_is_refused_without_an_option_train_lacks(tmp_path: Path, make_table) -> None:
    """Issue 14.5: train has no --allow-nonfinite, so its message must not point at one."""
    from embtool.tables.table import save

    rows = np.ones((3, 2), dtype=np.float32)
    t = make_table(rows, ["a", "b", "zz"], tokenizer="whitespace")
    save(t, tmp_path / "t.safetensors")
    raw = (tmp_path / "t.safetensors").read_bytes()  # rows are the last 24 bytes: make row 1 NaN
    nan_row = np.full(2, np.nan, dtype=np.float32).tobytes()
    (tmp_path / "t.safetensors").write_bytes(raw[:-16] + nan_row + raw[-8:])
    cfg = _cfg(emb=str(tmp_path / "t.safetensors"), min_freq=1)
    with pytest.raises(
        BadInput, match=r"2 non-finite value\(s\).*token 'b'.*training needs finite rows"
    ) as e:
        prepare(cfg, _text(["a b"], ["b"]))
    assert "--allow-nonfinite" not in str(e.value)


def test_load_text_reads_the_files_task_and_cuts_it(tmp_path: Path) -> None:
    """One loader for `train` and `--dry-run`: the files task's pairs, then --max-*-examples."""
    from embtool.training.setup import load_text

    (tmp_path / "s").write_text("".join(f"s{i}\n" for i in range(40)))
    (tmp_path / "t").write_text("".join(f"t{i}\n" for i in range(40)))
    cfg = _cfg(src=str(tmp_path / "s"), tgt=str(tmp_path / "t"), max_train_examples=5, max_eval_examples=1)
    text = load_text(cfg)
    assert isinstance(text.train, TranslationData) and text.train.src == [f"s{i}" for i in range(5)]
    assert (
        text.val.tgt == text.test.tgt == ["t38"] and text.test_name == "val"
    )  # the last 5%: 2 pairs, then 1
