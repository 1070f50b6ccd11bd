"""TrainConfig: every setting of a run, checked on construction, stored in config.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from embtool.errors import BadInput

DEVICES = ("auto", "cpu", "cuda")
AMP_CHOICES = ("auto", "bf16", "off")


@dataclass(frozen=True)
class TaskDefaults:
    """The paper's Table 5 settings for a task (and its A.2 learning rate)."""

    kind: str  # "translation" or "classification"
    epochs: int
    batch_size: int
    lr: float
    min_freq: int
    n_classes: int = 0


# Table 5 (epochs, batch size) and A.2 (lr 2e-4 translation, 1e-4 otherwise). Multi30k's batch is
# 64 with GloVe, 128 with mBERT, 96 with mT5; 128 is the common case. MNLI: 9 epochs with GloVe.
TASK_DEFAULTS: dict[str, TaskDefaults] = {
    "multi30k": TaskDefaults("translation", 20, 128, 2e-4, 2),
    "iwslt2017": TaskDefaults("translation", 20, 128, 2e-4, 5),
    "sst2": TaskDefaults("classification", 5, 128, 1e-4, 2, n_classes=2),
    "mnli": TaskDefaults("classification", 10, 128, 1e-4, 2, n_classes=3),
    "files": TaskDefaults("translation", 20, 128, 2e-4, 2),  # local parallel files (--src/--tgt)
}


@dataclass
class TrainConfig:
    # --- what to learn
    task: str = "multi30k"  # multi30k | iwslt2017 | sst2 | mnli | files (local --src/--tgt pairs)
    data_dir: str | None = None  # local copy of the task (../shared/data layouts); None: EMBTOOL_DATA_DIR or the hub
    src: str | None = None  # files: training source sentences, one a line
    tgt: str | None = None  # files: training target sentences, line i translates src line i
    val_src: str | None = None  # files: validation pairs (default: the last 5% of the training pairs)
    val_tgt: str | None = None
    test_src: str | None = None  # files: test pairs (default: the validation pairs)
    test_tgt: str | None = None
    src_lang: str = "de"  # translation source language (spacy:<lang> when no table says otherwise)
    tgt_lang: str = "en"  # translation target language
    # --- embeddings and vocabulary
    emb: str | None = None  # one table for both sides (looked up by token string)
    src_emb: str | None = None  # table for the encoder side
    tgt_emb: str | None = None  # table for the decoder side
    tokenizer: str | None = None  # overrides the tables' tokenizers on both sides
    min_freq: int = 0  # vocabulary min count; 0: the task's (2, or 5 for iwslt2017)
    missing: str = "normal"  # fill for tokens a table lacks: normal (found rows' mean, σ) | xavier | zero | mean
    # --- model (the resolved ModelConfig is stored beside this in config.json)
    d_model: int = 0  # 0: the table's D, or 512 without a table
    n_heads: int = 0  # 0: 8, or the largest count ≤ 10 that divides D
    n_layers: int = 3  # per side
    d_ff: int = 0  # 0: 4·D
    dropout: float = 0.1  # embeddings, FFN and sub-layer outputs (A.2)
    attn_dropout: float = 0.0  # attention weights (Vaswani et al.: none; nn.Transformer: same as dropout)
    posenc: bool = True  # False: --no-posenc (Table 3)
    freeze_emb: bool = False  # --freeze-emb (Table 3)
    tie_output: bool = False  # share the decoder's input embedding with the output projection
    # --- optimisation
    seed: int = 0
    epochs: int = 0  # 0: Table 5's for the task
    batch_size: int = 0  # sentence pairs per step; 0: Table 5's
    max_tokens: int = 0  # >0: length-bucketed batches of at most this many padded tokens (else random batches)
    lr: float = 0.0  # 0: 2e-4 translation, 1e-4 classification (A.2)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-9
    clip_norm: float = 0.0  # >0: clip the gradient norm
    max_train_examples: int = 0  # >0: the first N training examples only (quick runs)
    max_eval_examples: int = 0  # >0: the first N validation and test examples only
    max_len: int = 256  # longer training examples are skipped; longer eval inputs are cut
    beam: int = 1  # test decoding: 1 greedy, K > 1 beam search
    # --- where and how
    out: str | None = None  # run folder; None: runs/<task>-<table>-s<seed>
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # bf16 autocast: auto (CUDA, or CPUs with native bf16) | bf16 | off
    compile: bool = False  # torch.compile the model (CUDA)
    threads: int = 0  # >0: torch.set_num_threads
    resume: bool = False  # continue the run in `out` from its last completed epoch

    def __post_init__(self) -> None:
        if self.task not in TASK_DEFAULTS:
            raise BadInput(f"unknown task {self.task!r}; valid choices: {list(TASK_DEFAULTS)}")
        if self.device not in DEVICES:
            raise BadInput(f"invalid --device {self.device!r}; valid choices: {list(DEVICES)}")
        if self.amp not in AMP_CHOICES:
            raise BadInput(f"invalid --amp {self.amp!r}; valid choices: {list(AMP_CHOICES)}")
        missing_choices = ("normal", "xavier", "zero", "mean")
        if self.missing not in missing_choices:
            raise BadInput(f"invalid --missing {self.missing!r}; valid choices: {list(missing_choices)}")
        if self.emb and (self.src_emb or self.tgt_emb):
            raise BadInput("give --emb (both sides) or --src-emb/--tgt-emb, not both")
        if self.kind == "classification" and self.tgt_emb:
            raise BadInput(f"--tgt-emb: {self.task} is a classification task and has no target side")
        if self.task == "files" and not (self.src and self.tgt):
            raise BadInput("task files needs --src FILE and --tgt FILE (parallel sentences)")
        for name in ("epochs", "batch_size", "max_tokens", "min_freq", "max_train_examples",
                     "max_eval_examples", "d_model", "n_heads", "d_ff", "threads"):
            if getattr(self, name) < 0:
                raise BadInput(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")
        if self.n_layers < 1:
            raise BadInput(f"--layers must be at least 1, got {self.n_layers}")
        if self.beam < 1:
            raise BadInput(f"--beam must be at least 1, got {self.beam}")
        if self.lr < 0 or self.clip_norm < 0:
            raise BadInput("--lr and --clip-norm must not be negative")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.attn_dropout < 1.0:
            raise BadInput(f"--dropout and --attn-dropout must be in [0, 1), got {self.dropout}, {self.attn_dropout}")
        if self.max_len < 4:
            raise BadInput(f"--max-len must be at least 4, got {self.max_len}")
        if self.max_tokens and self.max_tokens < self.max_len:
            raise BadInput(f"--max-tokens {self.max_tokens} must be at least --max-len {self.max_len}")

    @property
    def defaults(self) -> TaskDefaults:
        return TASK_DEFAULTS[self.task]

    @property
    def kind(self) -> str:
        return TASK_DEFAULTS[self.task].kind

    def resolved(self) -> dict[str, Any]:
        """The settings with the task's defaults filled in (what config.json's "train" holds)."""
        d = asdict(self)
        t = self.defaults
        d["epochs"] = self.epochs or t.epochs
        d["batch_size"] = self.batch_size or t.batch_size
        d["lr"] = self.lr or t.lr
        d["min_freq"] = self.min_freq or t.min_freq
        return d

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
