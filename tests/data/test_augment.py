"""Text swap/delete and time-series jitter/scaling: they change only what they should, and a training run uses them."""

import torch

from modelfoundry.config import AugmentConfig, load_config
from modelfoundry.data.augment import augment_batch, delete_tokens, is_active, swap_tokens
from modelfoundry.train import train

from ..conftest import SAMPLE, tiny_config


def _texts():
    ids = torch.zeros(3, 12, dtype=torch.long)
    lengths = torch.tensor([12, 6, 2])
    for r, n in enumerate(lengths):
        ids[r, :n] = torch.arange(100, 100 + int(n))
    return ids, lengths


def test_swap_keeps_each_texts_tokens_ends_and_padding():
    ids, lengths = _texts()
    torch.manual_seed(0)
    out = swap_tokens(ids, lengths, 0.9)
    assert not torch.equal(out, ids)
    for r, n in enumerate(lengths.tolist()):
        assert sorted(out[r, :n].tolist()) == ids[r, :n].tolist()
        assert out[r, 0] == ids[r, 0] and out[r, n - 1] == ids[r, n - 1]
        assert (out[r, n:] == 0).all()


def test_delete_shortens_texts_and_keeps_order():
    ids, lengths = _texts()
    torch.manual_seed(0)
    out, new = delete_tokens(ids, lengths, 0.5)
    assert (new <= lengths).all() and new[0] < 12 and new[2] == 2
    for r, n in enumerate(new.tolist()):
        kept = out[r, :n].tolist()
        assert kept == sorted(kept) and kept[0] == 100 and kept[-1] == 99 + int(lengths[r])
        assert (out[r, n:] == 0).all()


def test_sequence_jitter_and_scaling():
    seq = torch.ones(4, 5, 3)
    torch.manual_seed(0)
    scaled = augment_batch({"sequence": seq}, AugmentConfig(sequence_scaling=0.2))["sequence"]
    assert not torch.equal(scaled, seq) and torch.allclose(scaled[:, 0], scaled[:, 4])  # one factor per window
    jittered = augment_batch({"sequence": seq}, AugmentConfig(sequence_jitter=0.1))["sequence"]
    assert not torch.allclose(jittered[:, 0], jittered[:, 4])
    assert is_active(AugmentConfig(text_delete=0.1)) and not is_active(AugmentConfig())


def test_training_with_text_augmentation(tmp_path):
    cfg = tiny_config(tmp_path, {"path": str(SAMPLE), "target": "category", "text": {"vocab_size": 300, "min_frequency": 1},
                                 "augment": {"text_swap": 0.1, "text_delete": 0.1}}, train={"epochs": 2})
    run = train(load_config(cfg))
    assert run.status == "complete" and len(run.history()) == 2
