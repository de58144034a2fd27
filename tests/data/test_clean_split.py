import numpy as np
import pandas as pd
import pytest

from modelfoundry.config import load_config
from modelfoundry.data import prepare
from modelfoundry.data.clean import drop_rows
from modelfoundry.data.config import CleanConfig, DataConfig, SplitConfig
from modelfoundry.data.features import Preprocessor
from modelfoundry.data.split import split_frame

from ..conftest import tabular_frame


def test_duplicates_and_drop_strategy_are_counted():
    df = pd.DataFrame({"x": [1.0, 1.0, np.nan, 4.0], "c": ["a", "a", "b", None], "label": [0, 0, 1, 1]})
    out, report = drop_rows(df, CleanConfig(columns={"c": "drop"}), {"x": "numeric", "c": "categorical"})
    assert report["duplicates_dropped"] == 1 and report["duplicate_rows"] == [1]
    assert report["missing_dropped"] == {"c": 1}
    assert len(out) == 2


@pytest.mark.parametrize("strategy,expected", [("mean", 2.0), ("median", 1.5), ("mode", 1.0)])
def test_numeric_imputation(strategy, expected):
    df = pd.DataFrame({"x": [1.0, 1.0, 2.0, 4.0, np.nan], "label": [0, 1, 0, 1, 0]})
    data = DataConfig(target="label", clean=CleanConfig(numeric_missing=strategy))
    pre = Preprocessor({"x": "numeric"}, "label", "classification", data).fit(df)
    assert pre.numeric_["x"]["fill"] == pytest.approx(expected)
    assert pre.report_["imputed"] == {"x": 1}


def test_constant_and_flag_columns():
    df = pd.DataFrame({"x": [1.0, np.nan, 3.0, 5.0], "z": [np.nan, 2.0, 2.0, 2.0], "label": [0, 1, 0, 1]})
    data = DataConfig(target="label", clean=CleanConfig(columns={"x": {"strategy": "constant", "value": -1}, "z": "flag"}))
    pre = Preprocessor({"x": "numeric", "z": "numeric"}, "label", "classification", data).fit(df)
    feats = pre.transform(df).features["numeric"]
    assert feats.shape == (4, 3)  # x, z, z.missing
    assert feats[:, 2].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert pre.numeric_["x"]["fill"] == -1


def test_all_missing_column_is_refused():
    df = pd.DataFrame({"x": [np.nan] * 4, "label": [0, 1, 0, 1]})
    with pytest.raises(ValueError, match="every value is missing"):
        Preprocessor({"x": "numeric"}, "label", "classification", DataConfig()).fit(df)


@pytest.mark.parametrize("method", ["iqr", "zscore"])
def test_outlier_clipping_fitted_on_train(method):
    x = np.r_[np.linspace(0, 1, 99), 1000.0]
    df = pd.DataFrame({"x": x, "label": [0, 1] * 50})
    pre = Preprocessor({"x": "numeric"}, "label", "classification",
                       DataConfig(clean=CleanConfig(outliers=method))).fit(df)
    assert pre.report_["clipped"]["x"] == 1
    assert pre.numeric_["x"]["hi"] < 1000


def test_stratified_split_keeps_class_ratio():
    df = pd.DataFrame({"x": range(1000), "label": [1] * 100 + [0] * 900})
    idx = split_frame(df, SplitConfig(), "classification", "label", 0, False)
    assert sum(len(v) for v in idx.values()) == 1000
    for s in ("train", "val", "test"):
        assert df["label"].iloc[idx[s]].mean() == pytest.approx(0.1, abs=0.01)
    again = split_frame(df, SplitConfig(), "classification", "label", 0, False)
    assert all((again[s] == idx[s]).all() for s in idx)


def test_group_split_never_straddles():
    df = pd.DataFrame({"g": np.repeat(np.arange(50), 4), "label": [0, 1] * 100})
    idx = split_frame(df, SplitConfig(method="group", group_column="g"), "classification", "label", 0, False)
    groups = [set(df["g"].iloc[idx[s]]) for s in ("train", "val", "test")]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])


def test_time_split_is_ordered():
    df = pd.DataFrame({"t": np.random.default_rng(0).permutation(100), "label": [0, 1] * 50})
    idx = split_frame(df, SplitConfig(method="time", time_column="t"), "classification", "label", 0, False)
    assert df["t"].iloc[idx["train"]].max() < df["t"].iloc[idx["val"]].min()
    assert df["t"].iloc[idx["val"]].max() < df["t"].iloc[idx["test"]].min()


