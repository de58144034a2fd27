"""Tokenizers and token ids: train a WordPiece or byte-level BPE tokenizer on the training texts (`tokenizers`;
Chinese needs no spaces), load a model's tokenizer.json, pad encodings, and the on-disk token cache a resumed run and
a study's trials reuse."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .sources import DataError

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts, kind: str, vocab_size: int, min_frequency: int, lowercase: bool):
    """A WordPiece, byte-level BPE or character tokenizer trained on `texts` (a list, or a function returning a fresh
    iterator over them, so a corpus need not fit in memory). All handle Chinese (no spaces needed): WordPiece splits
    every CJK character; byte-level BPE learns merges inside runs of characters; char keeps every character."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    texts_again = texts if callable(texts) else (lambda: iter(texts))
    if kind == "wordpiece":
        return _train_wordpiece(texts_again, vocab_size, min_frequency, lowercase)
    if kind == "char":
        return _train_char(texts_again, lowercase)
    if kind != "bpe":
        raise ValueError(f"data.text.tokenizer: unknown kind {kind!r} (wordpiece, bpe, char or a tokenizer directory)")
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    norms = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(norms)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts_again(), trainer=trainer)
    return tok


def _train_char(texts, lowercase: bool):
    """One token per character seen in training (sorted, so the same texts give the same ids), [UNK] for any other:
    the character-level models of char-rnn and nanoGPT's shakespeare_char."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    chars: set[str] = set()
    for t in texts():
        chars.update(t.lower() if lowercase else t)
    vocab = {tok: i for i, tok in enumerate(SPECIALS + sorted(chars - set(SPECIALS)))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"(?m)."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIALS)
    return tok


def _wordpiece(vocab: dict[str, int] | None, lowercase: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                     max_input_chars_per_word=100) if vocab else models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return tok


def _train_wordpiece(texts: list[str], vocab_size: int, min_frequency: int, lowercase: bool):
    """WordPiece, the same vocabulary and ids for the same texts. The trainer creates each `##c` continuation
    token while walking a hash map, so their ids, and through merge tie-breaking even the learned pieces,
    differed from call to call (huggingface/tokenizers#1794): the same config trained another model each time,
    and a resumed run re-tokenized with other ids than its checkpoint's embeddings. Declaring every `##c` up
    front, in sorted order, fixes their ids before training; the tokenizer is then rebuilt from the learned
    vocabulary with only the real special tokens."""
    from tokenizers import trainers

    tok = _wordpiece(None, lowercase)
    chars: set[str] = set()
    for t in texts():
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(t)):
            chars.update(word[1:])
    continuations = ["##" + c for c in sorted(chars)]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIALS + continuations)
    tok.train_from_iterator(texts(), trainer=trainer)
    out = _wordpiece(tok.get_vocab(), lowercase)
    out.add_special_tokens(SPECIALS)
    return out


def load_tokenizer(path: Path):
    from tokenizers import Tokenizer

    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"data.text.tokenizer: {path} has no tokenizer.json (expected a tokenizer directory, "
                        "or 'wordpiece' / 'bpe' to train one)")
    tok = Tokenizer.from_file(str(file))
    tok.no_padding()  # many saved tokenizers pad to a fixed length; we pad per batch
    return tok


def pad_ids(encodings) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of a list of `tokenizers` encodings, right-padded with 0, and their lengths (at least 1)."""
    lengths = [max(1, len(e.ids)) for e in encodings]
    ids = torch.zeros(len(encodings), max(lengths), dtype=torch.long)
    for i, e in enumerate(encodings):
        ids[i, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
    return ids, torch.tensor(lengths)


TOKEN_CACHE_VERSION = 1


def token_cache_key(tokenizer, texts: list, max_length: int, segments: bool) -> str:
    """What a text column's encoding depends on: the tokenizer (its full serialisation, so a retrained or another
    tokenizer misses), the truncation length, whether segment ids are kept, and every text, in order."""
    h = hashlib.sha256(f"foundry-tokens/{TOKEN_CACHE_VERSION}/{max_length}/{segments}/".encode())
    h.update(tokenizer.to_str().encode())
    for t in texts:
        parts = (t,) if isinstance(t, str) else tuple(t)  # a sentence pair is two texts
        h.update(len(parts).to_bytes(1, "little"))
        for part in parts:
            b = part.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()[:40]


def load_cached_tokens(path: Path) -> tuple[dict[str, torch.Tensor], int] | None:
    """A cached encoding, or None when the file is missing or unreadable (it is then rebuilt and rewritten)."""
    from safetensors import SafetensorError, safe_open

    if not path.exists():
        return None
    try:
        with safe_open(str(path), "pt") as fh:
            tensors = {k: fh.get_tensor(k).long() for k in fh.keys()}
            truncated = int(fh.metadata()["truncated"])
    except (SafetensorError, OSError, KeyError, ValueError, TypeError):
        return None
    return (tensors, truncated) if "ids" in tensors and "lengths" in tensors else None
