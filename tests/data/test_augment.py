"""Every augmentation changes only what it should, and a training run uses it."""

import pytest
import torch

from modelfoundry.config import load_config
from modelfoundry.data.augment import (
    augment_batch,
    color_jitter,
    delete_tokens,
    insert_synonyms,
    is_active,
    mixup,
    oversample,
    replace_synonyms,
    rotate_images,
    slice_windows,
    swap_tokens,
    warp_windows,
)
from modelfoundry.data.config import AugmentConfig
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


def _each_option_changes_training(cfg: dict, frame=None) -> None:
    """Every augmentation option in the config changes what the model trains on: the same run (same seed) with that
    option alone switched off has another training-loss history. A switch the loop ignored would leave it equal."""
    import copy

    from modelfoundry.data.augment import BATCH_OPTIONS

    def losses(c):
        run = train(load_config(c), frame=frame)
        assert run.status == "complete"
        return [h["train_loss"] for h in run.history()]

    base = losses(cfg)
    options = [k for k in cfg["data"]["augment"] if k in BATCH_OPTIONS or k == "oversample"]
    assert options
    for opt in options:
        off = copy.deepcopy(cfg)
        off["data"]["augment"].pop(opt)
        off["name"] = f"{cfg['name']}-without-{opt}"
        assert losses(off) != base, f"switching {opt} off changed nothing the model saw"


def test_training_with_text_augmentation(tmp_path):
    cfg = tiny_config(tmp_path, {"path": str(SAMPLE), "target": "category", "text": {"vocab_size": 300, "min_frequency": 1},
                                 "augment": {"text_swap": 0.1, "text_delete": 0.1}}, train={"epochs": 2})
    _each_option_changes_training(cfg)


# --- synonym replacement and insertion from embedding neighbours ---

VOCAB = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "card": 4, "cards": 5, "money": 6, "cash": 7,
         "transfer": 8, "payment": 9, "the": 10, "##ing": 11, "42": 12, "qzxv": 13}


def test_neighbour_table_holds_only_shared_words_never_the_word_itself():
    from modelfoundry.data.augment import neighbour_table

    table = neighbour_table(VOCAB, "minilm", k=2)
    assert table.shape == (14, 2)
    for token in ("[PAD]", "[CLS]", "##ing", "42", "qzxv"):  # specials, pieces, numbers, words MiniLM lacks
        assert (table[VOCAB[token]] == -1).all(), token
    words = {VOCAB[w] for w in ("card", "cards", "money", "cash", "transfer", "payment", "the")}
    for w in words:
        assert set(table[w].tolist()) <= words - {w}
    assert VOCAB["cards"] in table[VOCAB["card"]].tolist()  # the embedding table knows its plurals
    assert VOCAB["money"] in table[VOCAB["cash"]].tolist()


def _table():
    table = torch.full((20, 2), -1, dtype=torch.long)
    table[5] = torch.tensor([15, 16])
    table[6] = torch.tensor([17, 17])
    return table


def test_replace_synonyms_touches_only_inner_words_with_neighbours():
    ids = torch.tensor([[5, 5, 6, 7, 5], [5, 6, 5, 0, 0]])
    lengths = torch.tensor([5, 3])
    torch.manual_seed(0)
    out = replace_synonyms(ids, lengths, 0.99, _table())
    assert out[0, 0] == 5 and out[0, 4] == 5 and out[1, 0] == 5 and out[1, 2] == 5  # ends stay
    assert out[0, 1].item() in (15, 16) and out[0, 2] == 17 and out[0, 3] == 7 and out[1, 1] == 17
    assert (out[1, 3:] == 0).all()


def test_insert_synonyms_puts_a_neighbour_after_the_word_and_respects_max_length():
    ids = torch.tensor([[2, 6, 7, 3], [2, 6, 3, 0]])
    lengths = torch.tensor([4, 3])
    torch.manual_seed(0)
    out, new = insert_synonyms(ids, lengths, 0.99, _table(), max_len=8)
    assert new.tolist() == [5, 4]
    assert out[0, :5].tolist() == [2, 6, 17, 7, 3] and out[1, :4].tolist() == [2, 6, 17, 3]
    assert (out[1, 4:] == 0).all()
    full, same = insert_synonyms(ids, lengths, 0.99, _table(), max_len=4)  # no room in row 0
    assert full.shape[1] == 4  # the short row grew into the batch's width, not past it
    assert same.tolist() == [4, 4] and full[0, :4].tolist() == [2, 6, 7, 3]


