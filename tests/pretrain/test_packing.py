"""Packing into memory-mapped token streams, blocks per epoch, and BERT masking."""

from __future__ import annotations

import numpy as np
import pytest

from modelfoundry.data.sources import DataError
from modelfoundry.data.text import train_tokenizer
from modelfoundry.pretrain.packing import Blocks, Masker, token_dtype, write_streams


def test_streams_hold_every_document_once_joined_by_the_separator(tmp_path):
    tok = train_tokenizer(["ab", "abc"], "char", 0, 1, False)
    sep = tok.token_to_id("[SEP]")
    docs = [("train", "ab"), ("val", "c"), ("train", "abc")]
    stats = write_streams(iter(docs), tok, sep, tmp_path, np.dtype(np.uint16))
    train = np.fromfile(tmp_path / "train.bin", dtype=np.uint16)
    assert tok.decode(train.tolist()) == "ababc"
    assert (train == sep).sum() == 2 and train[2] == sep
    assert stats["train"] == {"tokens": 7, "documents": 2, "bytes": 5}
    assert stats["val"]["tokens"] == 2


def test_a_failed_write_leaves_no_partial_stream(tmp_path):
    tok = train_tokenizer(["ab"], "char", 0, 1, False)

    def docs():
        yield "train", "ab"
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_streams(docs(), tok, 3, tmp_path, np.dtype(np.uint16))
    assert not (tmp_path / "train.bin").exists()


def test_token_dtype_by_vocabulary():
    assert token_dtype(8000, "auto") == np.uint16
    assert token_dtype(70000, "auto") == np.uint32
    with pytest.raises(DataError, match="uint16 holds ids up to 65535.*70000"):
        token_dtype(70000, "uint16")


def test_training_blocks_move_their_cut_each_epoch_and_validation_blocks_do_not(tmp_path):
    stream = np.arange(100, dtype=np.uint16)
    stream.tofile(tmp_path / "s.bin")
    train = Blocks(tmp_path / "s.bin", 100, "uint16", 10, seed=0, shift=True)
    val = Blocks(tmp_path / "s.bin", 100, "uint16", 10, seed=0, shift=False)
    assert len(train) == 9 and len(val) == 10
    starts = set()
    for epoch in range(1, 8):
        train.set_epoch(epoch)
        b = train.__getitems__([0, 1])["text:lm"]
        assert (b[1] - b[0] == 10).all() and (b[0, 1:] - b[0, :-1] == 1).all()
        starts.add(int(b[0, 0]))
    assert len(starts) > 1  # without the shift every epoch cuts at 0
    val.set_epoch(3)
    assert val.__getitems__([2])["text:lm"][0, 0] == 20


def test_bert_masking_rates_specials_and_determinism(tmp_path):
    rng = np.random.default_rng(0)
    vocab = 1000
    ids = rng.integers(5, vocab, 200_000)
    ids[::50] = 3  # separators are never masked
    m = Masker(0.15, mask_id=4, special_ids=[0, 1, 2, 3, 4], vocab_size=vocab)
    out, labels = m(ids, np.random.default_rng(1))
    chosen = labels != -100
    assert abs(chosen.mean() - 0.15 * 0.98) < 0.005
    assert not chosen[ids == 3].any()
    assert (labels[chosen] == ids[chosen]).all()
    assert abs((out[chosen] == 4).mean() - 0.8) < 0.01
    unchanged = (out[chosen] == ids[chosen]).mean()
    assert 0.09 < unchanged < 0.115  # 10% kept, plus random swaps that drew the same token
    assert not np.isin(out[chosen & (out != 4)], [0, 1, 2, 3]).any()
    again, _ = m(ids, np.random.default_rng(1))
    assert (again == out).all()


def test_whole_word_masking_masks_continuations_with_their_word():
    starts = np.array([True] * 5 + [True, False, True, False, False])  # 5 starts a word, 6 continues it, ...
    m = Masker(0.5, mask_id=4, special_ids=[0, 1, 2, 3, 4], vocab_size=10, word_start=starts)
    ids = np.array([5, 6, 7, 8, 9] * 400)
    _, labels = m(ids, np.random.default_rng(0))
    chosen = (labels != -100).reshape(-1, 5)
    assert (chosen[:, 0] == chosen[:, 1]).all()  # word 5+6
    assert (chosen[:, 2] == chosen[:, 3]).all() and (chosen[:, 3] == chosen[:, 4]).all()  # word 7+8+9
    assert chosen[:, 0].any() and not chosen[:, 0].all()


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "char"])
def test_the_same_corpus_and_seed_give_the_same_tokenizer_and_streams(tmp_path, kind):
    from modelfoundry.config import load_config
    from modelfoundry.pretrain import prepare_corpus

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"第{i}行 line number {i} of the corpus, 中文也可以" for i in range(300)), encoding="utf-8")
    cfg = load_config({"name": "p", "data": {"path": str(corpus), "task": "mlm" if kind == "wordpiece" else "clm",
                                             "text": {"tokenizer": kind, "vocab_size": 120, "min_frequency": 1},
                                             "corpus": {"block_size": 16}},
                       "model": {"type": "bert" if kind == "wordpiece" else "gpt", "preset": "nano"}})
    a, b = prepare_corpus(cfg, tmp_path / "a"), prepare_corpus(cfg, tmp_path / "b")
    assert a.preprocessor.tokenizer.to_str() == b.preprocessor.tokenizer.to_str()
    for split in ("train", "val", "test"):
        assert a.blocks[split].path.read_bytes() == b.blocks[split].path.read_bytes()
    assert a.profile["streams"]["train"]["documents"] + a.profile["streams"]["val"]["documents"] \
        + a.profile["streams"]["test"]["documents"] == 300
