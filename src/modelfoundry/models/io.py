"""A model on disk: weights.safetensors + architecture.json (config + input spec), no pickle; pruned shapes and bf16
inference weights recorded beside them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel
from safetensors.torch import load_file
from torch import nn

from ..core.runs import atomic_write_text, save_safetensors
from ..core.spec import InputSpec
from .base import Built
from .registry import REGISTRY, build_model


def save_model(model: Built, cfg: BaseModel, spec: InputSpec, directory: Path, weights: bool = True) -> dict:
    """weights.safetensors + architecture.json (config + input spec): enough to rebuild, no pickle.

    Frozen weights that a family can reload from elsewhere (a pretrained base under an adapter or a linear
    probe: `model.base`) are left out, so a LoRA run stores its adapter and head only; architecture.json
    then names the base and its sha256, and loading onto another base is refused. Returns what was saved."""
    if getattr(model, "keras_model", None) is not None:  # model.backend: keras
        from .keras_io import save_keras

        return save_keras(model, cfg, directory, weights)
    directory.mkdir(parents=True, exist_ok=True)
    base = model.base
    skip = base["keys"] if base else set()
    state = {k: v for k, v in model.state_dict().items() if k not in skip}
    if weights:  # (an ONNX-only variant keeps architecture.json as the record of what its graph was made from)
        save_safetensors(directory / "weights.safetensors", state, metadata={"format": "pt"})
    arch = {"model": cfg.model_dump(mode="json"), "spec": spec.to_json()}
    if model.resized:  # structured pruning: the tensors that lost units, and their shapes
        arch["resized"] = model.resized
    if model.inference_dtype:
        arch["inference_dtype"] = model.inference_dtype
    if base:
        arch["base"] = {"path": base["path"], "sha256": base["sha256"]}
    atomic_write_text(directory / "architecture.json", json.dumps(arch, indent=2))
    return {"weights_bytes": (directory / "weights.safetensors").stat().st_size if weights else 0,
            "tensors_saved": len(state) if weights else 0,
            "tensors_from_base": len(skip)}


def load_model(directory: Path) -> tuple[Built, BaseModel, InputSpec]:
    arch = json.loads((directory / "architecture.json").read_text(encoding="utf-8"))
    entry = REGISTRY[arch["model"]["type"]]
    cfg = entry.config_cls.model_validate(arch["model"])
    spec = InputSpec.from_json(arch["spec"])
    if getattr(cfg, "backend", "torch") == "keras":
        from .keras_io import load_keras

        return load_keras(directory, cfg, spec), cfg, spec
    model = build_model(cfg, spec)
    if arch.get("resized"):
        resize_tensors(model, arch["resized"])
    base = model.base
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
    return model, cfg, spec


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
