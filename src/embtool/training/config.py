"""TrainConfig: every setting of a run, the one place a train option is defined.

Each field is an option of `embtool train` and `embtool experiment` of the same name
(``batch_size`` ↔ ``--batch-size``; a boolean whose default is True is ``--x/--no-x``), with its
help text in the field's metadata; config.json's ``train`` object holds exactly these fields.
Adding an option is adding a field here (plus what it does). Task facts come from the registry
(``embtool.tasks.registry``); a 0 means "the task's value" (its Table 5 column) where the help says so."""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any

from embtool.core.errors import BadInput
from embtool.tasks.registry import TASKS, Task
from embtool.training.checks import check_config
from embtool.training.paper import column_of, filled
from embtool.training.tracking import parse_report_to
from embtool.training.widths import check_widths

# help panels of the generated options, in the order `--help` lists them
DATA, EMBEDDINGS, MODEL, OPTIM, RUN = "Task and data", "Embeddings", "Model", "Optimisation", "Where and how"


# what a field is to a resumed run (``on_resume``): the run folder's value stays and another is
# refused; the command's value is taken (where and how the run executes); the larger of the two is
# taken (a run may train more epochs); or it names the folder or the act, not the run
KEEPS, FOLLOWS, GROWS, BOOKKEEPING = "keeps", "follows", "grows", "bookkeeping"


