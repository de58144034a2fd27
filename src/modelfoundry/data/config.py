"""The `data:` section: where the data is, its columns and task, cleaning, splitting, text, images, sequences,
augmentation, the quality audit and `foundry data clean`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..core.schema import Section
from .sources import SOURCES

SourceFormat = Literal[("auto", *SOURCES)]  # type: ignore[valid-type]  (built from the source registry)

ColumnType = Literal["numeric", "categorical", "binary", "text", "datetime", "image", "audio", "sequence", "smiles",
                     "ignore"]
MissingStrategy = Literal["drop", "mean", "median", "mode", "constant", "flag", "unknown"]


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
    method: Literal["auto", "random", "stratified", "group", "time", "scaffold"] = "auto"
    """auto = stratified for classification, random for regression. scaffold = molecules grouped by their Bemis-Murcko
    scaffold, whole groups assigned to one split (the large ones to training, the rest in a seeded order: chemprop's
    balanced scaffold split), so the test molecules' scaffolds are never seen in training; it reads the data's SMILES
    column."""
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
    """'wordpiece', 'bpe' (byte-level) or 'char' (one token per character), trained on the training split (all split
    Chinese without spaces), or a tokenizer directory."""
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


class MoleculeConfig(Section):
    """A SMILES column (`data.types: {smiles: smiles}`; a column named smiles is one by default): each molecule is read
    by RDKit and becomes numeric features, a Morgan count fingerprint and/or RDKit's 2-D descriptors."""

    fingerprint: Literal["morgan", "none"] = "morgan"
    """morgan = circular substructure counts (ECFP-like), as log(1 + count)."""
    radius: int = Field(2, ge=1, le=6)
    """Morgan radius (2 = ECFP4)."""
    bits: int = Field(2048, ge=64)
    """Fingerprint length (substructures hashed into this many counters)."""
    descriptors: bool = True
    """RDKit's ~200 2-D descriptors (logP, TPSA, ring and atom counts, ...), standardised and clipped to the training
    range."""

    @model_validator(mode="after")
    def _some(self) -> MoleculeConfig:
        if self.fingerprint == "none" and not self.descriptors:
            raise ValueError("fingerprint none and descriptors false leave a molecule no features")
        return self


class AudioConfig(Section):
    """An audio column (file paths, or a folder of class sub-folders of .wav/.flac/.ogg/.mp3 files): each recording is
    decoded, mixed to mono, resampled, cut or padded to `duration`, and turned into a log-mel spectrogram."""

    sample_rate: int = Field(16000, ge=1000)
    """Every recording is resampled to this rate (counted in the data profile)."""
    duration: float = Field(1.0, gt=0)
    """Seconds per example: a longer recording is cut around its loudest stretch, a shorter one padded with silence."""
    n_mels: int = Field(40, ge=4)
    """Mel bands of the spectrogram (its height)."""
    window_ms: float = Field(25.0, gt=0)
    """Analysis window (the FFT size is the next power of two)."""
    hop_ms: float = Field(10.0, gt=0)
    """Step between frames (the spectrogram's width is duration / hop + 1)."""
    fmin: float = Field(20.0, ge=0)
    """Lowest frequency of the mel bands (Hz)."""
    fmax: float | None = Field(None, gt=0)
    """Highest frequency (Hz); default: half the sample rate."""
    normalize: Literal["utterance", "level", "global"] = "utterance"
    """utterance = each spectrogram's bands centred on their own mean over time and scaled by its own spread (cepstral
    mean and variance normalisation: loudness and microphone/voice colouring cancel, which is what carries a model to a
    voice it never heard); level = each spectrogram shifted by its one mean and scaled by its one spread over all bands
    and frames (loudness cancels, the spectral shape is kept); global = only the training set's one mean and scale."""

    @model_validator(mode="after")
    def _band(self) -> AudioConfig:
        top = self.fmax if self.fmax is not None else self.sample_rate / 2
        if top > self.sample_rate / 2:
            raise ValueError(f"fmax {self.fmax} Hz is above the Nyquist frequency ({self.sample_rate / 2:g} Hz)")
        if self.fmin >= top:
            raise ValueError(f"fmin {self.fmin} Hz must be below fmax ({top:g} Hz)")
        if self.hop_ms > self.window_ms:
            raise ValueError(f"hop_ms {self.hop_ms} is longer than window_ms {self.window_ms}: samples would be skipped")
        return self


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


