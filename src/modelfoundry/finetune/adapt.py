"""Apply a fine-tuning strategy to a loaded Hugging Face model, and the base class every adapted model shares (the
strategy's regulariser and per-step update, layer-wise learning rates)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from .registry import STRATEGIES


def _linear_names(model: nn.Module) -> list[str]:
    return sorted({name.split(".")[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def _has_conv1d(model: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(m, Conv1D) for m in model.modules())


def adapt(model: nn.Module, finetune: str, options: dict[str, Any], total_steps: int | None, task_type: str,
          freeze_layers: int = 0) -> nn.Module:
    """Apply the strategy `finetune` to a loaded HF model: freeze it (linear probe), freeze its first layers (full), or
    wrap it in the PEFT method with its defaults under the config's `options`. `task_type` is PEFT's
    (FEATURE_EXTRACTION, CAUSAL_LM)."""
    s = STRATEGIES[finetune]
    if s.frozen:
        model.requires_grad_(False)
    elif freeze_layers:
        model.get_input_embeddings().requires_grad_(False)
        layers = encoder_layers(model, "model.freeze_layers")
        if freeze_layers > len(layers):
            raise ValueError(f"model.freeze_layers: the model has {len(layers)} layers, got {freeze_layers}")
        for layer in layers[:freeze_layers]:
            layer.requires_grad_(False)
    if s.peft_config is None:
        return model
    options = {**s.defaults, **({s.steps_option: total_steps} if s.steps_option else {}), **options}
    if s.virtual or task_type == "CAUSAL_LM":
        options["task_type"] = task_type
    import peft  # deferred: PEFT (and the transformers it loads) takes seconds to import; only adapters need it

    config_cls = getattr(peft, s.peft_config)
    if "fan_in_fan_out" not in options and _has_conv1d(model) and "fan_in_fan_out" in {
            f.name for f in dataclasses.fields(config_cls)}:
        # GPT-2's layers are transformers' Conv1D (weights stored in x out): PEFT needs fan_in_fan_out for them and
        # would set it itself, with a warning on every run that reads as if something were wrong
        options["fan_in_fan_out"] = True
    try:
        return peft.get_peft_model(model, config_cls(**options))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"model.adapter: PEFT refused {options}: {exc}. "
                         f"Linear modules this model has: {', '.join(_linear_names(model))}") from None


class Adapted(nn.Module):
    """What every adapted pretrained model offers the training loop: its strategy's regulariser and per-step update,
    and layer-wise learning rates. Subclasses set self.model, self.finetune, self.layer_lr_decay."""

    model: nn.Module
    finetune: str
    layer_lr_decay: float = 1.0

    def regularization(self) -> torch.Tensor | None:
        hook = STRATEGIES[self.finetune].regularization
        return hook(self.model) if hook else None

    def lr_scales(self) -> dict[str, float]:
        """Layer-wise learning-rate decay: embeddings at decay^(N+1), layer i at decay^(N+1-i), the rest at 1."""
        if self.layer_lr_decay == 1.0:
            return {}
        layers = encoder_layers(self.model, "model.layer_lr_decay")
        n = len(layers)
        depth = {id(p): 0 for p in self.model.get_input_embeddings().parameters()}
        for i, layer in enumerate(layers):
            depth.update({id(p): i + 1 for p in layer.parameters()})
        emb = self.model.base_model.embeddings if hasattr(self.model.base_model, "embeddings") else None
        if emb is not None:
            depth.update({id(p): 0 for p in emb.parameters()})
        return {f"model.{name}": self.layer_lr_decay ** (n + 1 - depth[id(p)])
                for name, p in self.model.named_parameters() if id(p) in depth}

    def after_optimizer_step(self, step: int) -> None:
        hook = STRATEGIES[self.finetune].after_step
        if hook:
            hook(self.model, step)


def encoder_layers(model: nn.Module, option: str) -> nn.ModuleList:
    """The Transformer layer list of a loaded HF model (BERT's encoder.layer, GPT-2's h, ...); `option` names the
    setting that needs it, for the error."""
    for name in ("encoder.layer", "layers", "h", "transformer.h"):
        obj = model
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ValueError(f"{option}: cannot find this architecture's layer list ({type(model).__name__})")


def keep_layers(model: nn.Module, n: int) -> None:
    """Cut a loaded model to its first n Transformer layers (in place; its config says so too)."""
    layers = encoder_layers(model, "model.layers")
    if n > len(layers):
        raise ValueError(f"model.layers: the model has {len(layers)} layers, got {n}")
    del layers[n:]
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if hasattr(model.config, key):
            setattr(model.config, key, n)