def option(
    default: Any,
    help: str,
    panel: str,
    *,
    metavar: str | None = None,
    cli: bool = True,
    role: str = "setting",
    on_resume: str = KEEPS,
) -> Any:
    """A TrainConfig field that is also a command-line option (``cli=False``: a field only).

    ``role``: "setting" (changes what a run learns), "input" (names an input file: runs that
    compare inputs differ in it), or "env" (where and how a run executes, not what it learns:
    the runs of one report cell or experiment may differ in it). ``on_resume``: what a resumed
    run does with it (KEEPS, FOLLOWS, GROWS or BOOKKEEPING; ``runfolder.merge_on_resume``).
    """
    meta = {
        "help": help,
        "panel": panel,
        "metavar": metavar,
        "cli": cli,
        "role": role,
        "on_resume": on_resume,
    }
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # --- what to learn
    task: str = option(
        "multi30k", "multi30k, iwslt2017 (de→en), sst2, mnli, or files (--src/--tgt).", DATA, cli=False
    )
    data_dir: str | None = option(
        None,
        "Local task data (../shared/data layout); default $EMBTOOL_DATA_DIR, else the hub.",
        DATA,
        metavar="DIR",
        role="env",
    )
    src: str | None = option(
        None, "files: training source sentences, one a line.", DATA, metavar="FILE", role="input"
    )
    tgt: str | None = option(
        None,
        "files: training target sentences (line i translates --src line i).",
        DATA,
        metavar="FILE",
        role="input",
    )
    val_src: str | None = option(
        None,
        "files: validation sources (default: the last 5% of the pairs).",
        DATA,
        metavar="FILE",
        role="input",
    )
    val_tgt: str | None = option(None, "files: validation targets.", DATA, metavar="FILE", role="input")
    test_src: str | None = option(
        None, "files: test sources (default: the validation pairs).", DATA, metavar="FILE", role="input"
    )
    test_tgt: str | None = option(None, "files: test targets.", DATA, metavar="FILE", role="input")
    src_lang: str = option(
        "de", "files: source language (spacy:<lang> when no table names a tokenizer).", DATA
    )
    tgt_lang: str = option("en", "files: target language.", DATA)
    max_train_examples: int = option(0, "Use the first N training examples (0: all).", DATA, metavar="N")
    max_eval_examples: int = option(
        0, "Use the first N validation and test examples (0: all).", DATA, metavar="N"
    )
    max_len: int = option(
        256,
        "Skip longer training examples; cut longer evaluation inputs (the paper states no length).",
        DATA,
        metavar="N",
    )
    cache: bool = option(
        True,
        "Keep the tokenized splits in $EMBTOOL_CACHE (default ~/.cache/embtool) for the next run "
        "(--no-cache: tokenize anew, write nothing).",
        DATA,
        role="env",
    )
    # --- embeddings and vocabulary
    emb: str | None = option(
        None,
        "Embedding table for both sides (rows looked up by token).",
        EMBEDDINGS,
        metavar="TABLE",
        role="input",
    )
    src_emb: str | None = option(
        None, "Table for the encoder side.", EMBEDDINGS, metavar="TABLE", role="input"
    )
    tgt_emb: str | None = option(
        None, "Table for the decoder side.", EMBEDDINGS, metavar="TABLE", role="input"
    )
    tokenizer: str | None = option(
        None,
        "Override the tables' tokenizer on both sides (spacy:<lang>, hf:<id>, whitespace).",
        EMBEDDINGS,
        metavar="SPEC",
    )
    min_freq: int = option(
        0, "Vocabulary min count; 0: the task's (2; 5 for iwslt2017).", EMBEDDINGS, metavar="N"
    )
    missing: str = option(
        "normal",
        "Fill for tokens a table lacks: normal (N(mean, σ) of the found rows; the paper does not "
        "say), xavier, zero or mean.",
        EMBEDDINGS,
    )
    freeze_emb: bool = option(False, "Do not train the embeddings (the paper's Table 3).", EMBEDDINGS)
    standardize: str = option("off", "Eq. 1 on the model's rows: xavier, TABLE (Eq. 4), off.", EMBEDDINGS)
    preset: str = option(
        "paper",
        "paper: Table 5's column (FFN 512 …); fast: FFN 4·D, D 512; clinic: Liu et al.'s recipe.",
        MODEL,
    )
    family: str | None = option(None, "Table 5 column: glove|bert|mbert|t5|mt5.", MODEL, metavar="NAME")
    input_dim: int = option(
        0,
        "Embedding width E, projected E → D by a learned matrix (Chung et al.); 0: D, no projection.",
        EMBEDDINGS,
        metavar="E",
    )
    output_dim: int = option(
        0,
        "Output embedding width: the decoder's output goes through Chung et al.'s head (--output-head) "
        "to an E_out-wide output embedding; 0: D → vocabulary.",
        EMBEDDINGS,
        metavar="E_OUT",
    )
    output_head: str = option(
        "chung",
        "With --output-dim: chung (Chung et al.'s head: D → E_out, GELU, LayerNorm, then the output "
        "embedding) or linear (D → E_out → vocabulary with nothing between: rank ≤ D, no capacity "
        "beyond a D-wide output embedding).",
        EMBEDDINGS,
    )
    out_emb: str | None = option(
        None,
        "Table for the decoder's output embedding (uncovered tokens filled as --missing).",
        EMBEDDINGS,
        metavar="TABLE",
        role="input",
    )
    # --- model (the resolved ModelConfig is stored beside this in config.json)
    d_model: int = option(
        0, "Model width D; 0: the table's D (without a table: the column's, fast: 512).", MODEL, metavar="D"
    )
    heads: int = option(
        0,
        "Attention heads; 0: 8, 10 for D=300 (A.2; else the largest count ≤ 10 dividing D).",
        MODEL,
        metavar="N",
    )
    layers: int = option(3, "Layers in the encoder and in the decoder.", MODEL, metavar="N")
    enc_layers: int = option(0, "Encoder layers; 0: --layers.", MODEL, metavar="N")
    dec_layers: int = option(0, "Decoder layers; 0: --layers.", MODEL, metavar="N")
    norm: str = option(
        "post",
        "LayerNorm placement: post (the paper's), pre, or admin (Liu et al. 2020: ω profiled before "
        "training on the first 4 batches in eval mode; Transformer-Clinic profiles one in training mode).",
        MODEL,
    )
    ff: int = option(0, "Feed-forward width; 0: 512 (Table 5's counts; fast: 4·D).", MODEL, metavar="N")
    dropout: float = option(0.1, "Dropout on embeddings, FFN and sub-layer outputs (A.2).", MODEL)
    ffn_dropout: float | None = option(
        None,
        "Dropout inside the FFN, after its ReLU (fairseq's --relu-dropout); default: --dropout's "
        "(--preset clinic: 0.1, Liu et al.'s).",
        MODEL,
    )
    attn_dropout: float = option(
        0.1,
        "Dropout on attention weights: 0.1 as nn.Transformer applies the paper's 'dropout rate of 0.1' "
        "(A.2, PyTorch) there too; 0 is faster (no random mask drawn over the B·H·T·S weights) and "
        "regularises less.",
        MODEL,
    )
    posenc: bool = option(
        True,
        "Add sinusoidal position encodings (--no-posenc: the paper's Table 3; the embeddings are "
        "still multiplied by √D).",
        MODEL,
    )
    tie_output: bool = option(
        False, "Share the decoder's input embedding with its output layer (the paper does not).", MODEL
    )
    pool: str = option(
        "mean",
        "Classification: mean (of the real tokens' final states) or first (a <cls> token put first, "
        "its state, as BERT). The paper does not say; mean needs no extra token.",
        MODEL,
    )
    segments: bool = option(
        False,
        "MNLI: add a learned segment embedding (premise and <sep>: 0, hypothesis: 1), as BERT's token "
        "types. Default off: one sequence, positions running on (the paper does not say).",
        MODEL,
    )
    # --- optimisation
    seed: int = option(0, "Random seed (same seed, same metrics on CPU).", OPTIM)
    epochs: int = option(0, "Epochs; 0: the run's Table 5 column.", OPTIM, metavar="N", on_resume=GROWS)
    batch_size: int = option(
        0, "Sentences (pairs) per step; 0: the run's Table 5 column.", OPTIM, metavar="N"
    )
    max_tokens: int = option(
        0,
        "Length-bucketed batches of at most N padded tokens instead of random batches (0: off).",
        OPTIM,
        metavar="N",
    )
    lr: float = option(0.0, "Peak learning rate; 0: 2e-4 translation, 1e-4 classification (A.2).", OPTIM)
    optimizer: str = option("adam", "adam (the paper's), adamw or radam.", OPTIM)
    weight_decay: float = option(
        0.0, "Weight decay (adam: L2 in the gradient; adamw/radam: decoupled).", OPTIM
    )
    lr_schedule: str = option(
        "constant",
        "constant (the paper gives one rate and no schedule), inverse-sqrt or cosine, after --warmup.",
        OPTIM,
    )
    warmup: int = option(
        0, "Linear warm-up steps from 0 to --lr (0: none; the paper names none).", OPTIM, metavar="STEPS"
    )
    label_smoothing: float = option(
        0.0, "Label smoothing of the training loss (0: off; the paper names none).", OPTIM
    )
    adam_beta1: float = option(0.9, "Adam β1 (A.2).", OPTIM)
    adam_beta2: float = option(0.98, "Adam β2 (A.2).", OPTIM)
    adam_eps: float = option(1e-9, "Adam ε (A.2).", OPTIM)
    clip_norm: float = option(0.0, "Clip the gradient norm to this (0: off; the paper names none).", OPTIM)
    beam: int = option(
        1, "Test decoding: 1 greedy, K > 1 beam search (the paper names no beam).", OPTIM, metavar="K"
    )
    # --- where and how
    out: str | None = option(
        None,
        "Run folder (default runs/<task>-<table>-s<seed>).",
        RUN,
        metavar="DIR",
        role="env",
        on_resume=BOOKKEEPING,
    )
    device: str = option("auto", "auto, cpu or cuda.", RUN, role="env", on_resume=FOLLOWS)
    amp: str = option(
        "auto",
        "Autocast: auto (bf16 on a GPU that has it natively; on a CPU with AMX, or AVX512-BF16 where a short probe finds it faster), bf16, fp16 (with loss scaling), off.",
        RUN,
        role="env",
        on_resume=FOLLOWS,
    )
    compile: bool = option(
        False,
        "torch.compile the training loss, dynamic shapes (CUDA; eager with a warning if it fails).",
        RUN,
        role="env",
        on_resume=FOLLOWS,
    )
    threads: int = option(
        0, "CPU threads for this run (0: PyTorch's default).", RUN, metavar="N", role="env", on_resume=FOLLOWS
    )
    resume: bool = option(
        False,
        "Continue the run in --out from its last completed epoch.",
        RUN,
        role="env",
        on_resume=BOOKKEEPING,
    )
    report_to: str = option(
        "none",
        "Log the run live as it trains: none, tensorboard (RUN/tensorboard/), wandb (Weights & Biases; "
        "WANDB_MODE=offline keeps it in RUN/wandb/) or tensorboard,wandb; needs the package (the tracking "
        "extra).",
        RUN,
        role="env",
        on_resume=FOLLOWS,  # a resumed run may start (or stop) reporting: where it is seen, not what it is
    )

    def __post_init__(self) -> None:
        check_config(self)  # BadInput naming the option (embtool.training.checks)
        parse_report_to(self.report_to)  # BadInput listing --report-to's choices
        check_widths(self)  # and for widths no model can have, before any table is read

    @property
    def task_info(self) -> Task:
        return TASKS[self.task]

    @property
    def kind(self) -> str:
        return self.task_info.kind

    def resolved(self) -> TrainConfig:
        """Every setting left at 0 filled in (config.json holds it): ``paper.filled``."""
        return TrainConfig(**filled(self, column_of(self).column, asdict(self)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "settings") -> TrainConfig:
        """A config from a dict of field names (config.json's ``train``); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise BadInput(
                f"{origin}: unknown training setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
            )
        for key, value in d.items():
            check_type(key, value, origin)
        return cls(**d)


def config_fields() -> list[Field[Any]]:
    """The TrainConfig fields that are command-line options, in declaration order."""
    return [f for f in fields(TrainConfig) if f.metadata.get("cli", True)]


def field_default(f: Field[Any]) -> Any:
    return f.default if f.default is not MISSING else None


def settable_fields() -> set[str]:
    """The names of the fields that are command-line options."""
    return {f.name for f in config_fields()}


def field_type(name: str) -> type:
    """A field's type without ``None``: bool, int, float or str."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint not in (bool, int, float, str):  # pragma: no cover - a new field of another type needs a parser
        raise TypeError(f"TrainConfig.{name}: settings of type {hint} are not supported")
    return typing.cast(type, hint)


def check_type(name: str, value: Any, origin: str = "settings") -> None:
    """BadInput unless ``value`` fits field ``name`` (None only where the default is None)."""
    f = next(f for f in fields(TrainConfig) if f.name == name)
    if value is None:
        if field_default(f) is None:
            return
        raise BadInput(f"{origin}: training setting {name}=None: a value is needed")
    kind = field_type(name)
    if kind is bool:
        ok, expected = isinstance(value, bool), "true or false"
    elif kind is int:
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "a number (int)"
    elif kind is float:
        ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number (float)"
    else:
        ok, expected = isinstance(value, str), "text"
    if not ok:
        raise BadInput(f"{origin}: training setting {name}={value!r}: expected {expected}")


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_value(name: str, text: str, where: str) -> Any:
    """A setting's value from text (``--grid layers=3,6``), as the field's type; BadInput naming ``where``."""
    kind = field_type(name)
    low = text.strip().lower()
    if kind is bool:
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise BadInput(f"{where}: {text!r} is not a boolean; use true or false")
    if kind is str:
        return text
    try:
        return int(text) if kind is int else float(text)
    except ValueError:
        raise BadInput(f"{where}: {text!r} is not {'an integer' if kind is int else 'a number'}") from None


def fields_with_role(role: str) -> frozenset[str]:
    """The names of the fields of one role ("setting", "input" or "env"; see ``option``)."""
    return frozenset(f.name for f in fields(TrainConfig) if f.metadata.get("role") == role)


def on_resume(name: str) -> str:
    """What a resumed run does with field ``name``: KEEPS, FOLLOWS, GROWS or BOOKKEEPING (``option``)."""
    return str(next(f for f in fields(TrainConfig) if f.name == name).metadata.get("on_resume", KEEPS))


def fields_on_resume(*kinds: str) -> tuple[str, ...]:
    """The fields a resumed run treats as one of ``kinds``, in declaration order."""
    return tuple(f.name for f in fields(TrainConfig) if f.metadata.get("on_resume", KEEPS) in kinds)
