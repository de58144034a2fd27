"""The config: one YAML file describes a model's whole life.

Validated once, at the edge (`load_config`); stage code reads typed fields and never
`cfg.get(key, default)`. Every problem is reported at once with its dotted path, what is
allowed, what was given and how to fix it.
"""

from __future__ import annotations

import builtins
import difflib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ColumnType = Literal["numeric", "categorical", "binary", "text", "datetime", "image", "sequence", "ignore"]
MissingStrategy = Literal["drop", "mean", "median", "mode", "constant", "flag", "unknown"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


# ----------------------------------------------------------------------------------------- data
class MissingColumn(Section):
    strategy: MissingStrategy
    """What to do with a missing value in this column."""
    value: Any = None
    """The fill value for `strategy: constant`."""

    @model_validator(mode="after")
    def _constant_needs_value(self) -> MissingColumn:
        if self.strategy == "constant" and self.value is None:
            raise ValueError("strategy 'constant' needs a `value`; add e.g. `value: 0`")
        return self


class CleanConfig(Section):
    numeric_missing: MissingStrategy = "median"
    """Default strategy for missing numeric values (drop, mean, median, mode, constant needs a column entry, flag = median plus a 0/1 column)."""
    categorical_missing: Literal["drop", "mode", "unknown"] = "unknown"
    """Default for missing categorical values: 'unknown' keeps them as their own bucket, 'mode' fills the most
    frequent training value, 'drop' drops the row. (Per column also: constant.) Missing text is empty text."""
    columns: dict[str, MissingStrategy | MissingColumn] = {}
    """Per-column missing-value strategy, overriding the defaults: `{age: mean, city: {strategy: constant, value: none}}`."""
    outliers: Literal["none", "iqr", "zscore"] = "none"
    """Clip numeric outliers (fitted on the training split only)."""
    outlier_threshold: float | None = Field(None, gt=0)
    """IQR multiplier (default 1.5) or z-score limit (default 3.0)."""
    duplicates: bool = True
    """Drop exact duplicate rows (counted in the profile)."""

    def missing_strategy(self, column: str, numeric: bool) -> tuple[str, Any]:
        """(strategy, constant value) for a column's missing values: its entry in `columns`, else the numeric or
        categorical default. The one copy of this rule: training's row drops and imputation, and
        `foundry data clean`, all ask here (the clean copy once ignored `columns` and imputed otherwise)."""
        spec = self.columns.get(column)
        if isinstance(spec, MissingColumn):
            return spec.strategy, spec.value
        if spec is not None:
            return spec, None
        return (self.numeric_missing if numeric else self.categorical_missing), None

    @field_validator("numeric_missing")
    @classmethod
    def _no_bare_constant(cls, v: str) -> str:
        if v == "constant":
            raise ValueError("a default cannot be 'constant' (no value); set it per column in `columns`")
        if v == "unknown":
            raise ValueError("'unknown' is a bucket for categorical columns; numeric columns take drop, mean, median, mode or flag")
        return v


class SplitConfig(Section):
    method: Literal["auto", "random", "stratified", "group", "time"] = "auto"
    """auto = stratified for classification, random for regression."""
    test: float = Field(0.2, ge=0.0, lt=1.0)
    """Fraction held out for the test split (ignored with `data.test_path` or `column`)."""
    val: float = Field(0.1, ge=0.0, lt=1.0)
    """Fraction of the remaining rows used for validation (early stopping, best checkpoint)."""
    group_column: str | None = None
    """For method 'group': rows sharing this column's value stay in one split."""
    time_column: str | None = None
    """For method 'time': the oldest rows train, the newest test."""
    column: str | None = None
    """An explicit split column whose values are train / val / test."""

    @model_validator(mode="after")
    def _needs(self) -> SplitConfig:
        if self.method == "group" and not self.group_column:
            raise ValueError("method 'group' needs `group_column`")
        if self.method == "time" and not self.time_column:
            raise ValueError("method 'time' needs `time_column`")
        if self.test + self.val >= 1.0:
            raise ValueError(f"test + val must be < 1, got {self.test} + {self.val}")
        return self


class TextConfig(Section):
    tokenizer: str = "wordpiece"
    """'wordpiece' or 'bpe' (trained on the training split; both split Chinese without spaces), or a tokenizer directory."""
    vocab_size: int = Field(8000, gt=10)
    """Vocabulary size for a trained tokenizer."""
    min_frequency: int = Field(2, ge=1)
    """A token must occur this often in the training split to enter the vocabulary."""
    max_length: int = Field(128, gt=1)
    """Longer texts are truncated (counted in the profile and the report)."""
    lowercase: bool = True
    """A trained tokenizer (wordpiece, bpe) lowercases text first; a pretrained model keeps its own tokenizer's rule."""
    pair: tuple[str, str] | None = None
    """Sentence-pair input: two text columns encoded together as one sequence ([CLS] a [SEP] b [SEP] with a
    BERT tokenizer, segment ids set), as for paraphrase, entailment or question-answer matching."""


class ImageConfig(Section):
    size: tuple[int, int] = (32, 32)
    """Images are resized to (height, width)."""
    channels: Literal[1, 3] = 3
    """1 = grayscale, 3 = RGB."""


class SequenceConfig(Section):
    group_column: str
    """The column that identifies one series (an engine, a sensor)."""
    order_column: str
    """The column that orders rows within a series (time, cycle)."""
    window: int = Field(30, gt=0)
    """Rows per window; the target is the last row's."""
    stride: int = Field(1, gt=0)
    """Rows between the ends of consecutive windows of a series (1 = every window)."""
    features: list[str] | None = None
    """Numeric columns fed to the model; default: every numeric column but the group, order and target."""
    test_windows: Literal["all", "last"] = "all"
    """'last' scores only each test series' final window (as C-MAPSS is scored)."""


class AugmentConfig(Section):
    image_flip: bool = False
    """Random horizontal flips of training images."""
    image_crop_padding: int = Field(0, ge=0)
    """Pad by this many pixels, then crop back at a random offset."""
    text_token_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Drop each training token with this probability."""
    text_swap: float = Field(0.0, ge=0.0, lt=1.0)
    """Swap each training token with the next one with this probability (the first and last token of a text,
    [CLS]/[SEP] for a pretrained tokenizer, stay; each character is a token for Chinese)."""
    text_delete: float = Field(0.0, ge=0.0, lt=1.0)
    """Delete each training token with this probability (the text gets shorter; first and last token stay)."""
    tabular_noise: float = Field(0.0, ge=0.0)
    """Gaussian noise (in standard deviations) added to scaled numeric training features."""
    sequence_jitter: float = Field(0.0, ge=0.0)
    """Time series: Gaussian noise (in standard deviations of the scaled features) added to every step of a window."""
    sequence_scaling: float = Field(0.0, ge=0.0)
    """Time series: each window's features are multiplied by a factor drawn from N(1, this)."""
    sequence_slice: float = Field(0.0, ge=0.0, lt=1.0)
    """Time series, window slicing: cut this fraction off each window (a random stretch of the rest is kept)
    and stretch what is left back to the window's length."""
    sequence_warp: float = Field(0.0, ge=0.0)
    """Time series, time warping: the speed of time follows a smooth random curve with knots from N(1, this)."""
    image_rotation: float = Field(0.0, ge=0.0, le=180.0)
    """Rotate each training image by a random angle in [-this, this] degrees."""
    image_color_jitter: float = Field(0.0, ge=0.0, lt=1.0)
    """Brightness, contrast and saturation each scaled by a random factor in [1 - this, 1 + this]."""
    text_char_noise: float = Field(0.0, ge=0.0, lt=1.0)
    """Typos: each character of a training text is, with this probability, deleted, replaced by another character
    of the text, doubled or swapped with the next, and the text is tokenized again (single texts, not pairs)."""
    text_synonym: float = Field(0.0, ge=0.0, lt=1.0)
    """Replace each word (letters only, 3+ characters, or one Chinese character) with probability this by one of
    its nearest neighbours in a pretrained model's input embedding table (synonym_model); no word lists."""
    text_insert: float = Field(0.0, ge=0.0, lt=1.0)
    """After each word, with probability this, insert one of its embedding neighbours (up to data.text.max_length
    tokens)."""
    synonym_model: str = "minilm"
    """Whose input embeddings define neighbours: 'minilm' (the embedded all-MiniLM-L6-v2) or a local model
    directory. Only words in both that model's and the text tokenizer's vocabularies take part."""
    synonym_neighbours: int = Field(5, ge=1)
    """Candidates per word for text_synonym and text_insert."""
    mixup: float = Field(0.0, ge=0.0)
    """mixup's Beta(this, this): blend each training example's continuous inputs (numeric, image, sequence) and
    its loss with another example's. 0 = off; 0.2-0.4 is usual."""
    oversample: Literal["smote", "borderline", "adasyn"] | None = None
    """Tables, classification: synthesise minority-class training rows before training (imbalanced-learn):
    SMOTE (SMOTE-NC with categorical columns), borderline SMOTE, or ADASYN. Validation and test rows are never
    touched."""
    oversample_ratio: float = Field(1.0, gt=0.0, le=1.0)
    """Each class is oversampled up to this fraction of the largest class's count."""
    oversample_neighbours: int = Field(5, ge=1)
    """k nearest neighbours SMOTE interpolates between."""


class AuditConfig(Section):
    near_threshold: float = Field(0.9, gt=0, le=1)
    """Two texts are near duplicates at this cosine similarity of their character 3-5-gram TF-IDF vectors (after
    lowercasing and stripping punctuation); a held-out text that differs from a training text by one word (5+
    words) counts too. Tables: rows equal after rounding numbers to 4 significant digits and normalising text."""
    label_issues: bool = True
    """Look for likely label errors (classification): confident learning (cleanlab) on out-of-fold probabilities
    of a quick model: logistic regression on MiniLM embeddings plus character and word TF-IDF for text,
    gradient boosting for tables."""
    label_folds: int = Field(5, ge=2)
    """Folds for those out-of-fold probabilities."""


class FixesConfig(Section):
    """What `foundry data clean` does to a copy of the data (the training pipeline's own cleaning is data.clean)."""

    duplicates: Literal["keep", "drop"] = "drop"
    """Exact duplicate rows: keep the first, drop the rest."""
    near_duplicates: Literal["keep", "drop"] = "keep"
    """Near-duplicate training rows (data.audit.near_threshold): keep the first of each group, drop the rest."""
    leakage: Literal["keep", "drop"] = "drop"
    """A training row that repeats (or nearly repeats) a held-out row: drop the training copy (the held-out row
    stays, so scores remain comparable)."""
    label_errors: Literal["keep", "drop", "relabel"] = "keep"
    """Rows flagged as likely label errors with at least `label_error_confidence`: drop them, or give them the
    suggested label."""
    label_error_confidence: float = Field(0.9, ge=0, le=1)
    """The out-of-fold probability of the suggested label a flagged row needs before it is dropped or relabelled."""
    missing: Literal["keep", "impute"] = "keep"
    """impute = fill missing values with data.clean's strategies (numeric_missing, categorical mode), fitted on
    the training rows."""
    outliers: Literal["keep", "clip"] = "keep"
    """clip = clip numeric values to data.clean.outliers' bounds (iqr by default), fitted on the training rows."""


class DataConfig(Section):
    path: str | None = None
    """A CSV/TSV/Parquet/JSONL file, or a folder of class sub-folders of text or image files. Relative to the config file."""
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl", "text_folder", "image_folder"] = "auto"
    """auto = from the file's extension, or a folder's contents."""
    target: str = "label"
    """The column to predict (for folders: 'label')."""
    task: Literal["auto", "classification", "regression", "causal_lm"] = "auto"
    """auto = classification for text/categorical/binary targets or few distinct integers. causal_lm = fine-tune a
    decoder (GPT-2 style, model.type pretrained) on instruction/response pairs: `prompt` is the instruction column,
    `target` the response column, and the loss is computed on the response tokens only."""
    prompt: str | None = None
    """causal_lm: the instruction (prompt) column."""
    prompt_template: str = "{prompt}\n"
    """causal_lm: how an instruction is shown to the model; the response follows it directly, then end-of-text."""
    test_path: str | None = None
    """A separate test file with the same columns."""
    columns: list[str] | None = None
    """Column names for a file without a header row."""
    delimiter: str | None = None
    """Field separator; detected when absent."""
    encoding: str | None = None
    """File encoding (e.g. gb18030); detected when absent (UTF-8, UTF-8 with BOM)."""
    id_column: str | None = None
    """A row identifier: kept in predictions, never a feature."""
    target_cap: float | None = None
    """Regression only: cap training and validation targets at this value (a piecewise-linear remaining-life
    target, as usual for C-MAPSS); test targets keep their true values."""
    types: dict[str, ColumnType] = {}
    """Override inferred column types: `{zip: categorical, notes: text, old: ignore}`."""
    bad_images: Literal["skip", "error"] = "skip"
    """An unreadable image is skipped and reported, or stops the run."""
    clean: CleanConfig = CleanConfig()
    split: SplitConfig = SplitConfig()
    text: TextConfig = TextConfig()
    image: ImageConfig = ImageConfig()
    sequence: SequenceConfig | None = None
    """Turn time-ordered rows into windows (for RNN/Transformer models)."""
    augment: AugmentConfig = AugmentConfig()
    audit: AuditConfig = AuditConfig()
    """What `foundry data profile` looks for (every `foundry train` writes the same report, without label issues)."""
    fixes: FixesConfig = FixesConfig()
    """What `foundry data clean` changes in its copy of the data."""


# ---------------------------------------------------------------------------------------- model
class MLPConfig(Section):
    type: Literal["mlp"] = "mlp"
    hidden: list[int] = [128, 64]
    """Widths of the hidden layers after the per-feature encodings are concatenated."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    activation: Literal["relu", "gelu", "silu"] = "relu"
    text_embedding_dim: int = Field(64, gt=0)
    """Width of the bag-of-tokens text encoding."""


class CNNConfig(Section):
    type: Literal["cnn"] = "cnn"
    channels: list[int] = [32, 64]
    """Output channels of each conv block (conv, batch norm, ReLU, 2x2 max-pool)."""
    kernel_size: int = Field(3, gt=0)
    hidden: list[int] = [128]
    """Hidden layers of the head."""
    dropout: float = Field(0.2, ge=0.0, lt=1.0)


class RNNConfig(Section):
    type: Literal["rnn"] = "rnn"
    cell: Literal["lstm", "gru"] = "lstm"
    """The recurrent cell."""
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(1, gt=0)
    bidirectional: bool = False
    embedding_dim: int = Field(128, gt=0)
    """Token embedding width (text inputs)."""
    hidden: list[int] = []
    """Hidden layers of the head."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class TransformerConfig(Section):
    type: Literal["transformer"] = "transformer"
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(2, gt=0)
    num_heads: int = Field(4, gt=0)
    intermediate_size: int = Field(256, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    pooling: Literal["cls", "mean"] = "mean"
    """How token vectors become one vector: the first token's ([CLS]) or the mean over real (unpadded) tokens."""
    hidden: list[int] = []
    """Hidden layers of the head."""

    @model_validator(mode="after")
    def _heads_divide(self) -> TransformerConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        return self


class PretrainedConfig(Section):
    type: Literal["pretrained"] = "pretrained"
    path: str = "minilm"
    """A local Hugging Face model directory (config.json, *.safetensors, tokenizer.json), relative to the config
    file, or 'minilm' for the embedded all-MiniLM-L6-v2. Its tokenizer is used for the text column."""
    finetune: Literal["full", "linear_probe", "lora", "adalora", "ia3", "prefix", "prompt"] = "lora"
    """full = every weight trains; linear_probe = the encoder is frozen, only the head trains (its encodings are
    computed once); lora, adalora, ia3, prefix, prompt = PEFT methods (AdaLoRA's budget update runs every optimizer
    step and its orthogonal regulariser joins the loss; prefix = learned keys/values in every layer, prompt =
    learned virtual input tokens; both work for encoders, through PEFT's feature-extraction wrapper)."""
    adapter: dict[str, Any] = {}
    """Options passed to PEFT's LoraConfig / AdaLoraConfig / IA3Config / PrefixTuningConfig / PromptTuningConfig
    (r, lora_alpha, lora_dropout, target_modules, use_rslora, use_dora; init_r, target_r, tinit, tfinal,
    orth_reg_weight; feedforward_modules; num_virtual_tokens, prefix_projection, encoder_hidden_size). Defaults:
    LoRA r=8, lora_alpha=16, lora_dropout=0.1; AdaLoRA's total_step is set from the training length; prefix and
    prompt 16 virtual tokens. PEFT validates them."""
    layers: int | None = Field(None, gt=0)
    """Keep only the first N Transformer layers of the pretrained model (the usual start of a distilled
    student); null = all."""
    freeze_layers: int = Field(0, ge=0)
    """With finetune: full, freeze the embeddings and the first N layers."""
    layer_lr_decay: float = Field(1.0, gt=0, le=1)
    """With finetune: full, layer i of N trains at lr x decay^(N + 1 - i): the embeddings slowest, the head at lr."""
    pooling: Literal["cls", "mean"] = "mean"
    """How token vectors become one vector: the first token's ([CLS]) or the mean over real (unpadded) tokens."""
    hidden: list[int] = []
    """Hidden layers of the head."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _adapter_only_for_lora(self) -> PretrainedConfig:
        if self.adapter and self.finetune in ("full", "linear_probe"):
            raise ValueError(f"`adapter` options apply to finetune: lora, adalora, ia3, prefix or prompt, not {self.finetune!r}")
        if self.freeze_layers and self.finetune != "full":
            raise ValueError("`freeze_layers` applies to finetune: full")
        if self.layer_lr_decay != 1.0 and self.finetune != "full":
            raise ValueError("`layer_lr_decay` applies to finetune: full")
        return self


ModelConfig = Annotated[Union[MLPConfig, CNNConfig, RNNConfig, TransformerConfig, PretrainedConfig],
                        Field(discriminator="type")]


# ---------------------------------------------------------------------------------------- train
class EarlyStopping(Section):
    metric: str = "val_loss"
    """Any validation metric: val_loss, val_accuracy, val_f1_macro, val_roc_auc, val_rmse, ... (an unprefixed name
    such as roc_auc means its val_ form)."""

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        return reported_metric(v, ("val_", "train_"))
    patience: int = Field(5, gt=0)
    """Epochs without improvement before stopping."""
    min_delta: float = Field(0.0, ge=0.0)
    """An epoch counts as an improvement only when it beats the best so far by more than this."""


class TrainConfig(Section):
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate (after warmup)."""
    weight_decay: float = Field(0.01, ge=0)
    """Decoupled for adamw; not applied to biases, norms and embeddings."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum."""
    epochs: int = Field(20, gt=0)
    batch_size: int = Field(64, gt=0)
    """Per process; with `--nproc N` the global batch is N times this."""
    schedule: Literal["constant", "linear", "cosine", "plateau"] = "constant"
    """Learning-rate schedule after warmup; plateau multiplies the rate by `plateau_factor` when the early-stopping
    metric has not improved for more than `plateau_patience` epochs."""
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    """Fraction of all steps with a linear warmup."""
    plateau_patience: int = Field(2, gt=0)
    """schedule: plateau: epochs without improvement that are tolerated before the rate is cut."""
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    """schedule: plateau: the rate is multiplied by this at each cut."""
    early_stopping: EarlyStopping | None = EarlyStopping()
    """Set to null to train every epoch."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the gradient norm to this value (null = off)."""
    grad_accum: int = Field(1, gt=0)
    """Accumulate gradients over this many batches per optimizer step."""
    bucket_by_length: bool = True
    """With text inputs, batch texts of similar length together (less padding, much faster)."""
    class_weights: Literal["none", "balanced"] = "none"
    """'balanced' weights the loss by inverse class frequency."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto = bf16 autocast where the CPU (AVX-512 BF16/AMX) or GPU supports it."""
    seed: int = 42
    """Seeds the split, initialisation, data order, dropout and augmentation."""


# ------------------------------------------------------------------------------------- evaluate
class CVConfig(Section):
    folds: int = Field(5, ge=2)
    """Stratified (classification) k-fold over the train+val rows; mean ± std per metric."""


class EvaluateConfig(Section):
    metrics: list[str] | None = None
    """Metrics to report; default: all for the task."""
    cv: CVConfig | None = None
    baselines: bool = True
    """Train majority/mean, linear and HistGradientBoosting baselines beside the model."""
    report: bool = True
    """Write report.html with plots."""


# ------------------------------------------------------------------------------------- compress
class PruneConfig(Section):
    method: Literal["magnitude", "structured"] = "structured"
    """structured = remove whole units so the model gets smaller and faster: hidden neurons of the head, CNN
    channels (every conv block but the last), Transformer attention heads and feed-forward units (a pretrained
    encoder's adapter is merged first); magnitude = zero the smallest weights over all layers (global L1), reported
    as sparsity: dense kernels do not get faster from zeros."""
    amount: float = Field(0.3, gt=0, lt=1)
    """Fraction removed: of the units in every prunable layer (structured), or of all weights (magnitude)."""
    finetune_epochs: int = Field(0, ge=0)
    """Epochs of fine-tuning after pruning (all remaining weights train; the source's train settings otherwise)."""
    finetune_lr: float | None = Field(None, gt=0)
    """Learning rate for that fine-tuning; default: a tenth of train.lr."""


class DistillConfig(Section):
    student: ModelConfig
    """Any model section (`{type: mlp, ...}`, `{type: pretrained, path: minilm, layers: 3, finetune: full}`); it gets
    its own preprocessor, fitted on the same training split."""
    temperature: float = Field(2.0, gt=0)
    """Softens teacher and student distributions in the distillation term (Hinton et al.)."""
    alpha: float = Field(0.5, ge=0, le=1)
    """Weight of the soft-label term: loss = alpha * T^2 * KL(teacher || student) + (1 - alpha) * cross-entropy
    (regression: alpha * MSE to the teacher + (1 - alpha) * MSE to the target)."""
    epochs: int | None = Field(None, gt=0)
    """Student epochs; default: train.epochs."""
    lr: float | None = Field(None, gt=0)
    """Student learning rate; default: train.lr."""
    init: Literal["student", "teacher"] = "student"
    """Where the student's weights start. student = as its model section builds it (a pretrained student from its
    checkpoint); teacher = from the teacher as fine-tuned (adapters merged): its embeddings, evenly spaced layers
    ending with its last (6 -> 3 keeps layers 2, 4 and 6) and its head, as DistilBERT starts. teacher needs a
    pretrained student with the teacher's model.path, fewer or as many layers, and the teacher's head shape."""

    @field_validator("student", mode="before")
    @classmethod
    def _default_family(cls, v: Any) -> Any:
        return {"type": "mlp", **v} if isinstance(v, dict) and "type" not in v else v

    @model_validator(mode="after")
    def _teacher_init_needs_pretrained(self) -> DistillConfig:
        if self.init == "teacher" and self.student.type != "pretrained":
            raise ValueError(f"init: teacher copies a pretrained teacher's layers into the student; the student is "
                             f"type '{self.student.type}' (use type: pretrained, or init: student)")
        return self


class CompressConfig(Section):
    distill: DistillConfig | None = None
    """Train a smaller student on the model's soft labels plus the true labels (first step)."""
    prune: PruneConfig | None = None
    """Prune the model (or the student), optionally fine-tuning afterwards (second step)."""
    quantize: Literal["none", "int8", "int8-static", "bf16"] = "none"
    """int8 = ONNX Runtime dynamic quantization (int8 weights, activations quantized on the fly); int8-static =
    ONNX Runtime static quantization (QDQ) calibrated on `calibration_rows` training rows; bf16 = bfloat16 weights
    run under bf16 autocast by the torch backend (no ONNX file; fast on CPUs with AVX-512 BF16 or AMX)."""
    onnx: bool = True
    """Export the result to ONNX (model/model.onnx, dynamic batch and sequence axes) and check its parity with the
    torch model; int8 needs it."""
    parity_tolerance: float = Field(1e-4, gt=0)
    """The ONNX export fails if its outputs (probabilities, or values) differ from torch's by more than this."""
    parity_rows: int = Field(256, gt=0)
    """Held-out rows used for the parity check."""
    calibration_rows: int = Field(128, gt=0)
    """Training rows that calibrate int8-static's activation ranges."""
    latency_calls: int = Field(30, gt=0)
    """Timed model calls per batch size (after 3 warm-up calls) for the latency figures."""

    @model_validator(mode="after")
    def _int8_needs_onnx(self) -> CompressConfig:
        if self.quantize in ("int8", "int8-static") and not self.onnx:
            raise ValueError(f"quantize: {self.quantize} runs in ONNX Runtime; keep onnx: true")
        if self.quantize == "bf16" and self.onnx:
            raise ValueError("quantize: bf16 is for the torch backend (ONNX Runtime on CPU has no bf16 matmul); "
                             "set onnx: false")
        return self


# --------------------------------------------------------------------------------------- track
class TrackConfig(Section):
    backend: Literal["none", "mlflow"] = "none"
    """mlflow = log parameters, per-epoch metrics, test metrics, the report and the model to MLflow (the
    `mlflow` extra); `track: mlflow` is short for `track: {backend: mlflow}`. TensorBoard logs are always written."""
    uri: str | None = None
    """MLflow tracking URI; default a local SQLite file `<output_dir>/mlflow.db` (artifacts beside it).
    Any server URI works (http://host:5000)."""
    experiment: str | None = None
    """MLflow experiment; default: the config's name."""
    registry_name: str | None = None
    """Register the trained model in MLflow's model registry under this name (a tuned study registers its
    refit model)."""


# ---------------------------------------------------------------------------------------- tune
class SpaceParam(Section):
    """One searched config field: exactly one of uniform, log_uniform, int, choice."""

    uniform: tuple[float, float] | None = None
    """A float drawn between [low, high]."""
    log_uniform: tuple[float, float] | None = None
    """A float drawn between [low, high] on a log scale (both > 0)."""
    int_: tuple[builtins.int, builtins.int] | None = Field(None, alias="int")
    """An integer between [low, high] inclusive (`int: [16, 128]`)."""
    choice: list[Any] | None = None
    """Any YAML values, lists included (`choice: [[64], [128, 64]]`)."""
    step: float | None = Field(None, gt=0)
    """A step for uniform/int ranges (grid search expands stepped ranges)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_kind(self) -> SpaceParam:
        kinds = [k for k in ("uniform", "log_uniform", "int_", "choice") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of uniform, log_uniform, int, choice"
                             + (f" (found {', '.join(k.rstrip('_') for k in kinds)})" if kinds else ""))
        if self.choice is not None and not self.choice:
            raise ValueError("choice: needs at least one value")
        for k in ("uniform", "log_uniform", "int_"):
            r = getattr(self, k)
            if r is not None and r[0] > r[1]:
                raise ValueError(f"{k.rstrip('_')}: low {r[0]} > high {r[1]}")
        if self.log_uniform is not None and self.log_uniform[0] <= 0:
            raise ValueError(f"log_uniform: bounds must be > 0, got {list(self.log_uniform)}")
        if self.step is not None and self.uniform is None and self.int_ is None:
            raise ValueError("step applies to uniform and int ranges")
        return self

    @property
    def kind(self) -> str:
        return next(k.rstrip("_") for k in ("uniform", "log_uniform", "int_", "choice") if getattr(self, k) is not None)

    def grid(self) -> list[Any] | None:
        """The values grid search tries: the choices, or a stepped range; None when the range is continuous."""
        if self.choice is not None:
            return list(self.choice)
        if self.int_ is not None:
            return list(range(self.int_[0], self.int_[1] + 1, builtins.int(self.step or 1)))
        if self.uniform is not None and self.step is not None:
            n = builtins.int(round((self.uniform[1] - self.uniform[0]) / self.step))
            return [round(self.uniform[0] + i * self.step, 12) for i in range(n + 1)]
        return None


SAMPLERS = ("grid", "random", "tpe", "cmaes", "gp", "qmc", "bruteforce")


class TuneConfig(Section):
    sampler: Literal["grid", "random", "tpe", "cmaes", "gp", "qmc", "bruteforce"] = "tpe"
    """Optuna's sampler: grid (choices and stepped ranges), random, tpe (Bayesian), cmaes, gp, qmc, bruteforce."""
    sampler_options: dict[str, Any] = {}
    """Passed to the Optuna sampler (e.g. `{n_startup_trials: 5}` for tpe); `seed` comes from tune.seed."""
    trials: int = Field(20, gt=0)
    """Trials in the study (all workers together; a resumed study runs only the missing ones)."""
    timeout: float | None = Field(None, gt=0)
    """Stop starting new trials after this many seconds (per worker)."""
    metric: str = "val_loss"
    """The validation metric to optimise, as the run reports it (val_loss, val_accuracy, val_roc_auc, val_rmse,
    ...; the value at the run's best epoch), or `cv_<metric>` (e.g. cv_roc_auc) for the k-fold mean when
    evaluate.cv is set."""
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    """auto = minimize losses and errors, maximize the rest."""
    seed: int = 0
    pruner: Literal["none", "median", "hyperband"] = "none"
    """Stop unpromising trials early, fed the validation metric after every epoch."""
    space: dict[str, SpaceParam]
    """Dotted config paths and their ranges: `{train.lr: {log_uniform: [1e-4, 1e-1]}, model.hidden: {choice: [[64], [128, 64]]}}`."""

    @model_validator(mode="after")
    def _space(self) -> TuneConfig:
        if not self.space:
            raise ValueError("space is empty; add at least one dotted config path, "
                             "e.g. space: {train.lr: {log_uniform: [1.0e-4, 1.0e-1]}}")
        if self.sampler in ("grid", "bruteforce"):
            continuous = [k for k, p in self.space.items() if p.grid() is None]
            if continuous:
                raise ValueError(f"{self.sampler} search needs choice or stepped ranges (add step:); "
                                 f"continuous: {', '.join(continuous)}")
        return self

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        if v.startswith("test_"):
            raise ValueError(f"'{v}': tuning on the test split leaks it into the model choice; "
                             "use a val_ metric or cv_ with evaluate.cv")
        return reported_metric(v, ("val_", "cv_"))


class Config(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """The run's name: runs go to `<output_dir>/<name>/<run-id>/`."""
    output_dir: str = "runs"
    """Where runs go, relative to the current directory (data paths are relative to the config file)."""
    data: DataConfig
    model: ModelConfig = MLPConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    tune: TuneConfig | None = None
    """Hyperparameter search (`foundry tune`)."""
    track: TrackConfig = TrackConfig()
    """Experiment tracking beyond the Run directory."""
    compress: CompressConfig | None = None
    """Compression (`foundry compress RUN`): distill, prune, quantize, export to ONNX."""

    @field_validator("track", mode="before")
    @classmethod
    def _track_shorthand(cls, v: Any) -> Any:
        return {"backend": v} if isinstance(v, str) else v
    base_dir: str = Field(".", exclude=True)
    """(set by load_config) the config file's folder; relative paths resolve against it."""

    @model_validator(mode="after")
    def _model_path_from_config_dir(self) -> Config:
        if isinstance(self.model, PretrainedConfig) and self.model.path != "minilm" and not Path(self.model.path).is_absolute():
            self.model.path = str((Path(self.base_dir) / self.model.path).resolve())
        return self

    @model_validator(mode="after")
    def _tune_paths_exist(self) -> Config:
        if self.tune is None:
            return self
        flat = dotted_paths(self.model_dump(mode="json", exclude={"tune", "base_dir"}))
        for key in self.tune.space:
            if key.split(".")[0] in ("tune", "name", "output_dir"):
                raise ValueError(f"tune.space.{key}: cannot search over {key}")
            if key in flat or any(key.startswith(p + ".") for p in FREE_FORM):
                continue
            close = difflib.get_close_matches(key, list(flat), n=1, cutoff=0.6)
            raise ValueError(f"tune.space: '{key}' is not a field of this config"
                             + (f"; did you mean '{close[0]}'?" if close else ""))
        if self.tune.metric.startswith("cv_") and self.evaluate.cv is None:
            raise ValueError(f"tune.metric '{self.tune.metric}' is a k-fold mean; set evaluate.cv (e.g. {{folds: 5}})")
        return self

    @model_validator(mode="after")
    def _causal_lm_fits(self) -> Config:
        d = self.data
        if d.task != "causal_lm":
            if d.prompt is not None:
                raise ValueError("data.prompt applies to data.task: causal_lm")
            return self
        if d.prompt is None:
            raise ValueError("data.task causal_lm needs data.prompt (the instruction column); data.target is the response")
        if self.model.type != "pretrained":
            raise ValueError(f"data.task causal_lm needs model.type: pretrained (a local decoder), not {self.model.type!r}")
        if self.evaluate.cv is not None or self.evaluate.metrics is not None:
            raise ValueError("data.task causal_lm reports loss and perplexity; evaluate.cv and evaluate.metrics do not apply")
        return self

    def resolve_path(self, path: str | None) -> Path | None:
        if path is None:
            return None
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p)


FREE_FORM = ("model.adapter", "data.types", "data.clean.columns")  # mappings whose keys are the user's


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {dotted.path: leaf value} (empty mappings are leaves)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def dotted_paths(d: dict, prefix: str = "") -> dict[str, str]:
    """Every dotted path of a nested dict -> 'dict' for sections and free-form mappings, else 'value'."""
    out = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        out[path] = "dict" if isinstance(v, dict) else "value"
        if isinstance(v, dict):
            out.update(dotted_paths(v, path + "."))
    return out


# metric names whose lower values are better (a validation or training metric carries a val_/train_ prefix)
LOWER_IS_BETTER = ("loss", "log_loss", "mae", "rmse", "mse", "perplexity")


def reported_metric(name: str, prefixes: tuple[str, ...]) -> str:
    """A metric name as runs report it: `roc_auc` (no prefix) means `val_roc_auc`, aliases resolve (`val_f1` ->
    `val_f1_macro`); a name no run reports is refused with the list, before any training starts."""
    from .evaluate.metrics import ALIASES, CLASSIFICATION, REGRESSION

    known = ["loss", *CLASSIFICATION, *REGRESSION, "perplexity"]
    prefix = next((p for p in prefixes if name.startswith(p)), "")
    base = ALIASES.get(name.removeprefix(prefix), name.removeprefix(prefix))
    if base in known and not (prefix == "cv_" and base in ("loss", "perplexity")):
        return (prefix or prefixes[0]) + base
    close = difflib.get_close_matches(base, known, n=1, cutoff=0.6)
    raise ValueError(f"'{name}' is not a metric runs report; use {' or '.join(p + '<metric>' for p in prefixes)} "
                     f"with one of: {', '.join(known)}" + (f" (did you mean '{prefixes[0]}{close[0]}'?)" if close else ""))


def metric_mode(metric: str) -> str:
    """"min" or "max": which way `metric` improves (early stopping, the best epoch, a study's direction)."""
    return "min" if metric.removeprefix("val_").removeprefix("train_") in LOWER_IS_BETTER else "max"


# --------------------------------------------------------------------------------------- errors
class ConfigError(ValueError):
    """Every problem in a config, each as `dotted.path: message`."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def _fields_at(loc: tuple) -> list[str]:
    """The valid keys of the section at `loc` (used to suggest a fix for a typo)."""
    cls: Any = Config
    for part in loc:
        if isinstance(part, int) or cls is None:
            return []
        if part in _MODEL_TYPES:
            cls = _MODEL_TYPES[part]
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = _section_class(field.annotation)
    return list(getattr(cls, "model_fields", {}))


def _section_class(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_class(arg)
        if found is not None:
            return found
    return None


_MODEL_TYPES = {"mlp": MLPConfig, "cnn": CNNConfig, "rnn": RNNConfig, "transformer": TransformerConfig,
                "pretrained": PretrainedConfig}


def _describe(err: dict) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _MODEL_TYPES and err["loc"][0] == "model"))
    path = ".".join(str(p) for p in loc) or "(top level)"
    given = err.get("input")
    given_s = json.dumps(given, default=str) if not isinstance(given, dict) else "a mapping"
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = [k for k in _fields_at(tuple(err["loc"][:-1])) if k != "base_dir"]
        close = difflib.get_close_matches(str(err["loc"][-1]), valid, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(valid)}"
        return f"{path}: unknown key; {hint}"
    if kind == "missing":
        return f"{path}: required, but missing; add it to the config"
    if kind == "literal_error":
        allowed = err.get("ctx", {}).get("expected", "")
        close = difflib.get_close_matches(str(given), [a.strip(" '") for a in allowed.replace(" or ", ",").split(",")], n=1)
        fix = f"; did you mean '{close[0]}'?" if close else ""
        return f"{path}: must be one of {allowed}, got {given_s}{fix}"
    if kind == "union_tag_invalid":
        return f"{path}: must be one of {', '.join(_MODEL_TYPES)}, got {json.dumps(err.get('ctx', {}).get('tag'))}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(err.get("ctx", {}).values()), "?")
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"{path}: must be {op} {bound}, got {given_s}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{path}: {msg}, got {given_s}"


# -------------------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[str, Any]:
    """`train.lr=3e-4` -> ("train.lr", 0.0003); the value is read as YAML (lists, numbers, null)."""
    if "=" not in text:
        raise ConfigError([f"--set {text}: expected PATH=VALUE, e.g. --set train.lr=3e-4"], "overrides")
    key, value = text.split("=", 1)
    parsed = yaml.safe_load(value) if value.strip() else ""
    if isinstance(parsed, str):  # YAML 1.1 reads 3e-4 as a string; be kind
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip(), parsed


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Set each dotted path in a copy of `raw`, creating sections as needed."""
    out = json.loads(json.dumps(raw, default=str))
    for dotted, value in overrides.items():
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def _yaml_floats(raw: Any) -> Any:
    """YAML 1.1 reads `1e-3` (no dot) as a string; turn such strings back into numbers."""
    if isinstance(raw, dict):
        return {k: _yaml_floats(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_yaml_floats(v) for v in raw]
    if isinstance(raw, str) and any(c in raw for c in "eE"):
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


def validate_config(raw: dict, base_dir: str | Path = ".", source: str = "config",
                    overrides: dict[str, Any] | None = None) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError([f"(top level): expected a mapping of sections, got {type(raw).__name__}"], source)
    raw = _yaml_floats(apply_overrides(raw, overrides or {}))
    raw = {**raw, "base_dir": str(base_dir)}
    if isinstance(raw.get("model"), dict) and "type" not in raw["model"]:
        raw["model"] = {"type": "mlp", **raw["model"]}  # the documented default family
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()], source) from None


def load_config(path: str | Path | dict, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """Read, override and validate a config; raise ConfigError listing every problem."""
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)
    if isinstance(path, dict):
        return validate_config(path, ".", "config", overrides)
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"{p}: no such config file"], str(p))
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(p)) from None
    return validate_config(raw or {}, p.resolve().parent, str(p), overrides)


