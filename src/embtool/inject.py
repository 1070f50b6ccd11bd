"""A table put into a local Hugging Face checkpoint folder: ``embtool inject``.

The folder is copied; in the copy only the input-embedding tensor is rewritten (through safetensors,
in the tensor's own dtype), with row i the table's row for the tokenizer's id i (``for_vocab``); every
other tensor and file is the same bytes. The copy is made in a temporary folder beside the output and
renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embtool.errors import BadInput, WorkFailure

if TYPE_CHECKING:
    from embtool.filling import Coverage
    from embtool.table import EmbeddingTable

META_KEY = "embtool.inject"  # safetensors metadata of the rewritten file: the table's provenance


@dataclass
class Injected:
    """What ``inject`` did: the tensor, its file, its shape and how many of its rows the table gave."""

    tensor: str
    file: str
    rows: int
    dim: int
    coverage: Coverage


def inject(
    table: EmbeddingTable, model: str, out: str, *, missing: str = "normal", seed: int = 0
) -> Injected:
    """Copy checkpoint folder ``model`` to ``out`` with its input embedding replaced by ``table``'s rows
    in the tokenizer's order; ids the table lacks are filled by ``missing``. BadInput when the folder
    has no safetensors input embedding or tokenizer, when the widths differ, or when a table made
    with a Hugging Face tokenizer does not hold this tokenizer's tokens (the count that match is given)."""
    from embtool.interop import from_tokenizer, load_tokenizer, rows_for
    from embtool.sources.huggingface import locate_weights

    src, dest = Path(model), Path(out)
    if not src.is_dir():
        raise BadInput(f"--model {model}: not a checkpoint folder")
    if dest.resolve() == src.resolve():
        raise BadInput("-o must be another folder than --model: the checkpoint is copied, never changed")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BadInput(f"-o {out}: already exists; give a new folder name")
    if not dest.parent.is_dir():
        raise BadInput(f"-o {out}: folder {dest.parent} does not exist")
    weights = locate_weights(model)
    if not weights.path.name.endswith(".safetensors"):
        raise BadInput(
            f"{weights.path}: inject rewrites safetensors files only; re-save the model with "
            "save_pretrained(…, safe_serialization=True)"
        )
    shape = _shape(weights.path, weights.key)
    if shape[1] != table.dim:
        raise BadInput(
            f"{table.origin} has D={table.dim} but {weights.key} in {model} has D={shape[1]}; "
            f"make the widths equal first: embtool resize {table.origin} --dim {shape[1]} --method pca|pad"
        )
    target = from_tokenizer(load_tokenizer(model), model)
    if len(target.tokens) > shape[0]:
        raise BadInput(
            f"{model}: its tokenizer has {len(target.tokens)} ids but {weights.key} only {shape[0]} rows"
        )
    if table.tokenizer.startswith("hf:"):
        have = {t for t in target.tokens if t is not None}
        match = sum(t in have for t in table.tokens)
        if match < table.n:
            raise BadInput(
                f"{model}: its tokenizer does not match the table's ({table.tokenizer}): {match} of the "
                f"table's {table.n} tokens are among its {len(have)}; extract the table from this checkpoint"
                f"'s tokenizer (embtool vocab … --tokenizer hf:{model})"
            )
    vectors, cov = rows_for(table, target, missing, rows=shape[0], seed=seed)  # (R, D)
    _write_copy(src, dest, weights.path, weights.key, vectors, table)
    return Injected(weights.key, weights.path.name, shape[0], shape[1], cov)


def _shape(path: Path, key: str) -> tuple[int, int]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        shape = tuple(f.get_slice(key).get_shape())
    if len(shape) != 2:
        raise BadInput(f"{path}: tensor {key} has shape {shape}, not (rows, D)")
    return int(shape[0]), int(shape[1])


def _write_copy(src: Path, dest: Path, shard: Path, key: str, vectors: object, table: EmbeddingTable) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        with safe_open(str(shard), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
        old = tensors[key]
        tensors[key] = torch.as_tensor(vectors).to(old.dtype).contiguous()  # (R, D) in the tensor's dtype
        meta.setdefault("format", "pt")
        meta[META_KEY] = json.dumps(
            {"tensor": key, "source": table.source, "tokenizer": table.tokenizer, "history": table.history},
            ensure_ascii=False,
        )
        target = tmp / shard.relative_to(src)
        target.unlink()  # a copied symlink (a hub cache) must not write through to its blob
        save_file(tensors, str(target), metadata=meta)
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(tmp, dest)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise WorkFailure(f"{dest}: could not write ({e.strerror or e})") from None
        raise
