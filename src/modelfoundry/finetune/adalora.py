"""AdaLoRA's two additions to a training step, which PEFT applies only inside its own Trainer path."""

from __future__ import annotations

import torch
from torch import nn


def orthogonal_regularization(model: nn.Module) -> torch.Tensor | None:
    """AdaLoRA's orthogonal regulariser on P and Q. PEFT adds it only when the wrapped model returns a loss, which an
    encoder never does, so the frameworks that wrap PEFT silently train without it."""
    weight = model.peft_config["default"].orth_reg_weight
    terms = []
    for name, p in model.named_parameters():
        if ("lora_A" in name or "lora_B" in name) and "default" in name:
            cov = p @ p.T if "lora_A" in name else p.T @ p
            terms.append(torch.norm(cov - torch.eye(*cov.shape, device=cov.device, dtype=cov.dtype), p="fro"))
    return weight * torch.stack(terms).mean() if terms else None


def budget_update(model: nn.Module, step: int) -> None:
    """AdaLoRA's importance scores and rank allocation, once per optimizer step."""
    model.base_model.update_and_allocate(step)