def test_training_with_synonyms_and_insertion_from_minilm(tmp_path):
    cfg = tiny_config(tmp_path, {"path": str(SAMPLE), "target": "category", "text": {"vocab_size": 300, "min_frequency": 1},
                                 "augment": {"text_synonym": 0.2, "text_insert": 0.1, "synonym_neighbours": 3,
                                             "synonym_model": "minilm"}}, train={"epochs": 1})
    _each_option_changes_training(cfg)


# --- images ---

def test_rotation_keeps_the_centre_and_angle_zero_is_the_identity():
    img = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    torch.manual_seed(0)
    small = rotate_images(img, 10)
    assert torch.allclose(small[..., 2, 2], img[..., 2, 2], atol=1e-4) and not torch.allclose(small, img)
    assert torch.allclose(rotate_images(img, 0), img, atol=1e-4)


def test_color_jitter_changes_brightness_contrast_saturation_per_image():
    img = torch.randn(4, 3, 6, 6)
    torch.manual_seed(0)
    out = color_jitter(img, 0.4)
    assert out.shape == img.shape and not torch.allclose(out, img)
    assert torch.allclose(color_jitter(img, 0.0), img, atol=1e-6)
    grey = color_jitter(torch.randn(2, 1, 6, 6), 0.4)  # one channel: no saturation, no error
    assert grey.shape == (2, 1, 6, 6)


# --- time series ---

def test_window_slicing_stretches_a_sub_window_back_to_full_length():
    seq = torch.linspace(0, 9, 10).view(1, 10, 1).repeat(3, 1, 2)
    torch.manual_seed(0)
    out = slice_windows(seq, 0.5)
    assert out.shape == seq.shape
    steps = out[:, 1:, 0] - out[:, :-1, 0]
    assert torch.allclose(steps, torch.full_like(steps, 0.5), atol=1e-5)  # half the span over the same steps
    assert (out[:, 0, 0] >= 0).all() and (out[:, -1, 0] <= 9).all()


def test_time_warping_keeps_the_ends_and_the_order():
    seq = torch.linspace(0, 9, 10).view(1, 10, 1).repeat(4, 1, 1)
    torch.manual_seed(0)
    out = warp_windows(seq, 0.5)
    assert torch.allclose(out[:, 0], seq[:, 0]) and torch.allclose(out[:, -1], seq[:, -1], atol=1e-4)
    assert (out[:, 1:] >= out[:, :-1] - 1e-5).all() and not torch.allclose(out, seq)  # monotone, but warped


# --- mixup and oversampling ---

def test_mixup_blends_continuous_inputs_and_keeps_discrete_ones():
    batch = {"numeric": torch.eye(4), "categorical": torch.arange(4).view(4, 1)}
    torch.manual_seed(0)
    out, perm, lam = mixup(batch, 0.4)
    assert 0 < lam < 1 and sorted(perm.tolist()) == [0, 1, 2, 3]
    assert torch.allclose(out["numeric"], lam * torch.eye(4) + (1 - lam) * torch.eye(4)[perm])
    assert torch.equal(out["categorical"], batch["categorical"])


def test_oversampling_balances_the_training_classes_with_smote_nc():
    g = torch.Generator().manual_seed(0)
    feats = {"numeric": torch.randn(60, 3, generator=g), "categorical": torch.randint(1, 4, (60, 2), generator=g)}
    y = torch.tensor([0] * 50 + [1] * 10)
    out, ys = oversample(feats, y, AugmentConfig(oversample="smote"), seed=0)
    assert torch.bincount(ys).tolist() == [50, 50]
    assert torch.equal(out["numeric"][:60], feats["numeric"]) and torch.equal(out["categorical"][:60], feats["categorical"])
    assert set(out["categorical"][60:].flatten().tolist()) <= {1, 2, 3}  # categories stay categories
    half, yh = oversample({"numeric": feats["numeric"]}, y, AugmentConfig(oversample="borderline", oversample_ratio=0.5), 0)
    assert torch.bincount(yh).tolist() == [50, 25]
    _, ya = oversample({"numeric": feats["numeric"]}, y, AugmentConfig(oversample="adasyn"), 0)
    assert abs(torch.bincount(ya)[1].item() - 50) <= 10  # ADASYN aims at balance; its count is approximate


