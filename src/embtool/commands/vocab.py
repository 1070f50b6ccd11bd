"""embtool vocab: count a task's training tokens (or text files') into a vocabulary file."""

from __future__ import annotations

from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("vocab")(vocab)


def vocab(
    task: Optional[str] = typer.Argument(
        None, help="Task whose training split to count: multi30k, iwslt2017, sst2, mnli.", metavar="TASK"
    ),
    text: Optional[List[str]] = typer.Option(
        None, "--text", help="Count these text files (one sentence a line; .gz ok) instead of a task."
    ),
    side: str = typer.Option(
        "src",
        "--side",
        help="Translation side: src (German), tgt (English), or both (one joint vocabulary, counts summed; "
        "needs one --tokenizer for both, e.g. hf:mt5).",
    ),
    split: str = typer.Option("train", "--split", help="Task split to count."),
    tokenizer: Optional[str] = typer.Option(
        None,
        "--tokenizer",
        help="spacy:<lang>, hf:<id|path|alias>, whitespace [+lower]. Default: spacy:<side's language> "
        "for tasks, whitespace for --text.",
    ),
    lower: bool = typer.Option(False, "--lower", help="Lower-case tokens (adds +lower to the spec)."),
    min_freq: Optional[int] = typer.Option(
        None,
        "--min-freq",
        help="Keep tokens seen at least K times. Default: the paper's (2; 5 for iwslt2017; 1 for --text).",
        metavar="K",
    ),
    max_size: Optional[int] = typer.Option(
        None, "--max-size", help="Keep at most this many non-special tokens."
    ),
    specials: str = typer.Option(
        "<unk>,<pad>,<bos>,<eos>", "--specials", help="Comma-separated tokens put first ('' for none)."
    ),
    data_dir: Optional[str] = typer.Option(
        None, "--data-dir", help="Local task data (default $EMBTOOL_DATA_DIR, else the Hugging Face hub)."
    ),
    out: str = typer.Option("-", "-o", "--out", help="Output vocabulary file, or - for stdout."),
) -> None:
    """Count tokens and write `token<TAB>count` lines: specials first, then by frequency.

    The first line records how the tokens were made (`#embtool tokenizer=… min_freq=…`); `extract`,
    `align` and `init` copy that tokenizer into the tables they write.

    Examples:

      embtool vocab multi30k --side src --tokenizer spacy:de --min-freq 2 -o de.vocab

      embtool vocab multi30k --data-dir ../shared/data --side tgt -o en.vocab

      embtool vocab --text corpus.txt --tokenizer hf:bert -o bert.vocab

      embtool vocab iwslt2017 --side both --tokenizer hf:mt5 -o vocab.txt
    """
    from embtool.commands._progress import progress_bar, say
    from embtool.core.errors import UsageError
    from embtool.tasks import TranslationData, get_task, load_task, read_lines, task_texts
    from embtool.text.tokenizer import load_tokenizer, parse_spec
    from embtool.text.vocab import build_vocab, count_tokens, parse_specials
    from embtool.text.vocabfile import write_vocab

    if (task is None) == (not text):
        raise UsageError("give a TASK or --text FILE… (one of the two)")
    special_tokens = parse_specials(specials)
    if min_freq is not None and min_freq < 1:
        raise UsageError(f"--min-freq must be at least 1, got {min_freq}")
    meta: dict[str, str] = {}
    if task is not None:
        tinfo = get_task(task)
        data = load_task(task, split, data_dir)
        default_spec = tinfo.tokenizer(side)  # the registry's: spaCy in the side's language
        if side == "both" and tokenizer is None and tinfo.tokenizer("src") != tinfo.tokenizer("tgt"):
            raise UsageError(
                f"--side both: the sides' tokenizers differ ({tinfo.tokenizer('src')}, {tinfo.tokenizer('tgt')}); "
                "give one --tokenizer for both (e.g. hf:mt5 or whitespace)"
            )
        lines = list(task_texts(data, side))
        k = tinfo.min_freq if min_freq is None else min_freq
        meta.update(task=task, split=split)
        if isinstance(data, TranslationData):
            meta["side"] = side
    else:
        default_spec = "whitespace"
        lines = [line for path in text or [] for line in read_lines(path)]
        k = 1 if min_freq is None else min_freq
    spec = parse_spec(tokenizer or default_spec, lower)
    tok = load_tokenizer(spec)
    with progress_bar("tokenizing", total=len(lines)) as advance:
        counts = count_tokens(tok.tokenize_lines(lines), progress=advance)
    meta = {"tokenizer": str(spec), "min_freq": str(k), **meta}
    if special_tokens:
        meta["specials"] = ",".join(special_tokens)
    result = build_vocab(counts, k, special_tokens, max_size, meta)
    write_vocab(result, out)
    kept = sum(result.counts or [])
    total = sum(counts.values())
    share = f"{100 * kept / total:.1f}%" if total else "n/a"
    say(
        f"vocab: {len(result)} tokens ({len(special_tokens)} specials) from {len(lines)} lines, "
        f"{len(counts)} types, min_freq {k}; covers {share} of {total} tokens → {out}"
    )
