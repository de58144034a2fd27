"""Deep Knowledge Tracing (Piech et al., NeurIPS 2015): an LSTM reads a student's answers, each one embedded as
(skill, right or wrong), and after every answer holds a knowledge state: the chance of answering each skill right
next. The output for step t is the state after steps < t, read at step t's skill (a logit per answer; the first answer
of a chunk has no history and is not scored)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..core.schema import Section
from ..core.spec import InputSpec
from .base import Built
from .registry import register


class DKTConfig(Section):
    type: Literal["dkt"] = "dkt"
    hidden: int = Field(128, gt=0)
    """LSTM width (the knowledge state's memory)."""
    layers: int = Field(1, ge=1)
    embedding: int = Field(64, gt=0)
    """Width of an answer's (skill, right/wrong) embedding."""
    dropout: float = Field(0.2, ge=0.0, lt=1.0)


class DKT(Built):
    def __init__(self, cfg: DKTConfig, spec: InputSpec):
        super().__init__()
        self.skills = spec.skills
        self.embed = nn.Embedding(2 * spec.skills, cfg.embedding, padding_idx=0)
        self.lstm = nn.LSTM(cfg.embedding, cfg.hidden, cfg.layers, batch_first=True,
                            dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, spec.skills)

    def states(self, skill: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        """[N, T, skills] logits: after answers 0..t, the chance of getting each skill right next."""
        x = self.embed(skill + self.skills * answer * (skill > 0))
        h, _ = self.lstm(x)
        return self.out(self.drop(h))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        skill, answer = batch["skill"], batch["answer"]
        logits = self.states(skill[:, :-1], answer[:, :-1])
        nxt = logits.gather(2, skill[:, 1:, None])[..., 0]
        return torch.cat([torch.zeros_like(nxt[:, :1]), nxt], dim=1)  # step 0: nothing predicted


@register("dkt", DKTConfig, {"answers"}, {"knowledge_tracing"})
def build_dkt(cfg: DKTConfig, spec: InputSpec) -> nn.Module:
    return DKT(cfg, spec)
