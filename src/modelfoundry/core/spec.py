"""The typed contract between the data stage and the models: what inputs a prepared data set has (`InputSpec`), and
the names of a batch's tensors (`BatchKey`), built and read by the functions here, never by string surgery."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

KINDS = ("numeric", "categorical", "text", "image", "audio", "sequence", "interactions", "answers")
CORPUS_TASKS = ("clm", "mlm")
"""Self-supervised pretraining on a raw corpus: next-token (clm) and masked-token (mlm)."""
LM_TASKS = ("causal_lm", *CORPUS_TASKS)
GENERATIVE_TASKS = ("causal_lm", "clm")
"""Runs that generate text (foundry generate, /v1/generate): instruction-tuned and next-token pretrained decoders."""
"""The language-model family: models return per-example [loss sum, predicted tokens], and report loss/perplexity."""


@dataclass(frozen=True)
class InputSpec:
    """What a model is built for; saved in architecture.json so that the same model is rebuilt to load its weights."""

    task: str
    n_outputs: int
    n_numeric: int = 0
    """Numeric features (a column with a missing-value flag counts twice)."""
    categorical: tuple[int, ...] = ()
    """The cardinality of each categorical column (its vocabulary + 1 for unknown)."""
    text: dict[str, int] = field(default_factory=dict)
    """Text column -> tokenizer vocabulary size."""
    max_length: int = 0
    """Tokens per text, [CLS] and [SEP] included."""
    segments: tuple[str, ...] = ()
    """Text columns that carry a second segment (sentence pairs)."""
    image: tuple[int, int, int] | None = None
    """(channels, height, width)."""
    audio: tuple[int, int] | None = None
    """(mel bands, frames) of an audio input's log-mel spectrogram (one channel)."""
    sequence: tuple[int, int] | None = None
    """(length, features) of a sequence input."""
    users: int = 0
    """Recommendation: users known in training + 1 (index 0 = unknown)."""
    items: int = 0
    """Recommendation: items known in training + 1 (index 0 = unknown)."""
    skills: int = 0
    """Knowledge tracing: skills known in training + 1 (index 0 = padding)."""
    explicit: bool = False
    """Recommendation: the model predicts ratings (explicit feedback) beside ranking."""
    eos_id: int | None = None
    """A causal LM's end-of-text token."""
    total_steps: int | None = None
    """Optimizer steps of the training it is built for (AdaLoRA's schedule needs it); None when loading."""

    def kinds(self) -> set[str]:
        """The input kinds present: a model family registers the kinds it takes."""
        have = {"numeric": self.n_numeric, "categorical": self.categorical, "text": self.text, "image": self.image,
                "audio": self.audio, "sequence": self.sequence, "interactions": self.users,
                "answers": self.skills}
        return {k for k, v in have.items() if v}

    def with_steps(self, total_steps: int) -> InputSpec:
        return replace(self, total_steps=total_steps)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InputSpec:
        """From architecture.json (lists become tuples; a key this version does not know is refused, naming it)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"architecture.json: unknown input-spec keys {sorted(unknown)} (a newer ModelFoundry?)")
        d = dict(d)
        for key in ("categorical", "segments"):
            if key in d:
                d[key] = tuple(d[key] or ())
        for key in ("image", "audio", "sequence"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


class BatchKey:
    """A batch's tensor names: `numeric`, `categorical`, `image`, `audio`, `sequence`, and per text column `text:<col>` (token
    ids), `len:<col>` (lengths), `segment:<col>` (segment ids). A module holding per-input encoders names each by
    `module_name` (a ModuleDict key cannot hold every character a column name may)."""

    NUMERIC, CATEGORICAL, IMAGE, AUDIO, SEQUENCE = "numeric", "categorical", "image", "audio", "sequence"

    @staticmethod
    def text(col: str) -> str:
        return f"text:{col}"

    @staticmethod
    def length(col: str) -> str:
        return f"len:{col}"

    @staticmethod
    def segment(col: str) -> str:
        return f"segment:{col}"

    @staticmethod
    def text_column(key: str) -> str | None:
        """The column of a `text:<col>` key (None for any other key): the one inverse of `text`."""
        return key[len("text:"):] if key.startswith("text:") else None

    @staticmethod
    def module_name(key: str) -> str:
        """The encoder module's name for a batch key (`text:review` -> `text__review`), as weights files store it."""
        return key.replace(":", "__")
