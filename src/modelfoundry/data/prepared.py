"""What the data stage hands to models and training: the split frames, their encodings and targets, the fitted
preprocessor and the data profile."""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def task(self) -> str:
        return self.preprocessor.task
