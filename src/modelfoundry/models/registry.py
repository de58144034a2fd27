"""The model-family registry: a type name -> (config class, builder, the input kinds it takes). A family registers
itself with `@register(name, ConfigClass, inputs)` on its builder; families.py imports every family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from torch import nn

from ..core.spec import InputSpec

PREDICTIVE = frozenset({"classification", "regression", "forecast"})
"""Tasks a model with a head on its inputs trains for (forecast: `horizon` outputs from a window of the series)."""


@dataclass(frozen=True)
class Registered:
    config_cls: type[BaseModel]
    builder: Callable[[Any, dict], nn.Module]
    inputs: frozenset[str]
    tasks: frozenset[str] = PREDICTIVE
    """The data.task values it trains for (the language models: clm / mlm; pretrained: all)."""


REGISTRY: dict[str, Registered] = {}


def register(name: str, config_cls: type[BaseModel], inputs: set[str], tasks: set[str] = PREDICTIVE):
    """Decorator for a builder `(cfg, spec) -> nn.Module`; names are unique."""

    def deco(builder):
        if name in REGISTRY:
            raise ValueError(f"model type {name!r} is already registered")
        REGISTRY[name] = Registered(config_cls, builder, frozenset(inputs), frozenset(tasks))
        return builder

    return deco


def build_model(cfg: BaseModel, spec: InputSpec) -> nn.Module:
    entry = REGISTRY[cfg.type]
    if spec.task not in entry.tasks:
        fits = [n for n, r in REGISTRY.items() if spec.task in r.tasks]
        raise ValueError(f"model.type: '{cfg.type}' does not train for data.task {spec.task} (it trains for "
                         f"{', '.join(sorted(entry.tasks))}); use one of: {', '.join(fits)}")
    unsupported = spec.kinds() - entry.inputs
    if unsupported:
        fits = [n for n, r in REGISTRY.items() if spec.kinds() <= r.inputs]
        raise ValueError(f"model.type: '{cfg.type}' cannot take {', '.join(sorted(unsupported))} inputs; "
                         f"use one of: {', '.join(fits) or 'none'}")
    model = entry.builder(cfg, spec)
    model.spec = spec  # what it was built from, saved beside its weights
    return model
