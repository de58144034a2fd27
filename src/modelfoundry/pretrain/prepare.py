"""`prepare_corpus(cfg)`: a raw-text corpus -> a tokenizer (trained on the training documents, or the model's own for
continued pretraining), packed token streams per split in the cache, and `Blocks` datasets for the training loop.

The streams are cached under a key made of the corpus files' sha256, the data settings and the tokenizer: a resumed
run (and a second run on the same corpus) reuses them instead of tokenizing again."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.paths import resolve_model_path
from ..core.progress import bar
from ..core.runs import atomic_write_text, sha256_file
from ..core.spec import InputSpec
from ..data.sources import DataError
from ..data.text import SPECIALS, load_tokenizer, train_tokenizer
from .corpus import CorpusStats, assign_splits, corpus_files, documents
from .packing import Blocks, Masker, read_meta, token_dtype, write_streams

if TYPE_CHECKING:  # the root config composes the sections read here: imported for annotations only
    from ..config import Config

CACHE_VERSION = 1
KEY = "lm"


class CorpusPreprocessor:
    """The fitted part of a pretraining run: its tokenizer, block size and special ids; saved beside the model."""

    def __init__(self, task: str, tokenizer, block_size: int, eos_id: int, mask_id: int | None,
                 special_ids: list[int], word_pieces: str | None = None):
        self.task, self.tokenizer, self.block_size = task, tokenizer, block_size
        self.eos_id, self.mask_id, self.special_ids, self.word_pieces = eos_id, mask_id, special_ids, word_pieces
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    @property
    def max_length(self) -> int:
        return self.block_size

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.tokenizer.encode(prompt, add_special_tokens=False).ids

    def spec(self) -> InputSpec:
        return InputSpec(task=self.task, n_outputs=0, text={KEY: self.vocab_size}, max_length=self.block_size,
                         eos_id=self.eos_id)

    def masker(self, probability: float, whole_word: bool) -> Masker:
        start = None
        if whole_word and self.word_pieces:
            vocab = self.tokenizer.get_vocab(with_added_tokens=True)
            start = np.ones(self.vocab_size, dtype=bool)
            for token, i in vocab.items():
                if i < self.vocab_size:
                    start[i] = (not token.startswith("##")) if self.word_pieces == "wordpiece" else token[:1] in "ĠĊ"
        return Masker(probability, self.mask_id, self.special_ids, self.vocab_size, start)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "tokenizer_0.json", self.tokenizer.to_str())
        state = {"task": self.task, "block_size": self.block_size, "eos_id": self.eos_id, "mask_id": self.mask_id,
                 "special_ids": self.special_ids, "word_pieces": self.word_pieces}
        atomic_write_text(directory / "preprocessor.json", json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: Path, state: dict) -> CorpusPreprocessor:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(directory / "tokenizer_0.json"))
        return cls(state["task"], tok, state["block_size"], state["eos_id"], state["mask_id"], state["special_ids"],
                   state.get("word_pieces"))


@dataclass
class CorpusData:
    """What the data stage hands the loop for pretraining (the corpus counterpart of data.Prepared)."""

    preprocessor: CorpusPreprocessor
    blocks: dict[str, Blocks]
    profile: dict
    raw: dict = field(default_factory=dict)
    frames: dict = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.preprocessor.task


def _word_pieces(tokenizer) -> str | None:
    spec = json.loads(tokenizer.to_str())
    kind = (spec.get("model") or {}).get("type")
    pre = json.dumps(spec.get("pre_tokenizer"))
    if kind == "WordPiece":
        return "wordpiece"
    if kind == "BPE" and "ByteLevel" in pre:
        return "bytelevel"
    return None


def _model_tokenizer(cfg: Config, task: str):
    """Continued pretraining: the model's own tokenizer and its end-of-text / separator and mask tokens."""
    path = resolve_model_path(cfg.model.path)
    tok = load_tokenizer(path)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    vocab = tok.get_vocab(with_added_tokens=True)
    if task == "mlm":
        sep = next((vocab[t] for t in ("[SEP]", "</s>") if t in vocab), None)
        mask = next((vocab[t] for t in ("[MASK]", "<mask>") if t in vocab), None)
        if sep is None or mask is None:
            raise DataError(f"{path / 'tokenizer.json'}: masked-LM pretraining needs a separator ([SEP] or </s>) and a "
                            "mask token ([MASK] or <mask>) in the tokenizer; found neither")
        eos = sep
    else:
        eos = config.get("eos_token_id")
        eos = eos[0] if isinstance(eos, list) else eos
        if eos is None:
            eos = next((vocab[t] for t in ("<|endoftext|>", "</s>", "[SEP]") if t in vocab), None)
        if eos is None:
            raise DataError(f"{path / 'config.json'}: no eos_token_id, and the tokenizer has no end-of-text token")
        mask = None
    special = sorted({i for t, i in vocab.items() if t in set(SPECIALS) | {"<s>", "</s>", "<pad>", "<unk>", "<mask>",
                                                                           "<|endoftext|>"}} | {eos})
    return tok, int(eos), mask, special


