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
from ..core.spec import BatchKey, InputSpec
from ..finetune import STRATEGIES, Adapted, FinetuneName, adapt, keep_layers
from .base import FoundryModel, text_mask
from .causal_lm import CausalLM
from .lm import continued
from .registry import register


class PretrainedConfig(Section):
    type: Literal["pretrained"] = "pretrained"
    path: str = "minilm"
    """A local Hugging Face model directory (config.json, *.safetensors, tokenizer.json), relative to the config
    file, or 'minilm' for the embedded all-MiniLM-L6-v2. Its tokenizer is used for the text column."""
    finetune: FinetuneName = "lora"
    """A registered strategy (finetune/strategies.py). full = every weight trains; linear_probe = the encoder is frozen,
    only the head trains (its encodings are computed once); lora, adalora, ia3, prefix, prompt, loha, vera = PEFT
    methods (AdaLoRA's budget update runs every optimizer step and its orthogonal regulariser joins the loss; prefix =
    learned keys/values in every layer, prompt = learned virtual input tokens; both work for encoders, through PEFT's
    feature-extraction wrapper; loha = low-rank Hadamard product, vera = shared random projections with trained
    scaling vectors)."""
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
    pooling: Literal["cls", "mean", "last"] = "mean"
    """How token vectors become one vector: the first token's ([CLS]), the mean over real (unpadded) tokens, or
    the last real token's (for a decoder such as GPT-2: the one token that has read the whole text, as Hugging
    Face's GPT2ForSequenceClassification pools)."""
    hidden: list[int] = []
    """Hidden layers of the head."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _adapter_only_for_lora(self) -> PretrainedConfig:
        if self.adapter and STRATEGIES[self.finetune].peft_config is None:
            peft_methods = ", ".join(n for n, s in STRATEGIES.items() if s.peft_config)
            raise ValueError(f"`adapter` options apply to the PEFT methods ({peft_methods}), not {self.finetune!r}")
        if self.freeze_layers and self.finetune != "full":
            raise ValueError("`freeze_layers` applies to finetune: full")
        if self.layer_lr_decay != 1.0 and self.finetune != "full":
            raise ValueError("`layer_lr_decay` applies to finetune: full")
        return self



class PretrainedEncoder(Adapted):
    def __init__(self, cfg: PretrainedConfig, total_steps: int | None = None):
        super().__init__()
        from transformers import AutoModel  # deferred: seconds to import; only pretrained runs need it

        path = resolve_model_path(cfg.path)
        try:  # our pooling reads the token states: BERT's pooler would be dead weight (and AdaLoRA
            # cannot score adapters on it, since they never get a gradient)
            model = AutoModel.from_pretrained(path, use_safetensors=True, add_pooling_layer=False)
        except TypeError:  # architectures without that option
            model = AutoModel.from_pretrained(path, use_safetensors=True)
        if cfg.layers is not None:
            keep_layers(model, cfg.layers)
        self.model = adapt(model, cfg.finetune, cfg.adapter, total_steps, "FEATURE_EXTRACTION", cfg.freeze_layers)
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
        if self.pooling == "last":  # texts are padded on the right: the last real token is at length - 1
            at = (lengths.to(h.device) - 1).clamp_min(0)  # a gather, not arange indexing: ONNX keeps the batch axis
            return h.gather(1, at.view(-1, 1, 1).expand(-1, 1, h.shape[-1])).squeeze(1)
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


class CachedEncoding(nn.Module):
    """Stands in for a frozen encoder while its outputs, computed once, are fed as the batch's text input."""

    def forward(self, embedding: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return embedding


@torch.no_grad()
def cache_frozen_encodings(model: nn.Module, features: dict[str, torch.Tensor], batch_size: int = 128) -> dict[str, torch.Tensor]:
    """A linear probe's encoder never changes: encode each text once (length-sorted batches), and return
    features where `text:<col>` holds the pooled encoding and `len:<col>` is gone."""
    out = dict(features)
    for col, name in model.text_encoders().items():
        enc = model.encoders[name]
        if not isinstance(enc, PretrainedEncoder) or not STRATEGIES[enc.finetune].frozen:
            continue
        ids, lengths = features[BatchKey.text(col)], features[BatchKey.length(col)]
        segments = features.get(BatchKey.segment(col))
        enc.eval()
        order = torch.argsort(lengths)
        pooled = torch.empty(len(ids), enc.width)
        for chunk in order.split(batch_size):
            width = int(lengths[chunk].max())
            seg = None if segments is None else segments[chunk, :width]
            pooled[chunk] = enc(ids[chunk, :width], lengths[chunk], seg).float()
        out[BatchKey.text(col)] = pooled
        out.pop(BatchKey.length(col))
        out.pop(BatchKey.segment(col), None)
    return out


def frozen_base(model: nn.Module, cfg: PretrainedConfig, prefix: str) -> dict:
    """What an adapter run leaves out of its files: the frozen base weights, reloaded from the base directory."""
    # every state-dict name of a frozen tensor: a shared one (PEFT's prompt encoders keep a second reference to the
    # word embeddings) appears under each of its names, which named_parameters() would list only once
    keys = {n for n, v in model.state_dict(keep_vars=True).items()
            if n.startswith(prefix) and not (isinstance(v, nn.Parameter) and v.requires_grad)}
    return {"path": cfg.path, "sha256": base_fingerprint(cfg.path), "keys": keys}


@register("pretrained", PretrainedConfig, {"numeric", "categorical", "text"},
          {"classification", "regression", "causal_lm", "clm", "mlm"})
def build(cfg: PretrainedConfig, spec: InputSpec) -> nn.Module:
    if spec.task in ("clm", "mlm"):  # continued (domain-adaptive) pretraining
        model = continued(cfg, spec)
        if cfg.finetune != "full":
            model.base = frozen_base(model, cfg, "model.")
        return model
    if spec.task == "causal_lm":
        model = CausalLM(cfg, spec.total_steps)
        if cfg.finetune != "full":
            model.base = frozen_base(model, cfg, "model.")
        return model
    if len(spec.text) != 1:
        raise ValueError(f"model.type 'pretrained' needs exactly one text column, found {len(spec.text)}; "
                         "declare it with data.types: {COLUMN: text}")
    col = next(iter(spec.text))
    encoder = PretrainedEncoder(cfg, spec.total_steps)
    model = FoundryModel({f"text:{col}": encoder}, {f"text:{col}": encoder.width}, spec.n_numeric,
                         spec.categorical, cfg.hidden, spec.n_outputs, cfg.dropout)
    if cfg.finetune != "full":  # the frozen base reloads from its directory: save adapter + head only
        model.base = frozen_base(model, cfg, f"encoders.{BatchKey.module_name(BatchKey.text(col))}.model.")
    return model


@functools.cache
def base_fingerprint(path: str) -> str:
    """sha256 over the base model's weight files (so an adapter is never loaded onto another base)."""
    h = hashlib.sha256()
    for f in sorted(resolve_model_path(path).glob("*.safetensors")):
        h.update(sha256_file(f).encode())
    return h.hexdigest()
