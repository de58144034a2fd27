"""Every fine-tuning strategy `model.finetune` may name. Adding a PEFT method is one line here: the name, PEFT's config
class, and the defaults we give it (PEFT validates everything else the config's `model.adapter` passes through)."""

from __future__ import annotations

from . import adalora
from .registry import register

register("full")  # every weight trains (optionally freeze_layers, layer_lr_decay)
register("linear_probe", frozen=True)  # the encoder is frozen and run once per text; only the head trains
register("lora", "LoraConfig", defaults={"r": 8, "lora_alpha": 16, "lora_dropout": 0.1})
register("adalora", "AdaLoraConfig", defaults={"lora_alpha": 16, "lora_dropout": 0.1}, steps_option="total_step",
         regularization=adalora.orthogonal_regularization, after_step=adalora.budget_update)
register("ia3", "IA3Config")
register("prefix", "PrefixTuningConfig", defaults={"num_virtual_tokens": 16}, virtual=True)
register("prompt", "PromptTuningConfig", defaults={"num_virtual_tokens": 16}, virtual=True)
register("loha", "LoHaConfig", defaults={"r": 8, "alpha": 16})
register("vera", "VeraConfig", defaults={"r": 64})