def test_oversampling_refuses_what_it_cannot_do():
    y = torch.tensor([0] * 10 + [1] * 3)
    with pytest.raises(ValueError, match="smallest class has 3"):
        oversample({"numeric": torch.randn(13, 2)}, y, AugmentConfig(oversample="smote"), 0)
    with pytest.raises(ValueError, match="text:review"):
        oversample({"numeric": torch.randn(13, 2), "text:review": torch.ones(13, 4)}, y,
                   AugmentConfig(oversample="smote"), 0)
    with pytest.raises(ValueError, match="SMOTE-NC"):
        oversample({"numeric": torch.randn(13, 2), "categorical": torch.ones(13, 1, dtype=torch.long)}, y,
                   AugmentConfig(oversample="adasyn", oversample_neighbours=2), 0)


def test_training_a_table_with_smote_and_mixup(tmp_path, table_csv):
    cfg = tiny_config(tmp_path, {"path": str(table_csv), "target": "label",
                                 "augment": {"oversample": "smote", "mixup": 0.4, "tabular_noise": 0.05}},
                      train={"epochs": 2})
    _each_option_changes_training(cfg)


def test_oversampling_a_regression_target_is_refused(tmp_path):
    from ..conftest import regression_frame

    cfg = tiny_config(tmp_path, {"path": "unused.csv", "target": "y", "augment": {"oversample": "smote"}})
    with pytest.raises(ValueError, match="needs a classification target"):
        train(load_config(cfg), frame=regression_frame())


