"""A pretrained Hugging Face encoder from a local directory (`path: minilm` is the embedded all-MiniLM-L6-v2),
adapted by full fine-tuning, a frozen linear probe, or a PEFT method (LoRA, AdaLoRA, IA3, prefix, prompt tuning;
its options passed through).

Prefix tuning on BERT-family *sequence classification* fails in PEFT under transformers 5 ("Model does not
support past key values"). We never use the HF task models: the bare encoder is wrapped as PEFT's
FEATURE_EXTRACTION task, which passes the learned per-layer keys/values (prefix) or virtual input tokens
(prompt) to the encoder, and our own pooling + head sit on top."""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ..core.paths import resolve_model_path
from ..core.runs import sha256_file
from ..core.schema import Section
from .base import FoundryModel, text_mask
from .registry import register

ADAPTERS = {"lora": "LoraConfig", "adalora": "AdaLoraConfig", "ia3": "IA3Config",
            "prefix": "PrefixTuningConfig", "prompt": "PromptTuningConfig"}
VIRTUAL = ("prefix", "prompt")  # prompt-learning methods: PEFT needs a task type, and nothing to merge


class PretrainedConfig(Section):
    type: Literal["pretrained"] = "pretrained"
    path: str = "minilm"
    """A local Hugging Face model directory (config.json, *.safetensors, tokenizer.json), relative to the config
    file, or 'minilm' for the embedded all-MiniLM-L6-v2. Its tokenizer is used for the text column."""
    finetune: Literal["full", "linear_probe", "lora", "adalora", "ia3", "prefix", "prompt"] = "lora"
    """full = every weight trains; linear_probe = the encoder is frozen, only the head trains (its encodings are
    computed once); lora, adalora, ia3, prefix, prompt = PEFT methods (AdaLoRA's budget update runs every optimizer
    step and its orthogonal regulariser joins the loss; prefix = learned keys/values in every layer, prompt =
    learned virtual input tokens; both work for encoders, through PEFT's feature-extraction wrapper)."""
    adapter: dict[str, Any] = {}
    """Options passed to PEFT's LoraConfig / AdaLoraConfig / IA3Config / PrefixTuningConfig / PromptTuningConfig
    (r, lora_alpha, lora_dropout, target_modules, use_rslora, use_dora; init_r, target_r, tinit, tfinal,
    orth_reg_weight; feedforward_modules; num_virtual_tokens, prefix_projection, encoder_hidden_size). Defaults:
    LoRA r=8, lora_alpha=16, lora_dropout=0.1; AdaLoRA's total_step is set from the training length; prefix and
    prompt 16 virtual tokens. PEFT validates them."""
    layers: int | None = Field(None, gt=0)
    """Keep only the first N Transformer layers of the pretrained model (the usual start of a distilled
    student); null = all."""
    freeze_layers: int = Field(0, ge=0)
    """With finetune: full, freeze the embeddings and the first N layers."""
    layer_lr_decay: float = Field(1.0, gt=0, le=1)
    """With finetune: full, layer i of N trains at lr x decay^(N + 1 - i): the embeddings slowest, the head at lr."""
    pooling: Literal["cls", "mean"] = "mean"
    """How token vectors become one vector: the first token's ([CLS]) or the mean over real (unpadded) tokens."""
    hidden: list[int] = []
    """Hidden layers of the head."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _adapter_only_for_lora(self) -> PretrainedConfig:
        if self.adapter and self.finetune in ("full", "linear_probe"):
            raise ValueError(f"`adapter` options apply to finetune: lora, adalora, ia3, prefix or prompt, not {self.finetune!r}")
        if self.freeze_layers and self.finetune != "full":
            raise ValueError("`freeze_layers` applies to finetune: full")
        if self.layer_lr_decay != 1.0 and self.finetune != "full":
            raise ValueError("`layer_lr_decay` applies to finetune: full")
        return self



def _linear_names(model: nn.Module) -> list[str]:
    return sorted({name.split(".")[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def adapt(model: nn.Module, cfg: PretrainedConfig, total_steps: int | None, task_type: str) -> nn.Module:
    """Apply `model.finetune` to a loaded HF model: freeze it (linear probe), freeze its first layers (full), or
    wrap it in the PEFT method with the config's options. `task_type` is PEFT's (FEATURE_EXTRACTION, CAUSAL_LM)."""
    if cfg.finetune == "linear_probe":
        model.requires_grad_(False)
    elif cfg.finetune == "full" and cfg.freeze_layers:
        model.get_input_embeddings().requires_grad_(False)
        layers = encoder_layers(model, "model.freeze_layers")
        if cfg.freeze_layers > len(layers):
            raise ValueError(f"model.freeze_layers: the model has {len(layers)} layers, got {cfg.freeze_layers}")
        for layer in layers[: cfg.freeze_layers]:
            layer.requires_grad_(False)
    elif cfg.finetune in ADAPTERS:
        import peft

        defaults = {"lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1},
                    "adalora": {"lora_alpha": 16, "lora_dropout": 0.1, "total_step": total_steps},
                    "prefix": {"num_virtual_tokens": 16}, "prompt": {"num_virtual_tokens": 16}}.get(cfg.finetune, {})
        options = {**defaults, **cfg.adapter}
        if cfg.finetune in VIRTUAL or task_type == "CAUSAL_LM":
            options["task_type"] = task_type
        try:
            model = peft.get_peft_model(model, getattr(peft, ADAPTERS[cfg.finetune])(**options))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"model.adapter: PEFT refused {options}: {exc}. "
                             f"Linear modules this model has: {', '.join(_linear_names(model))}") from None
    return model


class Adapted(nn.Module):
    """What every adapted pretrained model offers the training loop: AdaLoRA's regulariser and budget update,
    and layer-wise learning rates. Subclasses set self.model, self.finetune, self.layer_lr_decay."""

    model: nn.Module

    def regularization(self) -> torch.Tensor | None:
        """AdaLoRA's orthogonal regulariser on P and Q. PEFT adds it only when the wrapped model returns a loss,
        which an encoder never does, so the frameworks that wrap PEFT silently train without it."""
        if self.finetune != "adalora":
            return None
        weight = self.model.peft_config["default"].orth_reg_weight
        terms = []
        for name, p in self.model.named_parameters():
            if ("lora_A" in name or "lora_B" in name) and "default" in name:
                cov = p @ p.T if "lora_A" in name else p.T @ p
                terms.append(torch.norm(cov - torch.eye(*cov.shape, device=cov.device, dtype=cov.dtype), p="fro"))
        return weight * torch.stack(terms).mean() if terms else None

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
        """AdaLoRA's budget update: importance scores and rank allocation, once per optimizer step."""
        if self.finetune == "adalora":
            self.model.base_model.update_and_allocate(step)


