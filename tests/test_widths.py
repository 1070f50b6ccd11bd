"""The model width against the tables a run starts from, checked from their headers (issue 14.11)."""

from __future__ import annotations

import re

import pytest

from embtool.core.errors import BadInput
from embtool.training import TrainConfig
from embtool.training.widths import check_widths, read_heads, readable


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"d_model": 32}, "--d-model 32 differs from the table's D 16 (--emb"),
     ({"heads": 3}, "--heads 3 must divide the table's D 16 (--emb"),
     ({"src_emb": "{d8}", "tgt_emb": "{d16}"}, "the tables differ in D: --src-emb"),
     ({"d_model": 16, "heads": 4}, None), ({"emb": "{missing}", "d_model": 32}, None),
     ({"out_emb": "{d8}"}, "--out-emb {d8} has D=8 but the output embedding is 16 wide; give --output-dim 8"),
     ({"out_emb": "{d8}", "d_model": 16, "output_dim": 32}, "output embedding is 32 wide"),
     ({"out_emb": "{d8}", "output_dim": 8}, None)],
    ids=["d-model", "heads", "two-tables", "fits", "unreadable-left-to-the-loader", "out-emb", "out-emb-output-dim",
         "out-emb-fits"],
)  # fmt: skip
def test_the_widths_are_checked_against_the_headers(tmp_path, make_table, kw, message) -> None:
    """Issue 14.11: the width is checked against the tables before a folder or grid is written."""
    import numpy as np

    from embtool.tables.table import save

    paths = {
        "d16": tmp_path / "d16.safetensors",
        "d8": tmp_path / "d8.safetensors",
        "missing": tmp_path / "no",
    }
    save(make_table(np.ones((3, 16), np.float32)), paths["d16"])
    save(make_table(np.ones((3, 8), np.float32)), paths["d8"])
    kw = {k: v.format(**paths) if isinstance(v, str) else v for k, v in kw.items()}
    cfg = TrainConfig(**({"emb": str(paths["d16"])} if not {"emb", "src_emb"} & set(kw) else {}), **kw)
    if message is None:
        check_widths(cfg, readable(read_heads(cfg)))
    else:
        with pytest.raises(BadInput, match=re.escape(message.format(**paths))):
            check_widths(cfg, readable(read_heads(cfg)))


def test_a_tables_header_is_read_once_and_sizes_a_vocabulary(tmp_path, make_table) -> None:
    """One reader (``read_heads``) for the column, the width checks and the dry run's sizes."""
    import numpy as np

    from embtool.tables.table import save
    from embtool.training.widths import FAST_D, TableHead, model_width, read_heads

    save(make_table(np.ones((3, 16), np.float32), ["<pad>", "a", "b"]), tmp_path / "t.safetensors")
    path = str(tmp_path / "t.safetensors")
    cfg = TrainConfig(task="files", src="s", tgt="t", emb=path, out_emb=str(tmp_path / "none"))
    heads = read_heads(cfg)
    assert set(heads) == {"emb", "out_emb"} and isinstance(heads["out_emb"], BadInput)
    head = heads["emb"]
    assert isinstance(head, TableHead) and (head.n, head.dim, head.label) == (3, 16, f"--emb {path}")
    assert head.vocab_size(("<pad>", "<unk>", "<bos>", "<eos>")) == 3 + 3  # the specials it lacks
    assert model_width(cfg, {"emb": head}) == 16 and model_width(cfg, {}) == FAST_D
    assert model_width(TrainConfig(task="files", src="s", tgt="t", input_dim=16), {"emb": head}) == FAST_D
