"""embtool train: the paper's transformer on a task, with embeddings from tables (or Xavier)."""

from __future__ import annotations

import json
from typing import Optional

import typer

from embtool.commands._common import info


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    task: Optional[str] = typer.Argument(
        None, help="multi30k, iwslt2017 (de→en), sst2, mnli, or files (with --src/--tgt).", metavar="[TASK]"
    ),
    emb: Optional[str] = typer.Option(None, "--emb", help="Embedding table for both sides (rows by token)."),
    src_emb: Optional[str] = typer.Option(None, "--src-emb", help="Table for the encoder side."),
    tgt_emb: Optional[str] = typer.Option(None, "--tgt-emb", help="Table for the decoder side."),
    data_dir: Optional[str] = typer.Option(
        None, "--data-dir", help="Local task data (default $EMBTOOL_DATA_DIR, else the Hugging Face hub)."
    ),
    src: Optional[str] = typer.Option(None, "--src", help="files: training source sentences, one a line."),
    tgt: Optional[str] = typer.Option(None, "--tgt", help="files: training target sentences."),
    val_src: Optional[str] = typer.Option(None, "--val-src", help="files: validation sources (default: last 5%)."),
    val_tgt: Optional[str] = typer.Option(None, "--val-tgt", help="files: validation targets."),
    test_src: Optional[str] = typer.Option(None, "--test-src", help="files: test sources (default: validation)."),
    test_tgt: Optional[str] = typer.Option(None, "--test-tgt", help="files: test targets."),
    tokenizer: Optional[str] = typer.Option(
        None, "--tokenizer", help="Override the tables' tokenizer on both sides (spacy:<lang>, hf:<id>, whitespace)."
    ),
    min_freq: int = typer.Option(0, "--min-freq", help="Vocabulary min count; 0: the task's (2; 5 for iwslt2017)."),
    missing: str = typer.Option("normal", "--missing", help="Fill for tokens a table lacks: normal|xavier|zero|mean."),
    d_model: int = typer.Option(0, "--d-model", help="Model width D; 0: the table's D (512 without a table)."),
    heads: int = typer.Option(0, "--heads", help="Attention heads; 0: 8, or the largest ≤ 10 dividing D."),
    layers: int = typer.Option(3, "--layers", help="Layers in the encoder and in the decoder."),
    ff: int = typer.Option(0, "--ff", help="Feed-forward width; 0: 4·D."),
    dropout: float = typer.Option(0.1, "--dropout", help="Dropout on embeddings, FFN and sub-layer outputs."),
    attn_dropout: float = typer.Option(
        0.0, "--attn-dropout", help="Dropout on attention weights (Vaswani et al.: 0; nn.Transformer: 0.1)."
    ),
    no_posenc: bool = typer.Option(False, "--no-posenc", help="No position encodings (the paper's Table 3)."),
    freeze_emb: bool = typer.Option(False, "--freeze-emb", help="Do not train the embeddings (Table 3)."),
    tie_output: bool = typer.Option(False, "--tie-output", help="Share the decoder's embedding with its output layer."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same metrics on CPU)."),
    epochs: int = typer.Option(0, "--epochs", help="Epochs; 0: the paper's Table 5 for the task."),
    batch_size: int = typer.Option(0, "--batch-size", help="Sentence pairs per step; 0: Table 5's."),
    max_tokens: int = typer.Option(0, "--max-tokens", help="Length-bucketed batches of at most N padded tokens, instead of random batches of --batch-size."),
    lr: float = typer.Option(0.0, "--lr", help="Adam learning rate; 0: 2e-4 translation, 1e-4 classification."),
    clip_norm: float = typer.Option(0.0, "--clip-norm", help="Clip the gradient norm (0: off)."),
    max_train_examples: int = typer.Option(0, "--max-train-examples", help="Use the first N training examples."),
    max_eval_examples: int = typer.Option(0, "--max-eval-examples", help="Use the first N val/test examples."),
    max_len: int = typer.Option(256, "--max-len", help="Skip longer training examples; cut longer inputs."),
    beam: int = typer.Option(1, "--beam", help="Test decoding: 1 greedy, K beam search."),
    out: Optional[str] = typer.Option(None, "-o", "--out", help="Run folder (default runs/<task>-<table>-s<seed>)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    amp: str = typer.Option("auto", "--amp", help="bf16 autocast: auto (CUDA or native-bf16 CPUs), bf16, off."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model (CUDA)."),
    threads: int = typer.Option(0, "--threads", help="CPU threads (0: PyTorch's default)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue this run folder from its last epoch.",
                                         metavar="RUN_DIR"),
    as_json: bool = typer.Option(False, "--json", help="Print test.json on stdout at the end."),
) -> None:
    """Train the paper's vanilla transformer and write a run folder.

    Translation (multi30k, iwslt2017, files) trains a post-LN encoder-decoder and reports
    sacrebleu BLEU on the test split; classification (sst2, mnli) an encoder with a pooled
    linear layer and its best validation accuracy. Every vocabulary token takes its row from
    the table by token string; tokens the table lacks are filled like `extract --missing`.
    The run folder holds config.json, metrics.jsonl (one line per epoch), best/last
    checkpoints, state.pt (for --resume), test.json and hyps.test.txt.

    Examples:

      embtool train multi30k --data-dir ../shared/data --emb glove_x.safetensors -o runs/glove_x

      embtool train files --src train.de --tgt train.en --tokenizer whitespace --epochs 5

      embtool train --resume runs/glove_x
    """
    from embtool.errors import UsageError
    from embtool.training import TrainConfig, resume_config
    from embtool.training import train as run_training

    if resume:
        cfg = resume_config(resume)
    else:
        if task is None:
            if not src:
                raise UsageError("give a TASK (multi30k, iwslt2017, sst2, mnli, files) or --resume RUN_DIR")
            task = "files"
        cfg = TrainConfig(
            task=task, data_dir=data_dir, src=src, tgt=tgt, val_src=val_src, val_tgt=val_tgt,
            test_src=test_src, test_tgt=test_tgt, emb=emb, src_emb=src_emb, tgt_emb=tgt_emb,
            tokenizer=tokenizer, min_freq=min_freq, missing=missing, d_model=d_model, n_heads=heads,
            n_layers=layers, d_ff=ff, dropout=dropout, attn_dropout=attn_dropout, posenc=not no_posenc, freeze_emb=freeze_emb,
            tie_output=tie_output, seed=seed, epochs=epochs, batch_size=batch_size, max_tokens=max_tokens,
            lr=lr, clip_norm=clip_norm, max_train_examples=max_train_examples,
            max_eval_examples=max_eval_examples, max_len=max_len, beam=beam, out=out, device=device,
            amp=amp, compile=compile_, threads=threads,
        )
    from embtool.commands._progress import TrainingProgress

    reporter = TrainingProgress(cfg)
    try:
        with reporter:
            run = run_training(cfg, progress=reporter)
    except KeyboardInterrupt:
        if reporter.run_dir:
            info(f"stopped; continue with: embtool train --resume {reporter.run_dir}")
        raise
    result = json.loads((run / "test.json").read_text(encoding="utf-8"))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    if "bleu" in result:
        info(f"test BLEU {result['bleu']:.2f} (best epoch {result['best_epoch']}, {result['split']}) → {run}")
    else:
        acc = f"val acc {result['best_val_acc']:.2f}"
        if "best_val_acc_mismatched" in result:
            acc += f" / mismatched {result['best_val_acc_mismatched']:.2f}"
        info(f"best {acc} (epoch {result['best_epoch']}) → {run}")
