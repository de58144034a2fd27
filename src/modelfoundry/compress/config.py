"""The `compress:` section: distill, prune, quantize, export to ONNX."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..core.schema import Section
from ..models.config import ModelConfig


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

    @model_validator(mode="after")
    def _torch_student(self) -> DistillConfig:
        if getattr(self.student, "backend", "torch") == "keras":
            raise ValueError("student.backend: keras; distillation trains a torch student (the loss reads the teacher's "
                             "outputs per batch in the torch loop): set student.backend: torch")
        return self

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