def run_config(run: Any) -> Config:
    """The resolved config a run recorded (`<run>/config.yaml`, every default filled in, paths absolute); `run` is a
    Run or its directory."""
    path = Path(getattr(run, "path", run)) / "config.yaml"
    return load_config(yaml.safe_load(path.read_text(encoding="utf-8")))


def config_to_dict(cfg: Config) -> dict:
    """The resolved config with every default filled in (paths made absolute)."""
    d = cfg.model_dump(mode="json")
    for key in ("path", "test_path"):
        if d["data"].get(key):
            d["data"][key] = str(cfg.resolve_path(d["data"][key]).resolve())
    return d


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)


def json_schema() -> dict:
    schema = Config.model_json_schema()
    schema.get("properties", {}).pop("base_dir", None)
    return schema


def reference_markdown() -> str:
    """The config reference (docs/config.md), generated from the schema's field docstrings."""
    lines = ["# Config reference", "", "Generated by `foundry config reference` from the schema; do not edit by hand.", ""]

    def walk(cls: type[BaseModel], prefix: str) -> None:
        rows, subs = [], []
        for name, field in cls.model_fields.items():
            if name == "base_dir":
                continue
            sub = _section_class(field.annotation)
            if sub is not None and name != "model":
                subs.append((sub, f"{prefix}{name}"))
            default = field.get_default(call_default_factory=True)
            default_s = "required" if field.is_required() else json.dumps(
                default.model_dump(mode="json") if isinstance(default, BaseModel) else default, default=str)
            if len(default_s) > 40:
                default_s = "(section)"
            rows.append(f"| `{prefix}{field.alias or name}` | {default_s} | {_one_line(field.description)} |")
        lines.extend([f"## `{prefix.rstrip('.') or 'top level'}`", "", "| key | default | meaning |", "|---|---|---|", *rows, ""])
        for sub, path in subs:
            walk(sub, path + ".")

    walk(Config, "")
    for name, cls in _MODEL_TYPES.items():
        lines.append(f"## `model` with `type: {name}`")
        lines.extend(["", "| key | default | meaning |", "|---|---|---|"])
        for fname, field in cls.model_fields.items():
            lines.append(f"| `model.{fname}` | {json.dumps(field.get_default(), default=str)} | {_one_line(field.description)} |")
        lines.append("")
    return "\n".join(lines)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "/")
