"""A BERT-style Transformer encoder built from a Hugging Face config, from scratch (random weights).
Text goes in as token ids; time-series windows are projected to the hidden size and fed as embeddings."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ..core.spec import InputSpec
from .base import FoundryModel, text_mask
from .keras_zoo import BackendChoice
from .registry import register


class TransformerConfig(BackendChoice):
    type: Literal["transformer"] = "transformer"
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(2, gt=0)
    num_heads: int = Field(4, gt=0)
    intermediate_size: int = Field(256, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    pooling: Literal["cls", "mean"] = "mean"
    """How token vectors become one vector: the first token's ([CLS]) or the mean over real (unpadded) tokens."""
    hidden: list[int] = []
    """Hidden layers of the head."""

    @model_validator(mode="after")
    def _heads_divide(self) -> TransformerConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        return self



class TransformerEncoder(nn.Module):
    def __init__(self, cfg: TransformerConfig, vocab: int | None, max_positions: int, n_features: int = 0):
        super().__init__()
        from transformers import BertConfig, BertModel

        hf = BertConfig(vocab_size=vocab or 8, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
                        max_position_embeddings=max_positions, pad_token_id=0)
        self.bert = BertModel(hf, add_pooling_layer=False)
        self.project = nn.Linear(n_features, cfg.hidden_size) if n_features else None
        self.pooling = cfg.pooling

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.project is None:
            mask = text_mask(x, lengths).long()
            h = self.bert(input_ids=x, attention_mask=mask).last_hidden_state
        else:
            mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
            h = self.bert(inputs_embeds=self.project(x), attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return h[:, 0]
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


@register("transformer", TransformerConfig, {"numeric", "categorical", "text", "sequence"})
def build(cfg: TransformerConfig, spec: InputSpec) -> nn.Module:
    encoders, widths = {}, {}
    for col, vocab in spec.text.items():
        encoders[f"text:{col}"] = TransformerEncoder(cfg, vocab, spec.max_length)
        widths[f"text:{col}"] = cfg.hidden_size
    if spec.sequence:
        encoders["sequence"] = TransformerEncoder(cfg, None, spec.sequence[0] + 2, spec.sequence[1])
        widths["sequence"] = cfg.hidden_size
    return FoundryModel(encoders, widths, spec.n_numeric, spec.categorical, cfg.hidden, spec.n_outputs, cfg.dropout)