def test_training_images_with_rotation_colour_jitter_and_mixup(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(12):
            arr = (rng.random((8, 8, 3)) * 60 + (150 if cls == "a" else 0)).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
    cfg = tiny_config(tmp_path, {"path": str(tmp_path / "imgs"), "image": {"size": [8, 8], "channels": 3},
                                 "augment": {"image_rotation": 15, "image_color_jitter": 0.3, "mixup": 0.4}},
                      model={"type": "cnn", "channels": [4], "hidden": [8]}, train={"epochs": 2})
    _each_option_changes_training(cfg)


def test_training_time_series_with_window_slicing_and_warping(tmp_path):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = [{"unit": u, "cycle": c, "s": float(np.sin(c / 3) + rng.normal(0, 0.1)), "rul": 30 - c}
            for u in range(8) for c in range(30)]
    cfg = tiny_config(tmp_path, {"path": "unused.csv", "target": "rul",
                                 "sequence": {"group_column": "unit", "order_column": "cycle", "window": 6},
                                 "split": {"method": "group", "group_column": "unit"},
                                 "augment": {"sequence_slice": 0.2, "sequence_warp": 0.2}},
                      model={"type": "rnn", "hidden_size": 8}, train={"epochs": 2})
    _each_option_changes_training(cfg, frame=pd.DataFrame(rows))


def test_char_noise_makes_typos_but_keeps_spaces_and_script():
    from modelfoundry.data.augment import char_noise

    torch.manual_seed(0)
    text = "please transfer money to my card"
    noisy = [char_noise(text, 0.1) for _ in range(20)]
    assert any(n != text for n in noisy) and all(n.count(" ") == text.count(" ") for n in noisy)
    assert all(set(n) <= set(text) for n in noisy)  # replacements come from the text's own characters
    assert char_noise(text, 0.0) == text and char_noise("", 0.5) == ""
    zh = "银行卡转账失败怎么办"
    assert all(set(char_noise(zh, 0.3)) <= set(zh) for _ in range(10))


def test_char_noise_retokenizes_the_batch_texts(tmp_path):
    from modelfoundry.data.augment import Augmenter
    from modelfoundry.data.text import train_tokenizer

    texts = ["please transfer money to my card", "my card was declined yesterday"] * 20
    tok = train_tokenizer(texts, "wordpiece", 200, 1, True)
    enc = tok.encode_batch(texts[:2])
    batch = {"text:t": torch.tensor([e.ids + [0] * (8 - len(e.ids)) for e in enc])[:, :8],
             "len:t": torch.tensor([len(e.ids) for e in enc]), "row": torch.tensor([0, 1])}
    torch.manual_seed(0)
    aug = Augmenter(AugmentConfig(text_char_noise=0.3), max_len=16, texts={"t": texts}, tokenizers={"t": tok})
    out = aug(batch)
    assert "row" not in out and out["text:t"].shape[0] == 2
    assert not torch.equal(out["text:t"][:, :8], batch["text:t"])  # typos change the word pieces
    assert (out["len:t"] <= 16).all()


def test_training_with_char_noise_in_english_and_chinese(tmp_path):
    import pandas as pd

    cfg = tiny_config(tmp_path, {"path": str(SAMPLE), "target": "category", "text": {"vocab_size": 300, "min_frequency": 1},
                                 "augment": {"text_char_noise": 0.05}}, train={"epochs": 1})
    _each_option_changes_training(cfg)
    zh = pd.DataFrame({"text": ["头痛发热怎么办", "手臂骨折需要手术吗", "咳嗽一直不好", "膝盖扭伤了很疼"] * 10,
                       "label": ["内科", "外科", "内科", "外科"] * 10})
    # four distinct texts would be inferred categorical (and the noise had nothing to work on): declare the type
    cfg = tiny_config(tmp_path, {"path": "unused.csv", "target": "label", "text": {"vocab_size": 200, "min_frequency": 1},
                                 "types": {"text": "text"}, "augment": {"text_char_noise": 0.1}},
                      train={"epochs": 1}, name="zh")
    _each_option_changes_training(cfg, frame=zh)


def test_token_dropout_uses_the_tokenizers_own_special_ids_on_minilm():
    from modelfoundry.core.paths import resolve_model_path
    from modelfoundry.data.augment import Augmenter
    from modelfoundry.data.text import load_tokenizer, pad_ids

    tok = load_tokenizer(resolve_model_path("minilm"))  # [CLS] 101, [SEP] 102, [UNK] 100, [PAD] 0
    ids, lengths = pad_ids(tok.encode_batch(["my card has not arrived yet", "top up failed", "why was i charged"] * 20))
    torch.manual_seed(0)
    out = Augmenter(AugmentConfig(text_token_dropout=0.5), tokenizers={"text": tok})({"text:text": ids,
                                                                                      "len:text": lengths})["text:text"]
    special = (ids == 101) | (ids == 102) | (ids == 0)
    assert torch.equal(out[special], ids[special])  # [CLS], [SEP] and padding kept
    dropped = out != ids
    assert dropped.float().sum() / (~special).sum() > 0.3 and (out[dropped] == 100).all()  # to MiniLM's [UNK]
    assert not (out == 1).any()  # id 1 is [unused0] in MiniLM's vocabulary


def test_augmentations_that_do_not_fit_the_inputs_are_refused():
    from modelfoundry.data.augment import check_fits

    with pytest.raises(ValueError, match=r"data\.augment\.image_flip: needs an image column; this data's inputs are "
                                         r"categorical, numeric"):
        check_fits(AugmentConfig(image_flip=True), ["numeric", "categorical"], "classification")
    with pytest.raises(ValueError, match=r"text_swap: needs a text column"):
        check_fits(AugmentConfig(text_swap=0.1), ["numeric"], "classification")
    with pytest.raises(ValueError, match=r"text_token_dropout: does not apply to data\.task causal_lm"):
        check_fits(AugmentConfig(text_token_dropout=0.1), ["text:_lm", "len:_lm", "segment:_lm"], "causal_lm")
    check_fits(AugmentConfig(text_swap=0.1, tabular_noise=0.1), ["text:t", "len:t", "numeric"], "classification")


def test_training_a_table_with_an_image_augmentation_is_refused(tmp_path, table_config):
    from modelfoundry.config import load_config
    from modelfoundry.train import train

    cfg = load_config(table_config, ["data.augment.image_flip=true"])
    with pytest.raises(ValueError, match="image_flip: needs an image column"):
        train(cfg)


def test_every_batch_augmentation_declares_its_input_and_is_refused_without_it():
    """The batch augmentations are read from AugmentConfig (fields made with `augmentation(default, kind)`), not from
    a list kept beside it: each names an input kind the fit check knows, and data without that input refuses it."""
    from modelfoundry.data.augment import BATCH_OPTIONS, NEEDS, augmentation_kind, check_fits
    from modelfoundry.data.config import AugmentConfig

    assert {augmentation_kind(o) for o in BATCH_OPTIONS} <= set(NEEDS)
    assert set(AugmentConfig.model_fields) - set(BATCH_OPTIONS) == {
        "synonym_model", "synonym_neighbours", "oversample", "oversample_ratio", "oversample_neighbours", "audio_masks"}
    for opt in BATCH_OPTIONS:
        kind = AugmentConfig.model_fields[opt].annotation
        value = True if kind is bool else 1 if kind is int else 0.1
        with pytest.raises(ValueError, match=f"data.augment.{opt}: needs"):
            check_fits(AugmentConfig(**{opt: value}), ["categorical"], "classification")
