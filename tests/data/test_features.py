import numpy as np
import pandas as pd
import pytest
import torch

from modelfoundry.data.augment import augment_batch
from modelfoundry.data.config import AugmentConfig, CleanConfig, DataConfig, SequenceConfig, TextConfig
from modelfoundry.data.features import Preprocessor
from modelfoundry.data.sources import DataError
from modelfoundry.data.text import SPECIALS, train_tokenizer

from ..conftest import SAMPLE


def test_round_trip_and_unknown_category(tmp_path):
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "b"], "t": ["hello world"] * 4,
                       "label": ["p", "q", "p", "q"]})
    data = DataConfig(text=TextConfig(vocab_size=50, min_frequency=1))
    pre = Preprocessor({"x": "numeric", "c": "categorical", "t": "text"}, "label", "classification", data).fit(df)
    pre.save(tmp_path)
    again = Preprocessor.load(tmp_path)
    new = pd.DataFrame({"x": [2.5], "c": ["never-seen"], "t": ["hello"]})
    a, b = pre.transform(new).features, again.transform(new).features
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["categorical"].tolist() == [[0]]  # the unknown bucket
    assert again.classes_ == ["p", "q"]


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_tokenizers_split_chinese_without_spaces(kind):
    texts = ["头痛发热怎么办", "发热咳嗽需要吃药吗", "头痛失眠怎么办"] * 20
    tok = train_tokenizer(texts, kind, 200, 1, True)
    ids = tok.encode("头痛发热").ids
    assert len(ids) >= 1 and 1 not in ids  # no [UNK]: every character is known
    assert tok.decode(ids).replace(" ", "") == "头痛发热"


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_trained_tokenizers_are_the_same_on_the_same_texts(kind):
    """Regression: WordPiece numbered its vocabulary in hash order, so one config gave other ids each run."""
    texts = pd.read_csv(SAMPLE)["text"].tolist()
    first = train_tokenizer(texts, kind, 300, 1, True)
    assert all(train_tokenizer(texts, kind, 300, 1, True).to_str() == first.to_str() for _ in range(3))
    assert [first.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3, 4]


def test_text_truncation_is_counted():
    df = pd.DataFrame({"t": ["a b c d e f g h i j"] * 3 + ["a b"], "label": [0, 1, 0, 1]})
    pre = Preprocessor({"t": "text"}, "label", "classification",
                       DataConfig(text=TextConfig(max_length=4, vocab_size=30, min_frequency=1))).fit(df)
    enc = pre.transform(df)
    assert pre.truncated_ == {"t": 3}
    assert enc.features["text:t"].shape[1] == 4


def test_sequence_windows_target_at_the_end():
    df = pd.DataFrame({"unit": [1] * 5 + [2] * 3, "cycle": [5, 4, 3, 2, 1, 1, 2, 3],
                       "s": [50, 40, 30, 20, 10, 1, 2, 3], "rul": [0, 1, 2, 3, 4, 2, 1, 0]})
    data = DataConfig(target="rul", sequence=SequenceConfig(group_column="unit", order_column="cycle", window=3))
    pre = Preprocessor({"s": "numeric"}, "rul", "regression", data).fit(df)
    enc = pre.transform(df)
    assert enc.features["sequence"].shape == (4, 3, 1)  # 3 windows of unit 1, 1 of unit 2
    assert df["rul"].iloc[enc.rows].tolist() == [2, 1, 0, 0]
    last = pre.transform(df, last_window_only=True)
    assert df["rul"].iloc[last.rows].tolist() == [0, 0]


def test_regression_target_is_standardised_and_decoded():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [10.0, 20.0, 30.0]})
    pre = Preprocessor({"x": "numeric"}, "y", "regression", DataConfig(target="y")).fit(df)
    z = pre.encode_target(df["y"]).numpy()
    assert z.mean() == pytest.approx(0, abs=1e-6)
    assert np.allclose(pre.decode_regression(z), [10, 20, 30])


