"""Adapter merging, the one copy: serving, compression and export all merge here."""

from __future__ import annotations

from torch import nn

from .adapt import Adapted
from .registry import STRATEGIES


def adapted_parts(model: nn.Module) -> list[Adapted]:
    """The adapted pretrained models inside a model: its pretrained encoders, or the model itself (a causal LM)."""
    if isinstance(model, Adapted):
        return [model]
    encoders = getattr(model, "encoders", None)
    return [m for m in (encoders.values() if encoders is not None else ()) if isinstance(m, Adapted)]


def merge_adapters(model: nn.Module) -> int:
    """Merge every mergeable PEFT adapter (LoRA, AdaLoRA, IA3, LoHa, VeRA) of a loaded model's pretrained encoders
    into their base weights, in place, for inference; prompt learning (prefix, prompt) learns inputs and stays as it
    is. A merged part trains as `full` from then on. Returns how many were merged."""
    merged = 0
    parts = [] if isinstance(model, Adapted) else adapted_parts(model)  # a causal LM generates through PEFT as trained
    for part in parts:
        if STRATEGIES[part.finetune].mergeable and hasattr(part.model, "peft_config"):
            part.model = part.model.merge_and_unload()
            part.finetune = "full"
            merged += 1
    return merged


def refuse_virtual(model: nn.Module, what: str) -> None:
    """Prompt learning's virtual tokens are inputs, not weight changes: refuse an operation that needs plain weights."""
    for part in adapted_parts(model):
        if STRATEGIES[part.finetune].virtual:
            mergeable = ", ".join(n for n, s in STRATEGIES.items() if s.mergeable or s.peft_config is None)
            raise ValueError(f"finetune '{part.finetune}' learns virtual tokens, which do not merge into the weights; "
                             f"{what} works on {mergeable} runs")