class PretrainedEncoder(Adapted):
    def __init__(self, cfg: PretrainedConfig, total_steps: int | None = None):
        super().__init__()
        from transformers import AutoModel

        path = resolve_model_path(cfg.path)
        try:  # our pooling reads the token states: BERT's pooler would be dead weight (and AdaLoRA
            # cannot score adapters on it, since they never get a gradient)
            model = AutoModel.from_pretrained(path, use_safetensors=True, add_pooling_layer=False)
        except TypeError:  # architectures without that option
            model = AutoModel.from_pretrained(path, use_safetensors=True)
        if cfg.layers is not None:
            keep_layers(model, cfg.layers)
        self.model = adapt(model, cfg, total_steps, "FEATURE_EXTRACTION")
        self.layer_lr_decay = cfg.layer_lr_decay
        self.finetune = cfg.finetune
        self.pooling = cfg.pooling
        self.width = model.config.hidden_size
        self.segment_types = getattr(model.config, "type_vocab_size", 1) or 1

    takes_segments = True  # sentence pairs: the second text's tokens carry segment (token type) 1

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        mask = text_mask(ids, lengths).long()
        extra = {"token_type_ids": segments} if segments is not None and self.segment_types > 1 else {}
        h = self.model(input_ids=ids, attention_mask=mask, **extra).last_hidden_state
        if h.shape[1] > ids.shape[1]:  # prompt tuning prepends its virtual tokens: pool over the real ones
            h = h[:, h.shape[1] - ids.shape[1]:]
        if self.pooling == "cls":
            return h[:, 0]
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


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


