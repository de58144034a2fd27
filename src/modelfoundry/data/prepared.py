"""What the data stage hands to models and training: the split frames, their encodings and targets, the fitted
preprocessor and the data profile."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from .features import Encoded, Preprocessor


@dataclass
class Prepared:
    frames: dict[str, pd.DataFrame]
    encoded: dict[str, Encoded]
    targets: dict[str, torch.Tensor]
    preprocessor: Preprocessor
    profile: dict
    raw: dict[str, pd.DataFrame] = field(default_factory=dict)
    """The tables as read, before cleaning ("data", and "test" with data.test_path): what the data audit and k-fold
    reuse, so that a run reads each file once."""
    windows: dict[str, pd.DataFrame] = field(default_factory=dict)
    """data.task forecast: per split, one row per window (series, origin time, level, scale, position)."""
    series: dict[str, pd.DataFrame] = field(default_factory=dict)
    """data.task forecast: each series on its regular time axis, gaps filled (the fan chart's history)."""

    @property
    def task(self) -> str:
        return self.preprocessor.task