def test_explicit_split_column_and_bad_values():
    df = pd.DataFrame({"s": ["train"] * 6 + ["val", "test"], "x": range(8), "label": [0, 1] * 4})
    idx = split_frame(df, SplitConfig(column="s"), "classification", "label", 0, False)
    assert [len(idx[s]) for s in ("train", "val", "test")] == [6, 1, 1]
    df.loc[0, "s"] = "holdout"
    with pytest.raises(ValueError, match="values must be train/val/test"):
        split_frame(df, SplitConfig(column="s"), "classification", "label", 0, False)


def test_separate_test_file(tmp_path):
    train, test = tabular_frame(200, 0), tabular_frame(50, 1)
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    cfg = load_config({"name": "x", "data": {"path": str(tmp_path / "train.csv"), "test_path": str(tmp_path / "test.csv")}})
    data = prepare(cfg)
    assert data.profile["splits"]["test"] == 50
    assert data.profile["splits"]["train"] + data.profile["splits"]["val"] == 200


def test_single_class_target_is_refused():
    df = pd.DataFrame({"x": range(20), "label": ["a"] * 20})
    with pytest.raises(ValueError, match="single class"):
        prepare(load_config({"name": "x", "data": {"split": {"method": "random"}}}), df)


def test_target_cap_applies_to_train_and_val_only(tmp_path):
    train = pd.DataFrame({"x": np.arange(100.0), "y": np.arange(100.0) * 3})
    test = pd.DataFrame({"x": [1.0, 99.0], "y": [3.0, 297.0]})
    cfg = load_config({"name": "x", "data": {"target": "y", "target_cap": 150}})
    data = prepare(cfg, train, test)
    pre = data.preprocessor
    assert pre.decode_regression(data.targets["train"].numpy()).max() == pytest.approx(150)
    assert pre.decode_regression(data.targets["test"].numpy()).tolist() == pytest.approx([3, 297])
    assert data.profile["target_capped"]["train"] + data.profile["target_capped"]["val"] == 49


def test_categorical_missing_strategies():
    df = pd.DataFrame({"c": ["a", "a", "b", None], "d": ["x", None, "y", "y"], "e": ["p", "q", None, "p"],
                       "label": [0, 1, 0, 1]})
    clean = CleanConfig(categorical_missing="mode", columns={"d": {"strategy": "constant", "value": "y"}, "e": "unknown"})
    pre = Preprocessor({"c": "categorical", "d": "categorical", "e": "categorical"}, "label", "classification",
                       DataConfig(clean=clean)).fit(df)
    cat = pre.transform(df).features["categorical"]
    vocab = pre.vocab_
    assert cat[3, 0] == vocab["c"].index("a") + 1  # mode
    assert cat[1, 1] == vocab["d"].index("y") + 1  # constant
    assert cat[2, 2] == 0  # the unknown bucket
    assert pre.report_["imputed"] == {"c": 1, "d": 1}
    with pytest.raises(ValueError, match="'c' is categorical; .* got 'median'"):
        Preprocessor({"c": "categorical"}, "label", "classification",
                     DataConfig(clean=CleanConfig(columns={"c": "median"}))).fit(df)


@pytest.mark.parametrize("test_windows, expected", [("all", 8), ("last", 2)])
def test_test_windows_last_scores_each_test_series_once(tmp_path, test_windows, expected):
    def series(units):
        return pd.DataFrame([{"unit": u, "cycle": c, "s": float(c), "rul": 6 - c} for u in units for c in range(1, 7)])

    seq = {"group_column": "unit", "order_column": "cycle", "window": 3, "test_windows": test_windows}
    cfg = load_config({"name": "w", "output_dir": str(tmp_path), "data": {"target": "rul", "sequence": seq,
                                                                         "split": {"val": 0.0}},
                       "model": {"type": "rnn"}})
    data = prepare(cfg, series([1, 2, 3, 4]), series([7, 8]))
    assert data.profile["splits"] == {"train": 16, "test": expected}  # 4 windows per 6-row series
    if test_windows == "last":
        assert data.targets["test"].tolist() == pytest.approx(data.preprocessor.encode_target(pd.Series([0, 0])).tolist())
