"""Held-out scores of a language model on packed blocks: mean loss per predicted token, perplexity, and for next-token
prediction bits per byte (the loss in bits spread over the text's UTF-8 bytes: comparable across tokenizers)."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from .packing import Blocks


@torch.no_grad()
def corpus_scores(model: nn.Module, blocks: Blocks, batch_size: int = 32, device="cpu", autocast=None,
                  bytes_per_token: float | None = None, max_blocks: int | None = None) -> dict:
    """Sum the model's per-block [loss sum, predicted tokens] over every block (the first `max_blocks`)."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    n = len(blocks) if max_blocks is None else min(len(blocks), max_blocks)
    for start in range(0, n, batch_size):
        batch = blocks.__getitems__(list(range(start, min(start + batch_size, n))))
        batch.pop("y")
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast() if autocast else contextlib.nullcontext():
            total += model(batch).double().sum(0).cpu()
    if was_training:
        model.train()
    loss = float(total[0] / max(float(total[1]), 1.0))
    out = {"loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4), "tokens": int(total[1])}
    if bytes_per_token:
        out["bits_per_byte"] = round(loss / math.log(2) / bytes_per_token, 6)
    return out
