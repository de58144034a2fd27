"""Batching and inference over a model: in-memory tensor batches with dynamic padding, length-bucketed inference
batches under a padded-token budget, and predictions (probabilities or values) back in row order."""

from __future__ import annotations

import contextlib
import math
from typing import Literal

import numpy as np
import torch
from torch import nn


class TensorData(torch.utils.data.Dataset):
    """In-memory tensors; a batch is fetched with one index operation and text is trimmed to the
    batch's longest sequence (dynamic padding)."""

    def __init__(self, features: dict[str, torch.Tensor], y: torch.Tensor | None = None):
        self.features, self.y = features, y

    def __len__(self) -> int:
        return len(next(iter(self.features.values())))

    def __getitem__(self, i: int):
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices)
        batch = {k: v[idx] for k, v in self.features.items()}
        for k in [k for k in batch if k.startswith("len:")]:
            col = k[4:]
            width = int(batch[k].max())
            batch[f"text:{col}"] = batch[f"text:{col}"][:, :width]
            if f"segment:{col}" in batch:
                batch[f"segment:{col}"] = batch[f"segment:{col}"][:, :width]
        if self.y is not None:
            batch["y"] = self.y[idx]
        return batch


def collate_identity(batch):
    return batch


INFERENCE_TOKENS = 512
"""Padded tokens per inference batch of text (rows x longest text) for torch models, chosen with
bench/inference_batching.py (README, Serving); a model may say otherwise with an `inference_tokens` attribute
(ONNX Runtime's int8 MiniLM is fastest at 256)."""


def inference_batches(features: dict[str, torch.Tensor], y: torch.Tensor | None, batch_size: int,
                      max_tokens: int | None = INFERENCE_TOKENS):
    """(row indices, batch) pairs covering every row once. With text, rows go in order of length and a batch
    ends where rows x its longest text would pass `max_tokens` (or at batch_size rows): a batch of mixed lengths
    padded to its longest costs up to twice the compute. Without text: sequential batches of batch_size."""
    data = TensorData(features, y)
    n = len(data)
    lens = [v for k, v in features.items() if k.startswith("len:")]
    if not lens or max_tokens is None:
        for start in range(0, n, batch_size):
            idx = list(range(start, min(start + batch_size, n)))
            yield idx, data.__getitems__(idx)
        return
    total = torch.stack([v.long() for v in lens]).sum(0)
    order = torch.argsort(total, stable=True).tolist()
    length = total[order].tolist()
    start = 0
    while start < n:
        end = start + 1
        while end < n and end - start < batch_size and (end - start + 1) * max(length[end], 1) <= max_tokens:
            end += 1
        idx = order[start:end]
        yield idx, data.__getitems__(idx)
        start = end


@torch.no_grad()
def predict_tensors(model: nn.Module, features: dict[str, torch.Tensor], task: str, batch_size: int = 256,
                    device: torch.device | str = "cpu", autocast: bool = False,
                    max_tokens: int | Literal["model"] | None = "model") -> np.ndarray:
    """Probabilities [N, K] (classification) or standardized predictions [N] (regression).
    A model with bf16 weights (`inference_dtype`, from foundry compress) always runs under bf16 autocast.
    max_tokens: the padded-token budget of a text batch; "model" takes the model's `inference_tokens`
    (default INFERENCE_TOKENS), None gives sequential batches of batch_size."""
    model.eval()
    if max_tokens == "model":
        max_tokens = getattr(model, "inference_tokens", INFERENCE_TOKENS)
    autocast = autocast or getattr(model, "inference_dtype", None) == "bfloat16"
    outs, rows = [], []
    for idx, batch in inference_batches(features, None, batch_size, max_tokens):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch).float()
        outs.append(as_outputs(logits, task))
        rows += idx
    return in_row_order(np.concatenate(outs), rows)


def as_outputs(logits: torch.Tensor, task: str) -> np.ndarray:
    """Probabilities (classification) or the first output, in NumPy. Not torch: on tiny tensors torch's ops go
    to its thread pool, which with an ONNX Runtime session in the process waits on ORT's spinning threads (the
    softmax of a [21, 77] batch took 3.8 ms; int8 MiniLM predicted 370 rows/s at 64 rows instead of 480)."""
    out = logits.detach().float().cpu().numpy()
    if task == "forecast":  # every step ahead
        return out
    if task != "classification":
        return out[:, 0]
    e = np.exp(out - out.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def in_row_order(out: np.ndarray, rows: list[int]) -> np.ndarray:
    """Outputs computed in the order `rows`, back in row order."""
    result = np.empty_like(out)
    result[np.asarray(rows, dtype=np.int64)] = out
    return result


@torch.no_grad()
def lm_scores(model: nn.Module, features: dict[str, torch.Tensor], batch_size: int = 64, device="cpu",
              autocast=None) -> dict:
    """A causal LM's mean loss over response tokens, and its perplexity (exp of that loss)."""
    model.eval()
    total = torch.zeros(2)
    lengths = features["len:lm"]
    order = torch.argsort(lengths)  # length-sorted batches pad little
    for chunk in order.split(batch_size):
        batch = {k: v.to(device) for k, v in TensorData(features).__getitems__(chunk.tolist()).items()}
        with autocast() if autocast else contextlib.nullcontext():
            total += model(batch).float().sum(0).cpu()
    loss = float(total[0] / total[1].clamp_min(1.0))
    return {"loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4), "tokens": int(total[1])}