def _fingerprint(cfg: Config, files: list[Path]) -> str:
    d = cfg.data
    h = hashlib.sha256(f"foundry-corpus/{CACHE_VERSION}/{cfg.data.task}/{cfg.train.seed}/".encode())
    h.update(json.dumps({"corpus": d.corpus.model_dump(mode="json"), "text": d.text.model_dump(mode="json"),
                         "format": d.format, "test_path": bool(d.test_path)}, sort_keys=True).encode())
    if cfg.model.type == "pretrained":
        h.update(sha256_file(resolve_model_path(cfg.model.path) / "tokenizer.json").encode())
    for f in files:
        h.update(f"{f.name}:{sha256_file(f)}".encode())
    return h.hexdigest()[:24]


def prepare_corpus(cfg: Config, cache_dir: Path) -> CorpusData:
    d, task = cfg.data, cfg.data.task
    if d.path is None:
        raise DataError("data.path: no corpus given; set data.path to a .txt file, a folder of text files, a JSONL "
                        "file or a table with a text column")
    path = cfg.resolve_path(d.path)
    test_path = cfg.resolve_path(d.test_path) if d.test_path else None
    files = corpus_files(path) + (corpus_files(test_path) if test_path else [])
    folder = cache_dir / f"corpus-{_fingerprint(cfg, files)}"
    meta = read_meta(folder)
    if meta is None:
        meta = _build(cfg, path, test_path, folder)
    tokenizer = load_tokenizer(folder)
    pre = CorpusPreprocessor(task, tokenizer, d.corpus.block_size, meta["eos_id"], meta["mask_id"],
                             meta["special_ids"], _word_pieces(tokenizer))
    masker = pre.masker(d.corpus.mlm_probability, d.corpus.whole_word_mask) if task == "mlm" else None
    block = d.corpus.block_size
    streams = meta["streams"]
    train_tokens = streams.get("train", {}).get("tokens", 0)
    if train_tokens < block:
        largest = max((s["tokens"] for s in streams.values()), default=0)
        raise DataError(f"{path}: the training split has {train_tokens} tokens ({streams.get('train', {}).get('documents', 0)} "
                        f"documents), fewer than one block of data.corpus.block_size = {block}; "
                        + (f"set block_size to at most {train_tokens} (at least 8), or give more text"
                           if train_tokens >= 8 else f"give more text (the whole corpus has {largest} tokens in its "
                           "largest split)"))
    blocks, unused = {}, {}
    for split, s in streams.items():
        if s["tokens"] < block:
            unused[split] = (f"{s['tokens']} tokens ({s['documents']} documents), fewer than one block of {block}; "
                             f"not used (lower data.corpus.block_size or raise data.corpus.{split})")
            continue
        blocks[split] = Blocks(folder / f"{split}.bin", s["tokens"], meta["dtype"], block, cfg.train.seed,
                               shift=(split == "train"), masker=masker)
    if "val" not in blocks and "test" not in blocks:
        raise DataError(f"{path}: no held-out text: "
                        + ("; ".join(f"{k}: {v}" for k, v in unused.items()) or "data.corpus.val and test are 0")
                        + "; hold out documents (data.corpus.val / test) or give data.test_path")
    profile = {"source": str(path), "task": task, "files": meta["files"], "skipped_files": meta["skipped"],
               "tokenizer": meta["tokenizer"], "vocab_size": pre.vocab_size, "token_dtype": meta["dtype"],
               "block_size": block, "streams": streams, "unused_splits": unused,
               "splits": {s: len(b) for s, b in blocks.items()}, "cache": str(folder)}
    return CorpusData(pre, blocks, profile)