def test_unseen_label_is_named():
    df = pd.DataFrame({"x": [1.0, 2.0], "label": ["a", "b"]})
    pre = Preprocessor({"x": "numeric"}, "label", "classification", DataConfig()).fit(df)
    with pytest.raises(ValueError, match=r"label 'c' \(data row \d+\) was never seen"):
        pre.encode_target(pd.Series(["a", "c"]))


def test_augmentations_change_training_batches_only_where_asked():
    batch = {"image": torch.arange(2 * 1 * 4 * 4, dtype=torch.float).view(2, 1, 4, 4),
             "text:t": torch.full((2, 50), 7), "numeric": torch.zeros(2, 3)}
    cfg = AugmentConfig(image_flip=True, image_crop_padding=1, text_token_dropout=0.5, tabular_noise=0.1)
    torch.manual_seed(1)
    out = augment_batch(batch, cfg, specials={"t": (torch.tensor([0, 2, 3]), 1)})
    assert out["image"].shape == batch["image"].shape and not torch.equal(out["image"], batch["image"])
    assert (out["text:t"] == 1).any() and (out["text:t"] == 7).any()
    assert out["numeric"].abs().sum() > 0
    assert torch.equal(augment_batch(batch, AugmentConfig())["image"], batch["image"])


@pytest.mark.parametrize("method, threshold, hi, clipped", [("iqr", None, 14.5, 1), ("iqr", 6.0, 34.75, 0),
                                                            ("zscore", None, None, 0), ("zscore", 2.0, None, 1)])
def test_outlier_threshold_sets_where_values_are_clipped(method, threshold, hi, clipped):
    df = pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6, 7, 8, 9, 30], "label": [0, 1] * 5})  # quartiles 3.25, 7.75
    clean = CleanConfig(outliers=method, outlier_threshold=threshold)
    pre = Preprocessor({"x": "numeric"}, "label", "classification", DataConfig(clean=clean)).fit(df)
    assert pre.report_["clipped"]["x"] == clipped
    k = threshold or 3.0
    expected = hi if method == "iqr" else df["x"].mean() + k * df["x"].std()  # z = 2.73 for the 30
    assert pre.numeric_["x"]["hi"] == pytest.approx(expected)


def test_sequence_stride_skips_window_ends():
    df = pd.DataFrame({"unit": [1] * 5 + [2] * 3, "cycle": [1, 2, 3, 4, 5, 1, 2, 3],
                       "s": [1, 2, 3, 4, 5, 1, 2, 3], "rul": [4, 3, 2, 1, 0, 2, 1, 0]})
    seq = SequenceConfig(group_column="unit", order_column="cycle", window=3, stride=2)
    pre = Preprocessor({"s": "numeric"}, "rul", "regression", DataConfig(target="rul", sequence=seq)).fit(df)
    enc = pre.transform(df)
    assert df["rul"].iloc[enc.rows].tolist() == [2, 0, 0]  # windows ending at cycles 3 and 5, then 3


def test_text_lowercase_off_keeps_case_apart():
    df = pd.DataFrame({"t": ["Card lost", "card found", "Card blocked", "card fee"] * 3, "label": [0, 1] * 6})
    ids = {}
    for lower in (True, False):
        text = TextConfig(vocab_size=60, min_frequency=1, lowercase=lower)
        pre = Preprocessor({"t": "text"}, "label", "classification", DataConfig(text=text)).fit(df)
        enc = pre.transform(pd.DataFrame({"t": ["Card", "card"]})).features["text:t"]
        ids[lower] = enc.tolist()
    assert ids[True][0] == ids[True][1] and ids[False][0] != ids[False][1]


