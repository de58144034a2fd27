"""Optimizers and learning-rate schedules from the train config."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..evaluate.metrics import metric_mode
from .config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Parameter groups by (weight decay, learning-rate scale): no decay for biases, norms and embeddings;
    a model may ask for per-parameter lr scales (`lr_scales()`, e.g. layer-wise decay of a pretrained encoder)."""
    scales = model.lr_scales() if hasattr(model, "lr_scales") else {}
    buckets: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            wd = 0.0 if p.ndim < 2 or "emb" in name.lower() else cfg.weight_decay
            buckets.setdefault((wd, scales.get(name, 1.0)), []).append(p)
    groups = [{"params": ps, "weight_decay": wd, "lr": cfg.lr * scale} for (wd, scale), ps in buckets.items()]
    # torch's fused kernels: one pass per tensor instead of a dozen small ops. On CPU, where torch otherwise
    # loops over the tensors one op at a time, AdamW's step on MiniLM's 22.7M parameters took 155 ms, fused 26 ms
    # (a 30-step full fine-tuning epoch 18-20 s -> 15-17 s); the same update up to float rounding
    trainable = [p for ps in buckets.values() for p in ps]
    fast = {"fused": True} if trainable and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                                for p in trainable) else {}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, **fast)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, **fast)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, **fast)


def build_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """A per-step LambdaLR (warmup, then constant / linear / cosine), or ReduceLROnPlateau stepped per epoch."""
    if cfg.schedule == "plateau":
        mode = "min" if cfg.early_stopping is None or metric_mode(cfg.early_stopping.metric) == "min" else "max"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=cfg.plateau_factor,
                                                          patience=cfg.plateau_patience)
    warmup = int(cfg.warmup_ratio * total_steps)
    kind = cfg.schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


