"""Recommenders (data.task recommend): a user vector and an item vector whose dot product scores the pair.

- mf: matrix factorisation with user and item biases (Koren, Bell & Volinsky 2009); the item bias carries
  popularity, the vectors carry taste.
- two_tower: each side's embedding passes through its own MLP (a "tower") and is L2-normalised; the score is the
  cosine over a temperature (Yi et al. 2019, YouTube's two-tower retrieval). Item vectors can be computed once for the
  whole catalogue and searched by any nearest-neighbour index.

Implicit feedback trains with a softmax over the whole catalogue (or, with `negatives`, over that many items drawn
uniformly, shared by the batch), so the forward pass returns [batch, 1 + alternatives] logits, the picked one first;
explicit feedback returns the predicted rating [batch, 1]. `scores(users)` scores the whole catalogue for ranking."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.schema import Section
from ..core.spec import InputSpec
from .base import Built, mlp_layers
from .registry import register

TASKS = {"recommend"}


class MFConfig(Section):
    type: Literal["mf"] = "mf"
    dim: int = Field(64, gt=0)
    """Width of the user and item vectors."""
    negatives: int = Field(0, ge=0)
    """Implicit feedback: catalogue items sampled per batch as the alternatives the picked item must outrank; 0 = the
    whole catalogue (a full softmax: best while the catalogue fits a batch's scores in memory, ~100k items)."""


class TwoTowerConfig(Section):
    type: Literal["two_tower"] = "two_tower"
    dim: int = Field(64, gt=0)
    """Width of the output vectors (and of the id embeddings)."""
    hidden: list[int] = [128]
    """Widths of each tower's hidden layers."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    temperature: float = Field(0.1, gt=0.0)
    """The cosine of two unit vectors is divided by this: lower sharpens the softmax over items."""
    negatives: int = Field(0, ge=0)
    """Implicit feedback: catalogue items sampled per batch as the alternatives the picked item must outrank; 0 = the
    whole catalogue (a full softmax: best while the catalogue fits a batch's scores in memory, ~100k items)."""


class Recommender(Built):
    """What both families share: sampled-softmax or rating outputs, and whole-catalogue scores."""

    def __init__(self, spec: InputSpec, negatives: int):
        super().__init__()
        self.n_items, self.explicit, self.negatives = spec.items, spec.explicit, negatives

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_vectors(users) * self.item_vectors(items)).sum(-1)

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """[users, items] scores over the whole catalogue (column 0, the unknown item, is -inf)."""
        items = torch.arange(self.n_items, device=users.device)
        s = self.user_vectors(users) @ self.item_vectors(items).T
        s[:, 0] = float("-inf")
        return s

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, items = batch["user"], batch["item"]
        if self.explicit:
            return self.pair_scores(users, items)[:, None]
        u = self.user_vectors(users)
        if not self.negatives:  # the whole catalogue: the picked item's logit moved first, the unknown item left out
            s = u @ self.item_vectors(torch.arange(self.n_items, device=users.device)).T
            s[:, 0] = float("-inf")
            pos = s.gather(1, items[:, None])
            s = s.scatter(1, items[:, None], float("-inf"))
            return torch.cat([pos, s], dim=1)
        # validation draws the same negatives every epoch, so its loss is comparable from epoch to epoch
        gen = None if self.training else torch.Generator(device=users.device).manual_seed(0)
        neg = torch.randint(1, max(self.n_items, 2), (self.negatives,), generator=gen, device=users.device)
        pos = (u * self.item_vectors(items)).sum(-1, keepdim=True)
        return torch.cat([pos, u @ self.item_vectors(neg).T], dim=1)


class MatrixFactorization(Recommender):
    def __init__(self, cfg: MFConfig, spec: InputSpec):
        super().__init__(spec, cfg.negatives)
        self.user = nn.Embedding(spec.users, cfg.dim)
        self.item = nn.Embedding(spec.items, cfg.dim)
        self.user_bias = nn.Embedding(spec.users, 1)
        self.item_bias = nn.Embedding(spec.items, 1)
        self.global_bias = nn.Parameter(torch.zeros(1))
        for e in (self.user, self.item):
            nn.init.normal_(e.weight, std=0.05)
        for e in (self.user_bias, self.item_bias):
            nn.init.zeros_(e.weight)

    # the biases ride along as two extra dimensions: [u, 1, b_u + g] . [i, b_i, 1] = u.i + b_i + b_u + g
    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(self.user_bias(users))
        return torch.cat([self.user(users), ones, self.user_bias(users) + self.global_bias], dim=-1)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.item(items), self.item_bias(items), torch.ones_like(self.item_bias(items))], dim=-1)


class TwoTower(Recommender):
    def __init__(self, cfg: TwoTowerConfig, spec: InputSpec):
        super().__init__(spec, cfg.negatives)
        self.user = nn.Embedding(spec.users, cfg.dim)
        self.item = nn.Embedding(spec.items, cfg.dim)
        self.user_tower = nn.Sequential(mlp_layers([cfg.dim, *cfg.hidden], cfg.dropout),
                                        nn.Linear(cfg.hidden[-1] if cfg.hidden else cfg.dim, cfg.dim))
        self.item_tower = nn.Sequential(mlp_layers([cfg.dim, *cfg.hidden], cfg.dropout),
                                        nn.Linear(cfg.hidden[-1] if cfg.hidden else cfg.dim, cfg.dim))
        self.scale = 1.0 / cfg.temperature
        self.rating_scale = nn.Parameter(torch.ones(1))  # explicit feedback: cosine -> rating (standardised)
        self.rating_bias = nn.Parameter(torch.zeros(1))

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.user_tower(self.user(users)), dim=-1) * self.scale ** 0.5

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.item_tower(self.item(items)), dim=-1) * self.scale ** 0.5

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        s = super().pair_scores(users, items)
        return s * self.rating_scale + self.rating_bias if self.explicit else s


@register("mf", MFConfig, {"interactions"}, TASKS)
def build_mf(cfg: MFConfig, spec: InputSpec) -> nn.Module:
    return MatrixFactorization(cfg, spec)


@register("two_tower", TwoTowerConfig, {"interactions"}, TASKS)
def build_two_tower(cfg: TwoTowerConfig, spec: InputSpec) -> nn.Module:
    return TwoTower(cfg, spec)
