"""Held-out scores of a language model on packed blocks: mean loss per predicted token, perplexity, and for next-token
prediction bits per byte (the loss in bits spread over the text's UTF-8 bytes: comparable across tokenizers)."""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.sources import DataError
from .corpus import CorpusStats, documents
from .packing import Blocks, token_dtype, write_streams


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


def score_corpus(model: nn.Module, preprocessor, path: Path, corpus, fmt: str = "auto", seed: int = 0,
                 mlm_probability: float = 0.15, batch_size: int = 32) -> dict:
    """A pretraining run's held-out scores on another corpus (every document of it, packed with the run's own
    tokenizer into blocks of its block size, in a temporary folder): what `foundry evaluate RUN corpus.txt` prints."""
    stats = CorpusStats()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dtype = token_dtype(preprocessor.vocab_size, "auto")
        streams = write_streams((("test", d) for d in documents(path, corpus, fmt, stats)), preprocessor.tokenizer,
                                preprocessor.eos_id, folder, np.dtype(dtype))
        s = streams.get("test", {"tokens": 0, "documents": 0, "bytes": 0})
        if s["tokens"] < preprocessor.block_size:
            raise DataError(f"{path}: {s['tokens']} tokens ({s['documents']} documents, {len(stats.skipped)} files "
                            f"skipped), fewer than one block of {preprocessor.block_size}")
        masker = preprocessor.masker(mlm_probability, False) if preprocessor.task == "mlm" else None
        blocks = Blocks(folder / "test.bin", s["tokens"], dtype.name, preprocessor.block_size, seed, shift=False,
                        masker=masker)
        bpt = s["bytes"] / s["tokens"] if preprocessor.task == "clm" else None
        out = corpus_scores(model, blocks, batch_size, bytes_per_token=bpt)
    return {**out, "documents": s["documents"], "blocks": len(blocks), "skipped_files": stats.skipped}
