"""Score a trained model on one split of prepared data."""

from __future__ import annotations

import numpy as np

from ..core.infer import predict_tensors
from ..data import Prepared
from . import metrics as M


def outputs(model, data: Prepared, split: str, accelerator=None) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, output) in user units: class codes + probabilities, or values + predictions."""
    device = accelerator.device if accelerator is not None else "cpu"
    autocast = accelerator is not None and accelerator.mixed_precision == "bf16"
    out = predict_tensors(model, data.encoded[split].features, data.task, device=device, autocast=autocast)
    y = data.targets[split].numpy()
    if data.task == "regression":
        pre = data.preprocessor
        return pre.decode_regression(y), pre.decode_regression(out)
    return y, out


def predict_split(model, data: Prepared, split: str, names: list[str], accelerator=None) -> dict:
    y, out = outputs(model, data, split, accelerator)
    return M.compute(data.task, y, out, names)
