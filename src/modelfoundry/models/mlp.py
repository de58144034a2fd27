"""MLP for tables: numeric features, categorical embeddings and bag-of-token text encodings, concatenated."""

from __future__ import annotations

import torch
from torch import nn

from ..config import MLPConfig
from . import FoundryModel, register, text_mask


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


@register("mlp", MLPConfig, {"numeric", "categorical", "text", "image", "sequence"})
def build(cfg: MLPConfig, spec: dict) -> nn.Module:
    encoders, widths = {}, {}
    for col, vocab in spec["text"].items():
        encoders[f"text:{col}"] = BagOfTokens(vocab, cfg.text_embedding_dim)
        widths[f"text:{col}"] = cfg.text_embedding_dim
    for key in ("image", "sequence"):
        if spec[key]:
            encoders[key] = Flatten()
            widths[key] = int(torch.tensor(spec[key]).prod())
    return FoundryModel(encoders, widths, spec["n_numeric"], spec["categorical"], cfg.hidden, spec["n_outputs"],
                        cfg.dropout, cfg.activation)