class CachedEncoding(nn.Module):
    """Stands in for a frozen encoder while its outputs, computed once, are fed as the batch's text input."""

    def forward(self, embedding: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return embedding


@torch.no_grad()
def cache_frozen_encodings(model: nn.Module, features: dict[str, torch.Tensor], batch_size: int = 128) -> dict[str, torch.Tensor]:
    """A linear probe's encoder never changes: encode each text once (length-sorted batches), and return
    features where `text:<col>` holds the pooled encoding and `len:<col>` is gone."""
    out = dict(features)
    for key, enc in list(model.encoders.items()):
        if not isinstance(enc, PretrainedEncoder) or enc.finetune != "linear_probe":
            continue
        col = key.removeprefix("text__")
        ids, lengths = features[f"text:{col}"], features[f"len:{col}"]
        segments = features.get(f"segment:{col}")
        enc.eval()
        order = torch.argsort(lengths)
        pooled = torch.empty(len(ids), enc.width)
        for chunk in order.split(batch_size):
            width = int(lengths[chunk].max())
            seg = None if segments is None else segments[chunk, :width]
            pooled[chunk] = enc(ids[chunk, :width], lengths[chunk], seg).float()
        out[f"text:{col}"] = pooled
        out.pop(f"len:{col}")
        out.pop(f"segment:{col}", None)
    return out


def frozen_base(model: nn.Module, cfg: PretrainedConfig, prefix: str) -> dict:
    """What an adapter run leaves out of its files: the frozen base weights, reloaded from the base directory."""
    # every state-dict name of a frozen tensor: a shared one (PEFT's prompt encoders keep a second reference to the
    # word embeddings) appears under each of its names, which named_parameters() would list only once
    keys = {n for n, v in model.state_dict(keep_vars=True).items()
            if n.startswith(prefix) and not (isinstance(v, nn.Parameter) and v.requires_grad)}
    return {"path": cfg.path, "sha256": base_fingerprint(cfg.path), "keys": keys}


@register("pretrained", PretrainedConfig, {"numeric", "categorical", "text"})
def build(cfg: PretrainedConfig, spec: dict) -> nn.Module:
    if spec["task"] == "causal_lm":
        from .causal_lm import CausalLM

        model = CausalLM(cfg, spec.get("total_steps"))
        if cfg.finetune != "full":
            model.base = frozen_base(model, cfg, "model.")
        return model
    if len(spec["text"]) != 1:
        raise ValueError(f"model.type 'pretrained' needs exactly one text column, found {len(spec['text'])}; "
                         "declare it with data.types: {COLUMN: text}")
    col = next(iter(spec["text"]))
    encoder = PretrainedEncoder(cfg, spec.get("total_steps"))
    model = FoundryModel({f"text:{col}": encoder}, {f"text:{col}": encoder.width}, spec["n_numeric"],
                         spec["categorical"], cfg.hidden, spec["n_outputs"], cfg.dropout)
    if cfg.finetune != "full":  # the frozen base reloads from its directory: save adapter + head only
        model.base = frozen_base(model, cfg, f"encoders.text__{col}.model.")
    return model


@functools.cache
def base_fingerprint(path: str) -> str:
    """sha256 over the base model's weight files (so an adapter is never loaded onto another base)."""
    h = hashlib.sha256()
    for f in sorted(resolve_model_path(path).glob("*.safetensors")):
        h.update(sha256_file(f).encode())
    return h.hexdigest()