def _build(cfg: Config, path: Path, test_path: Path | None, folder: Path) -> dict:
    d, task = cfg.data, cfg.data.task
    c = d.corpus
    test_share = 0.0 if test_path else c.test

    def split_docs(stats=None):
        yield from assign_splits(documents(path, c, d.format, stats), c.val, test_share, cfg.train.seed)
        if test_path:
            yield from (("test", doc) for doc in documents(test_path, c, d.format, stats))

    def train_texts():
        return (doc for split, doc in split_docs() if split == "train")

    if cfg.model.type == "pretrained":
        tok, eos, mask, special = _model_tokenizer(cfg, task)
        described = {"from": str(resolve_model_path(cfg.model.path))}
    else:
        t = d.text
        if Path(t.tokenizer).is_dir() or t.tokenizer not in ("wordpiece", "bpe", "char"):
            tok = load_tokenizer(cfg.resolve_path(t.tokenizer))
            described = {"from": str(cfg.resolve_path(t.tokenizer))}
        else:
            if next(iter(train_texts()), None) is None:
                stats = CorpusStats()
                n = sum(1 for _ in split_docs(stats))
                raise DataError(f"{path}: the corpus has no training text ({n} documents in all, {stats.files} files "
                                f"read, {len(stats.skipped)} skipped" + (f": {stats.skipped[0]}" if stats.skipped else "")
                                + ")")
            tok = train_tokenizer(train_texts, t.tokenizer, t.vocab_size, t.min_frequency, t.lowercase)
            described = {"kind": t.tokenizer, "vocab_size": tok.get_vocab_size(), "lowercase": t.lowercase}
        vocab = tok.get_vocab(with_added_tokens=True)
        if "[SEP]" not in vocab:
            raise DataError(f"data.text.tokenizer: {described.get('from', 'the tokenizer')} has no [SEP] token, which "
                            "separates documents (and ends a text); add it, or let ModelFoundry train one")
        eos, mask = vocab["[SEP]"], vocab.get("[MASK]") if task == "mlm" else None
        special = sorted(vocab[s] for s in SPECIALS if s in vocab)
    if task == "mlm" and mask is None:
        raise DataError("data.task mlm: the tokenizer has no [MASK] token to mask with")
    dtype = token_dtype(tok.get_vocab_size(with_added_tokens=True), c.token_dtype)
    stats = CorpusStats()
    progress = bar(None, "tokenizing corpus", unit="doc")
    try:
        streams = write_streams(split_docs(stats), tok, eos, folder, dtype, progress)
    finally:
        progress.close()
    if not streams:
        raise DataError(f"{path}: the corpus holds no text ({stats.files} files read, {len(stats.skipped)} skipped"
                        + (f", e.g. {stats.skipped[0]['file']}: {stats.skipped[0]['reason']}" if stats.skipped else "")
                        + ")")
    atomic_write_text(folder / "tokenizer.json", tok.to_str())
    meta = {"streams": streams, "dtype": dtype.name, "eos_id": int(eos), "mask_id": None if mask is None else int(mask),
            "special_ids": [int(i) for i in special], "files": stats.files, "skipped": stats.skipped,
            "tokenizer": described}
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False))
    return meta
