"""Packing: documents tokenized once, joined with the end-of-text token and written as one flat token stream per split
(uint16 when the vocabulary fits, else uint32) in the run's cache; training reads fixed-size blocks from it through a
memory map, so a corpus larger than memory streams from disk and no token is padding.

`Blocks` is the dataset the training loop reads: block i is tokens [o + i*B, o + (i+1)*B) of the stream, where the
training split's offset o changes with the epoch (seeded), so successive epochs see the text cut at other places.
For masked-LM pretraining each block is masked as it is read (BERT: 15% of tokens chosen; of those 80% [MASK], 10% a
random token, 10% unchanged), seeded by (seed, epoch, block), so a resumed run sees the same masks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ..core.runs import replacing
from ..data.sources import DataError

ENCODE_BATCH = 1000
UINT16_MAX_VOCAB = 65535


def token_dtype(vocab_size: int, requested: str) -> np.dtype:
    if requested == "uint16" and vocab_size > UINT16_MAX_VOCAB:
        raise DataError(f"data.corpus.token_dtype: uint16 holds ids up to {UINT16_MAX_VOCAB}, but the vocabulary has "
                        f"{vocab_size} tokens; use uint32 (or auto)")
    if requested == "uint32" or (requested == "auto" and vocab_size > UINT16_MAX_VOCAB):
        return np.dtype(np.uint32)
    return np.dtype(np.uint16)


def write_streams(docs: Iterable[tuple[str, str]], tokenizer, sep_id: int, folder: Path, dtype: np.dtype,
                  progress=None) -> dict[str, dict]:
    """Tokenize (split, document) pairs in batches and append each document's ids and `sep_id` to
    `folder/<split>.bin`. Files appear whole or not at all (written beside, renamed at the end). Returns per split
    {tokens, documents, bytes} (bytes: the documents' UTF-8 size, for bits per byte)."""
    folder.mkdir(parents=True, exist_ok=True)
    stats: dict[str, dict] = {}
    handles, contexts = {}, {}
    pending: dict[str, list[str]] = {}

    def flush(split: str) -> None:
        texts = pending.pop(split, [])
        if not texts:
            return
        encs = tokenizer.encode_batch(texts, add_special_tokens=False)
        ids = np.fromiter((i for e in encs for i in (*e.ids, sep_id)), dtype=np.int64)
        handles[split].write(ids.astype(dtype).tobytes())
        s = stats[split]
        s["tokens"] += len(ids)
        if progress is not None:
            progress.update(len(texts))

    try:
        for split, doc in docs:
            if split not in handles:
                contexts[split] = replacing(folder / f"{split}.bin")
                handles[split] = open(contexts[split].__enter__(), "wb")
                stats[split] = {"tokens": 0, "documents": 0, "bytes": 0}
            stats[split]["documents"] += 1
            stats[split]["bytes"] += len(doc.encode("utf-8"))
            pending.setdefault(split, []).append(doc)
            if len(pending[split]) >= ENCODE_BATCH:
                flush(split)
        for split in list(pending):
            flush(split)
        for split, fh in handles.items():
            fh.close()
            contexts[split].__exit__(None, None, None)
    except BaseException as exc:
        for split, fh in handles.items():
            fh.close()
            contexts[split].__exit__(type(exc), exc, exc.__traceback__)
        raise
    return stats


class Masker:
    """BERT's masking of a block: `probability` of the maskable tokens are chosen (whole words together when
    `word_start` is given: a chosen word's continuation pieces are chosen with it); 80% of them become `mask_id`, 10%
    a random ordinary token, 10% stay. Labels are the original ids at chosen positions and -100 elsewhere."""

    def __init__(self, probability: float, mask_id: int, special_ids: list[int], vocab_size: int,
                 word_start: np.ndarray | None = None):
        self.p, self.mask_id, self.vocab_size = probability, mask_id, vocab_size
        self.special = np.zeros(vocab_size, dtype=bool)
        self.special[[i for i in special_ids if i < vocab_size]] = True
        self.ordinary = np.flatnonzero(~self.special)
        self.word_start = word_start

    def __call__(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        maskable = ~self.special[ids]
        if self.word_start is None:
            chosen = (rng.random(ids.shape) < self.p) & maskable
        else:  # one draw per word: a word starts at a word-start token (or after a special token)
            starts = self.word_start[ids] | ~maskable
            starts[0] = True
            word = np.cumsum(starts) - 1
            chosen = (rng.random(word[-1] + 1) < self.p)[word] & maskable
        if not chosen.any() and maskable.any():  # every block predicts at least one token
            chosen[rng.choice(np.flatnonzero(maskable))] = True
        labels = np.where(chosen, ids, -100)
        u = rng.random(ids.shape)
        out = ids.copy()
        out[chosen & (u < 0.8)] = self.mask_id
        swap = chosen & (u >= 0.8) & (u < 0.9)
        out[swap] = self.ordinary[rng.integers(0, len(self.ordinary), int(swap.sum()))]
        return out, labels


class Blocks(torch.utils.data.Dataset):
    """Fixed-size blocks of a split's token stream, read through a memory map (see the module docstring).
    A batch is {"text:lm": ids [B, block]} (+ "labels:lm" for mlm, with -100 where nothing is predicted) and a dummy
    "y" (the loop counts rows by it)."""

    features: dict = {}  # the loop looks here for text lengths (length bucketing): blocks all have one length
    y = None

    def __init__(self, path: Path, n_tokens: int, dtype: str, block_size: int, seed: int, shift: bool,
                 masker: Masker | None = None):
        self.path, self.n_tokens, self.dtype, self.block = Path(path), n_tokens, np.dtype(dtype), block_size
        self.seed, self.masker, self.epoch = seed, masker, 0
        # a shifting (training) split moves its cut by up to block-1 tokens each epoch: keep the count fixed
        self.max_offset = block_size - 1 if shift and n_tokens >= 2 * block_size else 0
        self.count = (n_tokens - self.max_offset) // block_size
        self._memmap = None

    def __len__(self) -> int:
        return self.count

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def stream(self) -> np.ndarray:
        if self._memmap is None:
            self._memmap = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.n_tokens,))
        return self._memmap

    def offset(self) -> int:
        if not self.max_offset:
            return 0
        return int(np.random.default_rng([self.seed, self.epoch, 17]).integers(0, self.max_offset + 1))

    def __getitem__(self, i: int):
        return self.__getitems__([i])

    def __getitems__(self, indices) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        starts = self.offset() + idx * self.block
        ids = self.stream[starts[:, None] + np.arange(self.block)].astype(np.int64)
        batch = {}
        if self.masker is not None:
            labels = np.empty_like(ids)
            for r, i in enumerate(idx):
                ids[r], labels[r] = self.masker(ids[r], np.random.default_rng([self.seed, self.epoch, int(i)]))
            batch["labels:lm"] = torch.from_numpy(labels)
        batch["text:lm"] = torch.from_numpy(ids)
        batch["y"] = torch.zeros(len(idx))
        return batch

    def __getstate__(self):  # a memory map is reopened, not copied, in another process
        return {**self.__dict__, "_memmap": None}


def read_meta(folder: Path) -> dict | None:
    meta = folder / "meta.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