def test_text_encodings_are_cached_and_reused(tmp_path):
    from safetensors.torch import save_file

    df = pd.DataFrame({"t": ["card lost", "top up my card please now"] * 4, "label": [0, 1] * 4})
    data = DataConfig(text=TextConfig(vocab_size=40, min_frequency=1, max_length=4))
    pre = Preprocessor({"t": "text"}, "label", "classification", data).fit(df)
    plain = pre.transform(df).features
    pre.cache_dir = tmp_path
    first = pre.transform(df).features
    files = list(tmp_path.glob("tokens-*.safetensors"))
    assert len(files) == 1 and all(torch.equal(first[k], plain[k]) for k in plain) and pre.truncated_ == {"t": 4}
    # read back, not recomputed: a cache file holding other ids is what transform returns
    save_file({"ids": torch.full((8, 2), 7, dtype=torch.int32), "lengths": torch.full((8,), 2, dtype=torch.int32)},
              str(files[0]), metadata={"truncated": "3"})
    again = pre.transform(df)
    assert again.features["text:t"].tolist() == [[7, 7]] * 8 and again.features["text:t"].dtype == torch.long
    assert pre.truncated_ == {"t": 3}
    pre.transform(df.iloc[:4])  # other texts: another entry
    assert len(list(tmp_path.glob("tokens-*.safetensors"))) == 2
    files[0].write_bytes(b"not safetensors")  # an unreadable entry is rebuilt and rewritten
    assert torch.equal(pre.transform(df).features["text:t"], plain["text:t"])
    assert torch.equal(pre.transform(df).features["text:t"], plain["text:t"])


def test_token_cache_key_changes_with_what_the_encoding_depends_on():
    from modelfoundry.data.text import token_cache_key

    texts = ["card lost", "top up"]
    a, b = train_tokenizer(texts * 3, "wordpiece", 40, 1, True), train_tokenizer(texts * 3, "bpe", 40, 1, True)
    key = token_cache_key(a, texts, 8, False)
    assert key == token_cache_key(a, list(texts), 8, False)
    others = [token_cache_key(b, texts, 8, False), token_cache_key(a, texts, 9, False),
              token_cache_key(a, texts, 8, True), token_cache_key(a, texts[::-1], 8, False),
              token_cache_key(a, ["card lostt", "op up"], 8, False), token_cache_key(a, [("card lost", "top up")], 8, False)]
    assert len({key, *others}) == 7


def test_new_data_with_text_in_a_numeric_column_is_refused_unless_training_saw_it(tmp_path):
    df = pd.DataFrame({"x": ["1.5", "2", "?", "4", "5.5", "?"], "label": ["p", "q"] * 3})  # '?' = missing, as in UCI data
    pre = Preprocessor({"x": "numeric"}, "label", "classification", DataConfig()).fit(df)
    assert pre.missing_markers_ == {"x": ["?"]} and pre.report_["imputed"] == {"x": 2}
    pre.save(tmp_path)
    again = Preprocessor.load(tmp_path)
    new = pd.DataFrame({"x": ["3", "?", "", None]})
    assert again.transform(new, strict=True).features["numeric"].shape == (4, 1)  # markers and blanks are missing
    bad = pd.DataFrame({"x": ["3", "three", "n/a"]})
    with pytest.raises(DataError, match=r"row 2, column 'x': 'three' is not a number.*\(2 such value\(s\)\).*\['\?'\]"):
        again.transform(bad, strict=True)
    assert torch.isfinite(again.transform(bad).features["numeric"]).all()  # a training split's rows: imputed


def test_a_character_tokenizer_for_supervised_text():
    """data.text.tokenizer: char (documented, and what pretraining uses) works for classification too: one token per
    character, so Chinese needs no segmentation (it was refused as a missing tokenizer directory)."""
    from modelfoundry.config import load_config
    from modelfoundry.data import prepare

    texts = ["高血压能吃党参吗", "胃痛怎么办", "头痛发热", "血压高怎么办"]
    df = pd.DataFrame({"text": [f"{texts[i % 4]}{i}" for i in range(40)], "label": ["a", "b", "b", "a"] * 10})
    data = prepare(load_config({"name": "x", "data": {"text": {"tokenizer": "char"}, "types": {"text": "text"},
                                                     "split": {"method": "random"}}}), df)
    tok = data.preprocessor.tokenizers_["text"]
    assert tok.encode("党参").tokens == ["党", "参"]
