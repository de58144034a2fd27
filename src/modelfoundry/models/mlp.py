"""MLP for tables: numeric features, categorical embeddings and bag-of-token text encodings, concatenated."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..core.spec import InputSpec
from .base import FoundryModel, text_mask
from .keras_zoo import BackendChoice
from .registry import register


class MLPConfig(BackendChoice):
    type: Literal["mlp"] = "mlp"
    hidden: list[int] = [128, 64]
    """Widths of the hidden layers after the per-feature encodings are concatenated."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    activation: Literal["relu", "gelu", "silu"] = "relu"
    text_embedding_dim: int = Field(64, gt=0)
    """Width of the bag-of-tokens text encoding."""



class BagOfTokens(nn.Module):
    """Mean of token embeddings (padding excluded): cheap and order-free; works for Chinese characters too."""

    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = text_mask(ids, lengths).unsqueeze(-1).to(self.emb.weight.dtype)
        return (self.emb(ids) * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


@register("mlp", MLPConfig, {"numeric", "categorical", "text", "image", "audio", "sequence"})
def build(cfg: MLPConfig, spec: InputSpec) -> nn.Module:
    encoders, widths = {}, {}
    for col, vocab in spec.text.items():
        encoders[f"text:{col}"] = BagOfTokens(vocab, cfg.text_embedding_dim)
        widths[f"text:{col}"] = cfg.text_embedding_dim
    for key in ("image", "audio", "sequence"):
        if getattr(spec, key):
            encoders[key] = Flatten()
            widths[key] = int(torch.tensor(getattr(spec, key)).prod())
    return FoundryModel(encoders, widths, spec.n_numeric, spec.categorical, cfg.hidden, spec.n_outputs,
                        cfg.dropout, cfg.activation)
