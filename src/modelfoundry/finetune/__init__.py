"""Fine-tuning strategies for pretrained models: a registry (full, linear_probe, one line per PEFT method), applying
one to a loaded model, AdaLoRA's per-step hooks, and adapter merging."""

from . import strategies  # noqa: F401  (registers every strategy)
from .adapt import Adapted, adapt, encoder_layers, keep_layers
from .merge import adapted_parts, merge_adapters, refuse_virtual
from .names import FinetuneName
from .registry import STRATEGIES, Strategy, register, strategy

__all__ = ["Adapted", "adapt", "encoder_layers", "keep_layers", "adapted_parts", "merge_adapters", "refuse_virtual",
           "FinetuneName", "STRATEGIES", "Strategy", "register", "strategy"]