class ForecastConfig(Section):
    """data.task forecast: a long table of time series (one row per series and time step) -> the next `horizon`
    values of data.target from the last `context` steps, trained once and backtested from rolling origins."""

    time_column: str
    """The column holding each row's date or time."""
    series_column: str | None = None
    """The column naming each series (a ticker, a store, a sensor); none = the table is one series."""
    horizon: int = Field(5, ge=1)
    """Steps ahead to forecast, all at once."""
    context: int = Field(30, ge=2)
    """Past steps the model reads (target and exogenous columns)."""
    exogenous: list[str] = []
    """Numeric columns observed beside the target: their past values over the context are inputs too."""
    season: int = Field(1, ge=1)
    """Seasonal period in steps (7 for daily data with a weekly cycle, 5 for trading days): the seasonal-naive
    baseline repeats the value one season back, and MASE is scaled by its in-sample error. 1 = naive."""
    frequency: str | None = None
    """The series' step as a pandas offset alias (D, B, h, W, MS); default: inferred (weekdays with holidays missing
    read as B)."""
    fill: Literal["ffill", "interpolate", "error"] = "ffill"
    """Missing time steps (gaps on the frequency) and missing values: carried forward, interpolated in time, or
    refused. Counted per series in the data profile."""
    val: float = Field(0.1, ge=0, lt=1)
    """Share of each series' steps (after training, before the backtest) for validation: early stopping, and the
    residuals the forecast interval is read from."""
    test: float = Field(0.2, ge=0, lt=1)
    """Share of each series' steps at its end for the rolling-origin backtest."""
    step: int | None = Field(None, ge=1)
    """Steps between backtest origins; default: the horizon (forecasts that do not overlap)."""
    interval: float = Field(0.8, gt=0, lt=1)
    """Coverage of the forecast interval (the fan chart's band, predict's lower/upper): quantiles of the validation
    residuals at each step ahead."""

    @model_validator(mode="after")
    def _shares(self) -> ForecastConfig:
        if self.val + self.test >= 1.0:
            raise ValueError(f"val + test must be < 1, got {self.val} + {self.test}")
        return self


AUGMENTS = "augments"  # the json_schema_extra key naming a batch augmentation's input kind


def augmentation(default: Any, kind: str, **constraints: Any) -> Any:
    """A batch augmentation's field: a Field whose schema names the input kind it works on (image, text, numeric,
    sequence, or continuous for mixup's blend of numeric, image, audio and sequence inputs)."""
    return Field(default, json_schema_extra={AUGMENTS: kind}, **constraints)


class RecommendConfig(Section):
    """data.task recommend: a table of user-item interactions, one row each."""

    user: str = "user"
    """The user column."""
    item: str = "item"
    """The item column."""
    rating: str | None = None
    """A rating column (explicit feedback, or turned into positives with `positive`)."""
    feedback: Literal["implicit", "explicit"] = "implicit"
    """implicit = learn to rank the items each user picked above the rest (ranking metrics); explicit = also predict
    the rating (RMSE beside the ranking metrics; needs `rating`)."""
    positive: float | None = None
    """Implicit feedback from ratings: only interactions rated at least this count (e.g. 4 of 5); default: every
    interaction counts."""
    time_column: str | None = None
    """Each user's latest interactions are held out (what a recommender meets: the next pick); without it, a seeded
    random share of each user's interactions."""
    test: float = Field(0.2, ge=0.0, lt=1.0)
    """Share of each user's interactions held out for the test (users with fewer than 3 interactions only train)."""
    val: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of each user's interactions held out for validation (early stopping)."""

    @model_validator(mode="after")
    def _needs(self) -> RecommendConfig:
        if self.feedback == "explicit" and not self.rating:
            raise ValueError("feedback explicit needs a `rating` column")
        if self.positive is not None and not self.rating:
            raise ValueError("`positive` reads the `rating` column: name it")
        if self.test + self.val >= 1.0:
            raise ValueError(f"test + val must be < 1, got {self.test} + {self.val}")
        return self


