"""A table put into a local Hugging Face checkpoint folder: ``embtool inject``.

The folder is copied; in the copy only the input-embedding tensor is rewritten (through safetensors,
in the tensor's own dtype), with row i the table's row for the tokenizer's id i (``for_vocab``); every
other tensor and file is the same bytes. The copy is made in a temporary folder beside the output and
renamed into place, so a failure leaves nothing half-written.

What the copy holds is what the folder holds: a symlink that stays inside the folder is copied as a
link, one into a Hugging Face cache's ``blobs/`` (a snapshot folder is made of those) as the file it
names; any other link is refused, so no file from elsewhere on the machine lands in a folder that
users share or upload.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embtool.core.errors import BadInput, WorkFailure

if TYPE_CHECKING:
    from embtool.tables.filling import Coverage
    from embtool.tables.table import EmbeddingTable

META_KEY = "embtool.formats.inject"  # safetensors metadata of the rewritten file: the table's provenance


@dataclass
class Injected:
    """What ``inject`` did: the tensor, its file, its shape and how many of its rows the table gave."""

    tensor: str
    file: str
    rows: int
    dim: int
    coverage: Coverage


def inject(
    table: EmbeddingTable,
    model: str,
    out: str,
    *,
    missing: str = "normal",
    seed: int = 0,
    tokenizer: str | None = None,
) -> Injected:
    """Copy checkpoint folder ``model`` to ``out`` with its input embedding replaced by ``table``'s rows
    in the order of the tokenizer in ``model`` (or in folder ``tokenizer``); ids the table lacks are
    filled by ``missing``. BadInput when the folder has no safetensors input embedding or tokenizer,
    when the widths differ, when a link leaves the folder, or when a table made with a Hugging Face
    tokenizer does not hold this tokenizer's tokens (the count that match is given)."""
    from embtool.formats.sources.huggingface import locate_weights
    from embtool.tables.interop import from_tokenizer, load_tokenizer, rows_for

    src, dest = Path(model), Path(out)
    if not src.is_dir():
        raise BadInput(f"--model {model}: not a checkpoint folder")
    if dest.resolve() == src.resolve():
        raise BadInput("-o must be another folder than --model: the checkpoint is copied, never changed")
    if dest.resolve().is_relative_to(src.resolve()):
        raise BadInput(f"-o {out}: is inside --model {model}; the checkpoint is copied, never changed")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BadInput(f"-o {out}: already exists; give a new folder name")
    if not dest.parent.is_dir():
        raise BadInput(f"-o {out}: folder {dest.parent} does not exist")
    links = _links(src)
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
    where = tokenizer or model
    try:
        target = from_tokenizer(load_tokenizer(where), where)
    except BadInput as e:
        raise BadInput(
            f"{e}; inject maps the table's tokens to the checkpoint's ids through its tokenizer: "
            + (
                "give that tokenizer's folder with --tokenizer DIR"
                if tokenizer is None
                else "check --tokenizer"
            )
        ) from None
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
    _write_copy(src, dest, links, weights.path, weights.key, vectors, table)
    return Injected(weights.key, weights.path.name, shape[0], shape[1], cov)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _shape(path: Path, key: str) -> tuple[int, int]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        shape = tuple(f.get_slice(key).get_shape())
    if len(shape) != 2:
        raise BadInput(f"{path}: tensor {key} has shape {shape}, not (rows, D)")
    return int(shape[0]), int(shape[1])


def _links(src: Path) -> dict[Path, bool]:
    """Each symlink under ``src`` (relative path) → True to copy it as a link (it stays inside), False
    to copy the file it names (a hub cache's blob). BadInput for a link that leads anywhere else."""
    root = src.resolve()
    blobs = root.parent.parent / "blobs" if root.parent.name == "snapshots" else None
    found: dict[Path, bool] = {}
    for folder, dirs, files in os.walk(src):
        for name in dirs + files:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            target = path.resolve()
            if target.is_relative_to(root):
                found[path.relative_to(src)] = True
            elif blobs is not None and target.parent == blobs and target.is_file():
                found[path.relative_to(src)] = False
            else:
                raise BadInput(
                    f"{path}: a link to {target}, outside the checkpoint folder; inject will not copy "
                    "it into -o: remove the link, or put the file itself into the folder"
                )
    return found


def _copy_folder(src: Path, tmp: Path, links: dict[Path, bool]) -> None:
    """Copy ``src`` into the new folder ``tmp`` as ``_links`` decided; folders get the mode a new
    folder gets (mkdtemp made ``tmp`` 0700), files keep theirs."""
    os.chmod(tmp, 0o777 & ~_umask())
    for folder, dirs, files in os.walk(src):
        here = Path(folder).relative_to(src)
        for name in dirs + files:
            source, rel = Path(folder) / name, here / name
            target = tmp / rel
            if rel in links and links[rel]:
                os.symlink(os.readlink(source), target)  # stays inside: a link in the copy too
            elif rel in links:
                shutil.copyfile(source, target)  # a hub cache's blob: its bytes
                os.chmod(target, 0o666 & ~_umask())
            elif source.is_dir():
                target.mkdir(mode=0o777 & ~_umask())
            else:
                shutil.copy2(source, target)


def _write_copy(
    src: Path,
    dest: Path,
    links: dict[Path, bool],
    shard: Path,
    key: str,
    vectors: object,
    table: EmbeddingTable,
) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        _copy_folder(src, tmp, links)
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
        os.chmod(target, 0o666 & ~_umask())  # as every other output, whatever save_file created it with
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.replace(tmp, dest)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise WorkFailure(f"{dest}: could not write ({e.strerror or e})") from None
        raise
