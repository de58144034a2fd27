"""The fine-tuning strategy registry: `model.finetune` names one. A strategy says what training a pretrained model
with it means (which weights train, whether a PEFT config wraps the model, whether its changes merge into the base
weights) and offers the loop its hooks (a regulariser, a per-step update). strategies.py registers them: full,
linear_probe, and one line per PEFT method."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Strategy:
    name: str
    peft_config: str | None = None
    """The PEFT config class (`LoraConfig`, ...) that wraps the model; None for full and linear_probe."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Options given to that class unless the config's `model.adapter` says otherwise."""
    virtual: bool = False
    """Prompt learning (prefix, prompt): learned inputs, not weight changes; nothing to merge, and PEFT needs the task
    type."""
    frozen: bool = False
    """No weight of the pretrained model trains (linear_probe): its encodings are computed once and cached."""
    steps_option: str | None = None
    """The PEFT option that must be told the training length in optimizer steps (AdaLoRA's total_step)."""
    regularization: Callable[[nn.Module], torch.Tensor | None] | None = None
    """An extra loss term on the wrapped model (AdaLoRA's orthogonal regulariser)."""
    after_step: Callable[[nn.Module, int], None] | None = None
    """Called after each optimizer step with the wrapped model and the step (AdaLoRA's budget update)."""

    @property
    def mergeable(self) -> bool:
        """A PEFT adapter whose weight changes fold into the base (merge for inference, export merged)."""
        return self.peft_config is not None and not self.virtual


STRATEGIES: dict[str, Strategy] = {}


def register(name: str, peft_config: str | None = None, **kwargs: Any) -> Strategy:
    """Register a strategy (names are unique). A PEFT method is one line: `register("loha", "LoHaConfig")`."""
    if name in STRATEGIES:
        raise ValueError(f"fine-tuning strategy {name!r} is already registered")
    STRATEGIES[name] = Strategy(name, peft_config, **kwargs)
    return STRATEGIES[name]


def strategy(name: str | None) -> Strategy | None:
    """The registered strategy called `name` (None for a model without `finetune`)."""
    return None if name is None else STRATEGIES[name]
