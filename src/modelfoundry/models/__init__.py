"""The models stage: a registry of families (mlp, cnn, rnn, transformer, pretrained), each one file; every model is a
`FoundryModel` (per-input encoders concatenated, then an MLP head)."""

from .base import FoundryModel, embedding_width, mlp_layers, text_mask
from .config import MODEL_TYPES, ModelConfig
from .io import load_model, resize_tensors, save_model, to_bf16
from .registry import REGISTRY, build_model, register

__all__ = ["FoundryModel", "embedding_width", "mlp_layers", "text_mask", "MODEL_TYPES", "ModelConfig", "load_model",
           "resize_tensors", "save_model", "to_bf16", "REGISTRY", "build_model", "register"]
