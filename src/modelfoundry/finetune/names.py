"""`model.finetune`'s type: the registered strategies' names (built after strategies.py has registered them)."""

from __future__ import annotations

from typing import Literal

from . import strategies  # noqa: F401
from .registry import STRATEGIES

FinetuneName = Literal[tuple(STRATEGIES)]  # type: ignore[valid-type]