class TracingConfig(Section):
    """data.task knowledge_tracing: one row per answer (or data.format answer_lines, read into student, step, skill,
    correct)."""

    student: str = "student"
    """The student column: each student's answers form one sequence."""
    skill: str = "skill"
    """The skill (knowledge component) an exercise trains."""
    correct: str = "correct"
    """1 = answered right, 0 = wrong."""
    order: str | None = "step"
    """The column that orders a student's answers (a time or a counter); null = the file's order."""
    max_length: int = Field(200, ge=2)
    """Longer sequences are cut into chunks of this many answers (each chunk starts without memory)."""
    test: float = Field(0.2, ge=0.0, lt=1.0)
    """Share of students held out for the test (ignored with data.test_path)."""
    val: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of students held out for validation."""


class AugmentConfig(Section):
    """Each batch augmentation is a field made with `augmentation(default, input kind)`: the kind says what input it
    works on (data/augment.py refuses it without one, and the linear probe turns text ones off); the rest are
    settings of those, or oversampling before training."""

    image_flip: bool = augmentation(False, "image")
    """Random horizontal flips of training images."""
    image_crop_padding: int = augmentation(0, "image", ge=0)
    """Pad by this many pixels, then crop back at a random offset."""
    text_token_dropout: float = augmentation(0.0, "text", ge=0.0, lt=1.0)
    """Drop each training token with this probability."""
    text_swap: float = augmentation(0.0, "text", ge=0.0, lt=1.0)
    """Swap each training token with the next one with this probability (the first and last token of a text,
    [CLS]/[SEP] for a pretrained tokenizer, stay; each character is a token for Chinese)."""
    text_delete: float = augmentation(0.0, "text", ge=0.0, lt=1.0)
    """Delete each training token with this probability (the text gets shorter; first and last token stay)."""
    tabular_noise: float = augmentation(0.0, "numeric", ge=0.0)
    """Gaussian noise (in standard deviations) added to scaled numeric training features."""
    sequence_jitter: float = augmentation(0.0, "sequence", ge=0.0)
    """Time series: Gaussian noise (in standard deviations of the scaled features) added to every step of a window."""
    sequence_scaling: float = augmentation(0.0, "sequence", ge=0.0)
    """Time series: each window's features are multiplied by a factor drawn from N(1, this)."""
    sequence_slice: float = augmentation(0.0, "sequence", ge=0.0, lt=1.0)
    """Time series, window slicing: cut this fraction off each window (a random stretch of the rest is kept)
    and stretch what is left back to the window's length."""
    audio_time_mask: int = augmentation(0, "audio", ge=0)
    """SpecAugment: mask up to this many consecutive frames of each training spectrogram (audio_masks times)."""
    audio_freq_mask: int = augmentation(0, "audio", ge=0)
    """SpecAugment: mask up to this many consecutive mel bands of each training spectrogram (audio_masks times)."""
    audio_masks: int = Field(2, ge=1)
    """How many time masks and how many frequency masks per spectrogram."""
    sequence_warp: float = augmentation(0.0, "sequence", ge=0.0)
    """Time series, time warping: the speed of time follows a smooth random curve with knots from N(1, this)."""
    image_rotation: float = augmentation(0.0, "image", ge=0.0, le=180.0)
    """Rotate each training image by a random angle in [-this, this] degrees."""
    image_color_jitter: float = augmentation(0.0, "image", ge=0.0, lt=1.0)
    """Brightness, contrast and saturation each scaled by a random factor in [1 - this, 1 + this]."""
    text_char_noise: float = augmentation(0.0, "text", ge=0.0, lt=1.0)
    """Typos: each character of a training text is, with this probability, deleted, replaced by another character
    of the text, doubled or swapped with the next, and the text is tokenized again (single texts, not pairs)."""
    text_synonym: float = augmentation(0.0, "text", ge=0.0, lt=1.0)
    """Replace each word (letters only, 3+ characters, or one Chinese character) with probability this by one of
    its nearest neighbours in a pretrained model's input embedding table (synonym_model); no word lists."""
    text_insert: float = augmentation(0.0, "text", ge=0.0, lt=1.0)
    """After each word, with probability this, insert one of its embedding neighbours (up to data.text.max_length
    tokens)."""
    synonym_model: str = "minilm"
    """Whose input embeddings define neighbours: 'minilm' (the embedded all-MiniLM-L6-v2) or a local model
    directory. Only words in both that model's and the text tokenizer's vocabularies take part."""
    synonym_neighbours: int = Field(5, ge=1)
    """Candidates per word for text_synonym and text_insert."""
    mixup: float = augmentation(0.0, "continuous", ge=0.0)
    """mixup's Beta(this, this): blend each training example's continuous inputs (numeric, image, audio, sequence) and
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
    pii: Literal["keep", "redact", "hash", "drop_column"] = "keep"
    """Personal data the profile found (e-mail, phone, Chinese resident ID, bank card, IP, name columns): redact =
    each finding becomes a tag ([EMAIL], [PHONE], ...; a name column's cell becomes [NAME]); hash = a pseudonym
    (`email_3f2a...`, the same value always the same token); both in the training rows only, as every fix, since
    the training rows are what a model can learn and repeat. drop_column = remove each flagged column from the copy
    (every row: a column is not a row)."""


class CorpusConfig(Section):
    """Raw text for self-supervised pretraining (data.task clm or mlm): how the corpus splits into documents, and how
    documents become training blocks."""

    documents: Literal["line", "blank_line", "file"] = "line"
    """How a text file splits into documents: one per non-empty line, one per paragraph (blank-line separated), or
    the whole file. JSONL and tables: one document per row (field `field`)."""
    field: str = "text"
    """The JSONL field or table column holding the text (the crawler writes `text`)."""
    block_size: int = Field(128, ge=8)
    """Tokens per training block: documents are tokenized once, joined with the end-of-text ([SEP]) token and cut
    into blocks of this many tokens (no padding). The model's context length."""
    val: float = Field(0.05, ge=0, lt=1)
    """Share of documents held out for validation (early stopping); whole documents, never a block on both sides."""
    test: float = Field(0.05, ge=0, lt=1)
    """Share of documents held out for the test metrics; ignored when data.test_path is given."""
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    """mlm: share of tokens to predict; of those 80% become [MASK], 10% a random token, 10% stay (BERT)."""
    whole_word_mask: bool = False
    """mlm: mask whole words: a word's continuation pieces go with it (WordPiece `##x`; byte-level BPE pieces without a
    leading space). Chinese text has no word boundaries in the tokens: each character stays its own word."""
    undecodable: Literal["skip", "error"] = "skip"
    """A file in a corpus folder that is not UTF-8 text (binary, another encoding): skipped and counted, or an error."""
    token_dtype: Literal["auto", "uint16", "uint32"] = "auto"
    """How token ids are stored on disk: auto = uint16 when the vocabulary fits (<= 65,535 ids), else uint32."""

    @model_validator(mode="after")
    def _shares(self) -> CorpusConfig:
        if self.val + self.test >= 1.0:
            raise ValueError(f"val + test must be < 1, got {self.val} + {self.test}")
        return self


class DataConfig(Section):
    path: str | None = None
    """A CSV/TSV/Parquet/JSONL/.ts file, or a folder of class sub-folders of text, image or audio files. Relative to the
    config file."""
    format: SourceFormat = "auto"
    """A registered data source (data/sources.py); auto = from the file's extension, or a folder's contents."""
    target: str = "label"
    """The column to predict (for folders: 'label')."""
    task: Literal["auto", "classification", "regression", "anomaly", "forecast", "recommend", "knowledge_tracing",
                  "causal_lm", "clm", "mlm"] = "auto"
    """auto = classification for text/categorical/binary targets or few distinct integers. The language-model family:
    causal_lm = fine-tune a decoder (model.type pretrained) on instruction/response pairs: `prompt` is the instruction
    column, `target` the response column, and the loss is computed on the response tokens only; clm = next-token
    pretraining and mlm = masked-token pretraining on a raw corpus (data.corpus: a .txt file, a folder of text files,
    JSONL, or a table's text column), from scratch (model.type gpt / bert) or continued (model.type pretrained).
    forecast = the next data.forecast.horizon values of `target` per series (see data.forecast).
    knowledge_tracing = predict whether each next answer of a student is right from the earlier ones (see
    data.tracing; model.type dkt).
    recommend = rank items for each user from user-item interactions (see data.recommend; model.type mf / two_tower).
    anomaly = learn what normal rows look like, without labels (model.type autoencoder / deep_svdd); `target`, when the
    data has that column, holds evaluation labels only (see anomaly_label)."""
    anomaly_label: str | int | float | bool | None = None
    """data.task anomaly: the value of data.target that marks an anomaly (evaluation only); default: 1 or True when the
    column holds 0/1 or booleans, else its rarer value in the training split."""
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
    bad_audio: Literal["skip", "error"] = "skip"
    """An unreadable audio file is skipped and reported, or stops the run."""
    bad_smiles: Literal["skip", "error"] = "skip"
    """A SMILES that RDKit cannot parse is skipped and reported (row named), or stops the run."""
    clean: CleanConfig = CleanConfig()
    split: SplitConfig = SplitConfig()
    text: TextConfig = TextConfig()
    corpus: CorpusConfig = CorpusConfig()
    """data.task clm / mlm: documents, blocks and held-out shares of a raw-text corpus."""
    image: ImageConfig = ImageConfig()
    audio: AudioConfig = AudioConfig()
    molecule: MoleculeConfig = MoleculeConfig()
    """How SMILES columns become features."""
    sequence: SequenceConfig | None = None
    """Turn time-ordered rows into windows (for RNN/Transformer models)."""
    forecast: ForecastConfig | None = None
    """data.task forecast: the time axis, series, horizon, context, exogenous columns and backtest."""
    tracing: TracingConfig = TracingConfig()
    """data.task knowledge_tracing: the student, skill, answer and order columns, chunk length and student holdout."""
    recommend: RecommendConfig | None = None
    """data.task recommend: the user, item, rating and time columns, the feedback kind and the per-user holdout."""
    augment: AugmentConfig = AugmentConfig()
    audit: AuditConfig = AuditConfig()
    """What `foundry data profile` looks for (every `foundry train` writes the same report, without label issues)."""
    fixes: FixesConfig = FixesConfig()
    """What `foundry data clean` changes in its copy of the data."""

    @model_validator(mode="after")
    def _forecast(self) -> DataConfig:
        if self.task == "forecast" and self.forecast is None:
            raise ValueError("data.task forecast needs a data.forecast section, e.g. "
                             "`forecast: {time_column: date, series_column: ticker, horizon: 5}`")
        if self.task == "recommend" and self.recommend is None:
            raise ValueError("data.task recommend needs a data.recommend section, e.g. "
                             "`recommend: {user: userId, item: movieId, rating: rating, time_column: timestamp}`")
        if self.task == "forecast" and self.test_path:
            raise ValueError("data.task forecast backtests on the end of each series (data.forecast.test); "
                             "data.test_path is not read: append the later rows to data.path instead")
        return self
