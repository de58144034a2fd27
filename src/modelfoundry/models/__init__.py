"""Model registry: a model type name -> (config class, builder). One file per family.

Every model is a `FoundryModel`: per-input encoders (numeric, categorical embeddings, and the family's own
encoder for text, images or sequences) whose outputs are concatenated and fed to an MLP head."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from ..core.runs import atomic_write_text, save_safetensors


@dataclass(frozen=True)
class Registered:
    config_cls: type[BaseModel]
    builder: Callable[[Any, dict], nn.Module]
    inputs: frozenset[str]


REGISTRY: dict[str, Registered] = {}


def register(name: str, config_cls: type[BaseModel], inputs: set[str]):
    """Decorator for a builder `(cfg, spec) -> nn.Module`; names are unique."""

    def deco(builder):
        if name in REGISTRY:
            raise ValueError(f"model type {name!r} is already registered")
        REGISTRY[name] = Registered(config_cls, builder, frozenset(inputs))
        return builder

    return deco


def input_kinds(spec: dict) -> set[str]:
    kinds = set()
    if spec["n_numeric"]:
        kinds.add("numeric")
    if spec["categorical"]:
        kinds.add("categorical")
    if spec["text"]:
        kinds.add("text")
    if spec["image"]:
        kinds.add("image")
    if spec["sequence"]:
        kinds.add("sequence")
    return kinds


def build_model(cfg: BaseModel, spec: dict) -> nn.Module:
    entry = REGISTRY[cfg.type]
    unsupported = input_kinds(spec) - entry.inputs
    if unsupported:
        fits = [n for n, r in REGISTRY.items() if input_kinds(spec) <= r.inputs]
        raise ValueError(f"model.type: '{cfg.type}' cannot take {', '.join(sorted(unsupported))} inputs; "
                         f"use one of: {', '.join(fits) or 'none'}")
    model = entry.builder(cfg, spec)
    model.spec = spec  # what it was built from, saved beside its weights
    return model


def mlp_layers(sizes: list[int], dropout: float, activation: str = "relu") -> nn.Sequential:
    act = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}[activation]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), act(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def embedding_width(cardinality: int) -> int:
    return int(min(50, max(2, round(1.6 * cardinality ** 0.56))))


class FoundryModel(nn.Module):
    """Concatenate per-input encodings, then a head. `encoders` maps a batch key to a module."""

    def __init__(self, encoders: dict[str, nn.Module], widths: dict[str, int], n_numeric: int,
                 cardinalities: list[int], hidden: list[int], n_outputs: int, dropout: float, activation: str = "relu"):
        super().__init__()
        self.keys = list(encoders)
        self.encoders = nn.ModuleDict({k.replace(":", "__"): m for k, m in encoders.items()})
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_width(c)) for c in cardinalities)
        width = n_numeric + sum(embedding_width(c) for c in cardinalities) + sum(widths.values())
        self.trunk = mlp_layers([width, *hidden], dropout, activation)
        self.out = nn.Linear(hidden[-1] if hidden else width, n_outputs)

    def regularization(self) -> torch.Tensor | None:
        """Extra loss terms that encoders ask for (AdaLoRA's orthogonal regulariser), or None."""
        terms = [t for m in self.encoders.values() if hasattr(m, "regularization") and (t := m.regularization()) is not None]
        return sum(terms) if terms else None

    def lr_scales(self) -> dict[str, float]:
        """Per-parameter learning-rate scales that encoders ask for (layer-wise decay); others train at lr."""
        return {f"encoders.{key}.{name}": scale for key, m in self.encoders.items() if hasattr(m, "lr_scales")
                for name, scale in m.lr_scales().items()}

    def after_optimizer_step(self, step: int) -> None:
        for m in self.encoders.values():
            if hasattr(m, "after_optimizer_step"):
                m.after_optimizer_step(step)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if "numeric" in batch:
            parts.append(batch["numeric"])
        if "categorical" in batch and len(self.embeddings):
            cat = batch["categorical"]
            parts += [emb(cat[:, i]) for i, emb in enumerate(self.embeddings)]
        for key in self.keys:
            enc = self.encoders[key.replace(":", "__")]
            if key.startswith("text:"):
                col = key[5:]
                extra = ([batch[f"segment:{col}"]] if f"segment:{col}" in batch and getattr(enc, "takes_segments", False)
                         else [])
                parts.append(enc(batch[key], batch.get(f"len:{col}"), *extra))
            else:
                parts.append(enc(batch[key]))
        h = torch.cat([p.float() if p.dtype != torch.bfloat16 else p for p in parts], dim=-1)
        return self.out(self.trunk(h))


def text_mask(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]


def save_model(model: nn.Module, cfg: BaseModel, spec: dict, directory: Path, weights: bool = True) -> dict:
    """weights.safetensors + architecture.json (config + input spec): enough to rebuild, no pickle.

    Frozen weights that a family can reload from elsewhere (a pretrained base under an adapter or a linear
    probe: `model.base`) are left out, so a LoRA run stores its adapter and head only; architecture.json
    then names the base and its sha256, and loading onto another base is refused. Returns what was saved."""
    directory.mkdir(parents=True, exist_ok=True)
    base = getattr(model, "base", None)
    skip = base["keys"] if base else set()
    state = {k: v for k, v in model.state_dict().items() if k not in skip}
    if weights:  # (an ONNX-only variant keeps architecture.json as the record of what its graph was made from)
        save_safetensors(directory / "weights.safetensors", state, metadata={"format": "pt"})
    arch = {"model": cfg.model_dump(mode="json"), "spec": spec}
    if getattr(model, "resized", None):  # structured pruning: the tensors that lost units, and their shapes
        arch["resized"] = model.resized
    if getattr(model, "inference_dtype", None):
        arch["inference_dtype"] = model.inference_dtype
    if base:
        arch["base"] = {"path": base["path"], "sha256": base["sha256"]}
    atomic_write_text(directory / "architecture.json", json.dumps(arch, indent=2))
    return {"weights_bytes": (directory / "weights.safetensors").stat().st_size if weights else 0,
            "tensors_saved": len(state) if weights else 0,
            "tensors_from_base": len(skip)}


def load_model(directory: Path) -> tuple[nn.Module, BaseModel, dict]:
    from safetensors.torch import load_file

    arch = json.loads((directory / "architecture.json").read_text(encoding="utf-8"))
    entry = REGISTRY[arch["model"]["type"]]
    cfg = entry.config_cls.model_validate(arch["model"])
    model = build_model(cfg, arch["spec"])
    if arch.get("resized"):
        resize_tensors(model, arch["resized"])
    base = getattr(model, "base", None)
    if "base" in arch:
        if base is None or base["sha256"] != arch["base"]["sha256"]:
            found = f"{base['path']} (sha256 {base['sha256'][:12]})" if base else "no base"
            raise ValueError(f"{directory}: these weights were trained on the base model {arch['base']['path']} "
                             f"(sha256 {arch['base']['sha256'][:12]}), but the base found is {found}; refusing to load")
        missing, unexpected = model.load_state_dict(load_file(directory / "weights.safetensors"), strict=False)
        if unexpected or set(missing) - base["keys"]:
            raise ValueError(f"{directory}: weights do not fit the model (missing {sorted(set(missing) - base['keys'])[:5]}, "
                             f"unexpected {unexpected[:5]})")
    else:
        model.load_state_dict(load_file(directory / "weights.safetensors"))
    if arch.get("inference_dtype") == "bfloat16":
        to_bf16(model)
    model.eval()
    return model, cfg, arch["spec"]


def resize_tensors(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Give the named parameters and buffers new (pruned) shapes, so that a pruned state dict loads.
    Linear, conv, norm and attention layers read their sizes from their tensors, so this is all they need."""
    model.resized = dict(shapes)
    for name, shape in shapes.items():
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        old = getattr(owner, attr)
        new = torch.zeros(shape, dtype=old.dtype)
        if isinstance(old, nn.Parameter):
            setattr(owner, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            owner.register_buffer(attr, new)


def to_bf16(model: nn.Module) -> nn.Module:
    """bfloat16 weights for inference under bf16 autocast; recurrent layers stay fp32 (they run in fp32)."""
    recurrent = {id(p) for m in model.modules() if isinstance(m, nn.RNNBase) for p in m.parameters()}
    for p in model.parameters():
        if p.is_floating_point() and id(p) not in recurrent:
            p.data = p.data.to(torch.bfloat16)
    for m in model.modules():
        for key, b in m.named_buffers(recurse=False):
            if b.is_floating_point() and not isinstance(m, nn.RNNBase):
                m.register_buffer(key, b.to(torch.bfloat16))
    model.inference_dtype = "bfloat16"
    return model


# Families register themselves on import.
from . import cnn, mlp, pretrained, rnn, transformer  # noqa: E402,F401
