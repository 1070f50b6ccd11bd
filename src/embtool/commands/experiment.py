"""embtool experiment: one box of the paper's Table 1 — every initialisation × every seed, then the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional  # typer reads the annotations

import typer

from embtool.commands._common import info


def register(app: typer.Typer) -> None:
    app.command("experiment")(experiment)


def _opt(default: Any, *names: str, help: str, **kw: Any) -> Any:
    return typer.Option(default, *names, help=help, rich_help_panel="Training (passed to train)", **kw)


def experiment(
    task: str = typer.Argument(..., help="multi30k, iwslt2017, sst2, mnli, or files (with --src/--tgt)."),
    emb: Optional[str] = typer.Option(None, "--emb", help="The pretrained table (both sides)."),
    src_emb: Optional[str] = typer.Option(None, "--src-emb", help="The pretrained table of the encoder side."),
    tgt_emb: Optional[str] = typer.Option(None, "--tgt-emb", help="The pretrained table of the decoder side."),
    seeds: str = typer.Option("3", "--seeds", help="How many seeds (3 → 1,2,3), or a list (1,5,7)."),
    variants: str = typer.Option(
        "xavier,pretrained,standardized,shuffled,xavier_like", "--variants",
        help="Which initialisations: xavier, pretrained, standardized (Eq. 1), shuffled, xavier_like (Eq. 4).",
    ),
    out: Optional[str] = typer.Option(None, "-o", "--out", help="Grid folder (default: experiments/TASK-TABLE)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and their state; build and train nothing."),
    data_dir: Optional[str] = _opt(None, "--data-dir", help="Local copy of the task (../shared/data layout)."),
    src: Optional[str] = _opt(None, "--src", help="files: training source sentences."),
    tgt: Optional[str] = _opt(None, "--tgt", help="files: training target sentences."),
    val_src: Optional[str] = _opt(None, "--val-src", help="files: validation source sentences."),
    val_tgt: Optional[str] = _opt(None, "--val-tgt", help="files: validation target sentences."),
    test_src: Optional[str] = _opt(None, "--test-src", help="files: test source sentences."),
    test_tgt: Optional[str] = _opt(None, "--test-tgt", help="files: test target sentences."),
    epochs: Optional[int] = _opt(None, "--epochs", help="Epochs (default: Table 5's)."),
    batch_size: Optional[int] = _opt(None, "--batch-size", help="Sentences per step (default: Table 5's)."),
    max_tokens: Optional[int] = _opt(None, "--max-tokens", help="Cap padded tokens per batch."),
    lr: Optional[float] = _opt(None, "--lr", help="Learning rate (default: 2e-4 translation, 1e-4 classification)."),
    layers: Optional[int] = _opt(None, "--layers", help="Layers per side (default: 3)."),
    heads: Optional[int] = _opt(None, "--heads", help="Attention heads (default: 8, or ≤ 10 dividing D)."),
    dropout: Optional[float] = _opt(None, "--dropout", help="Dropout (default: 0.1)."),
    min_freq: Optional[int] = _opt(None, "--min-freq", help="Vocabulary min count (default: the task's)."),
    max_train_examples: Optional[int] = _opt(None, "--max-train-examples", help="Train on the first N examples."),
    max_eval_examples: Optional[int] = _opt(None, "--max-eval-examples", help="Validate/test on the first N."),
    max_len: Optional[int] = _opt(None, "--max-len", help="Skip longer training examples (default: 256)."),
    clip_norm: Optional[float] = _opt(None, "--clip-norm", help="Clip the gradient norm (default: off)."),
    beam: Optional[int] = _opt(None, "--beam", help="Test decoding beam (default: 1, greedy)."),
    tokenizer: Optional[str] = _opt(None, "--tokenizer", help="Override the tables' tokenizer on both sides."),
    missing: Optional[str] = _opt(None, "--missing", help="Fill for tokens a table lacks: normal|xavier|zero|mean."),
    freeze_emb: bool = _opt(False, "--freeze-emb", help="Do not train the embeddings (Table 3)."),
    no_posenc: bool = _opt(False, "--no-posenc", help="No position encodings (Table 3)."),
    tie_output: bool = _opt(False, "--tie-output", help="Share the decoder's embedding with its output layer."),
    device: Optional[str] = _opt(None, "--device", help="auto, cpu or cuda."),
    amp: Optional[str] = _opt(None, "--amp", help="bf16 autocast: auto, bf16 or off."),
    threads: Optional[int] = _opt(None, "--threads", help="CPU threads."),
    set_: List[str] = _opt([], "--set", help="Any other training setting, KEY=VALUE (repeatable), e.g. --set clip_norm=1."),
) -> None:
    """Build the variant tables of one pretrained table, train each for each seed, and write the report.

    Variants: xavier (§3.1), pretrained (the table), standardized (Eq. 1, Pre-trained_Xavier), shuffled (rows and columns permuted), xavier_like (Eq. 4, Xavier_Pre-trained). Runs go to OUT/runs/VARIANT/sSEED; a run already complete is skipped and an interrupted one resumed, so the same command finishes an interrupted grid. OUT/report.md, OUT/curves.png and OUT/table1.csv hold the report.

    Example:

      embtool experiment multi30k --emb w2v.safetensors --seeds 3 --epochs 10 --device cuda -o grid/

      embtool experiment multi30k --emb w2v.safetensors --dry-run
    """
    from embtool import experiment as lib
    from embtool.errors import WorkFailure

    settings: dict[str, Any] = {
        "data_dir": data_dir, "src": src, "tgt": tgt, "val_src": val_src, "val_tgt": val_tgt,
        "test_src": test_src, "test_tgt": test_tgt, "epochs": epochs, "batch_size": batch_size,
        "max_tokens": max_tokens, "lr": lr, "n_layers": layers, "n_heads": heads, "dropout": dropout,
        "min_freq": min_freq, "max_train_examples": max_train_examples,
        "max_eval_examples": max_eval_examples, "max_len": max_len, "clip_norm": clip_norm, "beam": beam,
        "tokenizer": tokenizer, "missing": missing, "device": device, "amp": amp, "threads": threads,
    }
    settings = {k: v for k, v in settings.items() if v is not None}
    for key in ("src", "tgt", "val_src", "val_tgt", "test_src", "test_tgt", "data_dir"):
        if key in settings:  # run folders may be resumed from elsewhere: keep paths absolute
            settings[key] = str(Path(settings[key]).resolve())
    if freeze_emb:
        settings["freeze_emb"] = True
    if no_posenc:
        settings["posenc"] = False
    if tie_output:
        settings["tie_output"] = True
    settings.update(_parse_sets(set_))
    inputs = {"emb": emb, "src_emb": src_emb, "tgt_emb": tgt_emb}
    table = emb or src_emb or tgt_emb
    folder = out or str(Path("experiments") / f"{task}-{Path(table).name.split('.')[0] if table else 'none'}")
    grid = lib.plan(task, {k: v for k, v in inputs.items() if v}, folder, lib.parse_variants(variants),
                    lib.parse_seeds(seeds), settings)
    if dry_run:
        lib.check(grid)  # the same checks as a real run: settings, and the folder's earlier grid
        _print_plan(grid)
        return
    try:
        failures = lib.run_grid(grid, event=_event, train=_train_one)
    except KeyboardInterrupt:
        info("stopped; run the same command again to resume the grid (complete runs are kept)")
        raise
    if failures and not any(r.state == "done" for r in grid.runs):
        raise WorkFailure(f"every run failed: {_listed(failures)}")
    lib.require_runs(grid)
    paths = lib.write_report(grid)
    typer.echo(paths["markdown"].read_text(encoding="utf-8").split("\n## Notes")[0].split("\n## Runs")[0], nl=False)
    info(f"experiment: report → {', '.join(str(p) for p in paths.values())}")
    if failures:
        raise WorkFailure(f"{len(failures)} run(s) failed: {_listed(failures)}; run the same command again to retry them")


def _listed(failures: list[Any]) -> str:
    return "; ".join(f"{r.variant} seed {r.seed} ({why})" for r, why in failures)


def _parse_sets(items: List[str]) -> dict[str, Any]:
    import json

    from embtool.errors import BadInput

    out: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise BadInput(f"--set {item!r}: give KEY=VALUE, e.g. --set clip_norm=1.0")
        try:
            value = json.loads(text)  # numbers, true/false, null
        except ValueError:
            value = text
        out[key.strip().replace("-", "_")] = value
    return out


def _print_plan(grid: Any) -> None:
    states = [r.state for r in grid.runs]
    typer.echo(
        f"experiment {grid.task}: {len(grid.variants)} variant(s) × {len(grid.seeds)} seed(s) = "
        f"{len(grid.runs)} run(s) in {grid.out} ({states.count('done')} done, "
        f"{states.count('resume')} to resume, {states.count('todo')} to run)"
    )
    typer.echo(f"{'state':<7} {'variant':<13} {'seed':>4}  {'run folder':<30} tables")
    for r in grid.runs:
        tables = " ".join(f"{k}={p}" for k, p in r.tables.items())
        typer.echo(f"{r.state:<7} {r.variant:<13} {r.seed:>4}  {str(r.out):<30} {tables}")


def _event(name: str, data: dict[str, Any]) -> None:
    if name == "table":
        info(f"table: {data['variant']} seed {data['seed']} → {data['path']}")
    elif name == "skip":
        info(f"[{data['index']}/{data['total']}] {data['variant']} seed {data['seed']}: complete, skipped")
    elif name == "start":
        verb = "resuming" if data.get("resume") else "training"
        info(f"[{data['index']}/{data['total']}] {verb} {data['variant']} seed {data['seed']} → {data['out']}")
    elif name == "failed":
        info(f"[red]{data['variant']} seed {data['seed']} failed:[/red] {data['error']}")


def _train_one(cfg: Any) -> Path:
    """One run with `train`'s progress display (a bar per epoch, a line per epoch)."""
    from embtool.commands._progress import TrainingProgress
    from embtool.training import train

    with TrainingProgress(cfg) as reporter:
        return train(cfg, progress=reporter)
