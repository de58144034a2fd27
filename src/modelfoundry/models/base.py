"""What the families share: `FoundryModel` (per-input encoders, concatenated, then an MLP head) and its helpers."""

from __future__ import annotations

import torch
from torch import nn

from ..core.spec import BatchKey, InputSpec


def mlp_layers(sizes: list[int], dropout: float, activation: str = "relu") -> nn.Sequential:
    act = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}[activation]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), act(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def embedding_width(cardinality: int) -> int:
    return int(min(50, max(2, round(1.6 * cardinality ** 0.56))))


class Built(nn.Module):
    """What every model we build carries beside its weights (models/io.py saves the first three in architecture.json).
    Declared here, with their defaults, so no stage has to guess whether a model has them."""

    spec: InputSpec | None = None
    """What it was built from."""
    resized: dict[str, list[int]] | None = None
    """Tensors that structured pruning shrank, and their new shapes."""
    inference_dtype: str | None = None
    """"bfloat16" after `foundry compress --quantize bf16`: predictions run under bf16 autocast."""
    base: dict | None = None
    """Frozen pretrained weights that reload from their directory ({path, sha256, keys}) and are not saved."""


class FoundryModel(Built):
    """Concatenate per-input encodings, then a head. `encoders` maps a batch key to a module."""

    def __init__(self, encoders: dict[str, nn.Module], widths: dict[str, int], n_numeric: int,
                 cardinalities: list[int], hidden: list[int], n_outputs: int, dropout: float, activation: str = "relu"):
        super().__init__()
        self.keys = list(encoders)
        self.encoders = nn.ModuleDict({BatchKey.module_name(k): m for k, m in encoders.items()})
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_width(c)) for c in cardinalities)
        width = n_numeric + sum(embedding_width(c) for c in cardinalities) + sum(widths.values())
        self.trunk = mlp_layers([width, *hidden], dropout, activation)
        self.out = nn.Linear(hidden[-1] if hidden else width, n_outputs)

    def text_encoders(self) -> dict[str, str]:
        """Text column -> the name of its encoder module."""
        return {col: BatchKey.module_name(k) for k in self.keys if (col := BatchKey.text_column(k)) is not None}

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
            enc = self.encoders[BatchKey.module_name(key)]
            col = BatchKey.text_column(key)
            if col is not None:
                seg = BatchKey.segment(col)
                extra = [batch[seg]] if seg in batch and getattr(enc, "takes_segments", False) else []
                parts.append(enc(batch[key], batch.get(BatchKey.length(col)), *extra))
            else:
                parts.append(enc(batch[key]))
        h = torch.cat([p.float() if p.dtype != torch.bfloat16 else p for p in parts], dim=-1)
        return self.out(self.trunk(h))


def text_mask(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
