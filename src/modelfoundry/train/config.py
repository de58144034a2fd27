"""The `train:` and `track:` sections: optimizer, schedule, early stopping, precision, seed; experiment tracking."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..core.schema import Section
from ..evaluate.metrics import reported_metric


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
    max_steps: int | None = Field(None, gt=0)
    """Stop after this many optimizer steps, mid-epoch if need be (the schedule ends there; epochs then only bounds the
    run): a token budget, as pretraining recipes state it. null = train for `epochs`."""
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
    compile: bool = False
    """torch.compile the training step's forward (TorchInductor; on a CPU it needs a C++ compiler): a one-time compile
    of about 30 s on 2 cores, then faster steps (a GPT-2 mini step 354 -> 279 ms on a 2-core AMD EPYC; break-even near
    400 steps there). Worth it for runs of many minutes with batches of one shape (packed pretraining blocks): the step
    is compiled for the first batch's shapes, and a batch of other shapes (an epoch's last, text buckets of other
    lengths) runs uncompiled rather than compiling again. Validation and prediction run uncompiled."""
    seed: int = 42
    """Seeds the split, initialisation, data order, dropout and augmentation."""


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
