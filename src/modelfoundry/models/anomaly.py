"""Anomaly detection on tables (data.task anomaly): models that learn what normal rows look like from the inputs
alone and return one anomaly score per row (higher = stranger), which is also their training loss.

- autoencoder: an MLP squeezes the scaled inputs through a narrow code and rebuilds them; the score is the mean
  squared reconstruction error.
- deep_svdd: Deep Support Vector Data Description (Ruff et al., ICML 2018, one-class): an MLP without biases maps rows
  close to a fixed centre (the mean of the first training batch's codes); the score is the squared distance to it.

Inputs: numeric columns and categorical embeddings (the autoencoder rebuilds the numeric part and the embeddings)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..core.schema import Section
from ..core.spec import InputSpec
from .base import Built, embedding_width
from .registry import register

TASKS = {"anomaly"}


class AutoencoderConfig(Section):
    type: Literal["autoencoder"] = "autoencoder"
    hidden: list[int] = [64, 32]
    """Widths of the encoder's layers; the decoder mirrors them."""
    code: int = Field(8, gt=0)
    """Width of the bottleneck: narrower forces the model to keep only what most rows share."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    contamination: float = Field(0.0, ge=0.0, lt=0.5)
    """The share of training rows that may be anomalies: in each batch, that share of highest-scoring rows is left out
    of the loss (a trimmed loss), so the model does not learn to rebuild them too. 0 = every row counts."""


class DeepSVDDConfig(Section):
    type: Literal["deep_svdd"] = "deep_svdd"
    hidden: list[int] = [64, 32]
    """Widths of the encoder's layers (no biases: with them, the constant map to the centre is a trivial solution)."""
    code: int = Field(16, gt=0)
    """Width of the output space the centre lives in."""
    contamination: float = Field(0.0, ge=0.0, lt=0.5)
    """The share of training rows that may be anomalies: in each batch, that share of rows farthest from the centre is
    left out of the loss (a trimmed loss), so the model does not learn to pull them in too. 0 = every row counts."""


class TableInput(nn.Module):
    """Numeric features and categorical embeddings, concatenated: the row as the anomaly models see it."""

    def __init__(self, spec: InputSpec):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_width(c)) for c in spec.categorical)
        self.width = spec.n_numeric + sum(embedding_width(c) for c in spec.categorical)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [batch["numeric"]] if "numeric" in batch else []
        if "categorical" in batch:
            parts += [emb(batch["categorical"][:, i]) for i, emb in enumerate(self.embeddings)]
        return torch.cat(parts, dim=1)


def trimmed(score: torch.Tensor, share: float, training: bool) -> torch.Tensor:
    """Training: the batch's highest `share` of scores zeroed and the rest scaled by N / kept, so the loss (the batch
    mean) is the mean over the kept rows. Otherwise the scores as they are."""
    if not training or not share or len(score) < 2:
        return score
    keep = max(1, int(round(len(score) * (1 - share))))
    cut = score[:, 0].detach().kthvalue(keep).values
    kept = (score[:, 0].detach() <= cut).to(score.dtype)
    return score * kept[:, None] * (len(score) / kept.sum().clamp_min(1.0))


def _mlp(sizes: list[int], bias: bool = True, dropout: float = 0.0, last_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2 or last_activation:
            layers += [nn.LeakyReLU(0.1)] + ([nn.Dropout(dropout)] if dropout else [])
    return nn.Sequential(*layers)


class Autoencoder(Built):
    def __init__(self, cfg: AutoencoderConfig, spec: InputSpec):
        super().__init__()
        self.input = TableInput(spec)
        sizes = [self.input.width, *cfg.hidden, cfg.code]
        self.encoder = _mlp(sizes, dropout=cfg.dropout)
        self.decoder = _mlp(sizes[::-1], dropout=cfg.dropout)
        self.contamination = cfg.contamination

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.input(batch)
        target = x.detach() if len(self.input.embeddings) else x  # embeddings are rebuilt, not chased
        score = ((self.decoder(self.encoder(x)) - target) ** 2).mean(dim=1, keepdim=True)
        return trimmed(score, self.contamination, self.training)


class DeepSVDD(Built):
    def __init__(self, cfg: DeepSVDDConfig, spec: InputSpec):
        super().__init__()
        self.input = TableInput(spec)
        self.encoder = _mlp([self.input.width, *cfg.hidden, cfg.code], bias=False)
        self.register_buffer("center", torch.zeros(cfg.code))
        self.register_buffer("centered", torch.zeros((), dtype=torch.bool))
        self.contamination = cfg.contamination

    @torch.no_grad()
    def _set_center(self, z: torch.Tensor, eps: float = 0.1) -> None:
        c = z.float().mean(0)
        c[(c.abs() < eps) & (c < 0)] = -eps  # a coordinate near 0 is pushed off it (Ruff et al.): a 0 centre is
        c[(c.abs() < eps) & (c >= 0)] = eps  # reached by zero weights, which map every row there
        self.center.copy_(c)
        self.centered.fill_(True)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        z = self.encoder(self.input(batch))
        if self.training and not bool(self.centered):
            self._set_center(z)
        return trimmed(((z - self.center) ** 2).sum(dim=1, keepdim=True), self.contamination, self.training)


@register("autoencoder", AutoencoderConfig, {"numeric", "categorical"}, TASKS)
def build_autoencoder(cfg: AutoencoderConfig, spec: InputSpec) -> nn.Module:
    return Autoencoder(cfg, spec)


@register("deep_svdd", DeepSVDDConfig, {"numeric", "categorical"}, TASKS)
def build_deep_svdd(cfg: DeepSVDDConfig, spec: InputSpec) -> nn.Module:
    return DeepSVDD(cfg, spec)
