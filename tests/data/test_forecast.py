"""Forecast windows: series on a regular time axis, gaps filled and counted, relative windows, clear refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelfoundry.config import ConfigError, load_config
from modelfoundry.data.config import DataConfig
from modelfoundry.data.forecast import ForecastPreprocessor, prepare_forecast
from modelfoundry.data.sources import DataError


def data_config(**fc) -> DataConfig:
    return DataConfig(target="y", task="forecast", forecast={"time_column": "t", "series_column": "s", "horizon": 2,
                                                           "context": 4, **fc})


def frame(n=40, series=("a",), start="2024-01-01", freq="D", seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = [pd.DataFrame({"t": pd.date_range(start, periods=n, freq=freq), "s": k,
                           "y": 100 + np.cumsum(rng.normal(size=n)), "x": rng.normal(size=n)}) for k in series]
    return pd.concat(parts, ignore_index=True)


def test_gaps_are_filled_by_the_rule_and_counted():
    df = frame().drop(index=[5, 6]).reset_index(drop=True)
    df.loc[10, "y"] = np.nan
    pre = ForecastPreprocessor(data_config())
    series, filled = pre.series(df, "f.csv")
    assert filled["a"] == {"steps": 40, "gaps": 2, "filled": 3} and pre.freq_ == "D"
    assert series["a"]["y"].iloc[5] == series["a"]["y"].iloc[4]  # carried forward
    inter = ForecastPreprocessor(data_config(fill="interpolate")).series(df, "f.csv")[0]["a"]["y"]
    assert inter.iloc[5] == pytest.approx(inter.iloc[4] + (inter.iloc[7] - inter.iloc[4]) / 3)
    with pytest.raises(DataError, match="series 'a' has 2 missing time step\\(s\\) and 1 missing value"):
        ForecastPreprocessor(data_config(fill="error")).series(df, "f.csv")


def test_a_declared_frequency_is_the_time_axis():
    df = frame(n=20, freq="2D")
    pre = ForecastPreprocessor(data_config(frequency="D"))
    series, filled = pre.series(df, "f.csv")
    assert pre.freq_ == "D" and filled["a"]["gaps"] == 19 and len(series["a"]) == 39
    auto = ForecastPreprocessor(data_config())
    auto.series(df, "f.csv")
    assert auto.freq_ == "2D"


def test_trading_days_with_holidays_read_as_business_days():
    df = frame(n=30, freq="B").drop(index=[7]).reset_index(drop=True)
    pre = ForecastPreprocessor(data_config())
    _, filled = pre.series(df, "f.csv")
    assert pre.freq_ == "B" and filled["a"]["gaps"] == 1


def test_windows_are_relative_to_the_origin_in_units_of_the_seasonal_naive_error():
    df = frame(n=30)
    pre = ForecastPreprocessor(data_config(season=2, exogenous=["x"]))
    series, _ = pre.series(df, "f.csv")
    pre.fit(series, {"a": 20})
    y = series["a"]["y"].to_numpy()
    scale = np.abs(y[2:20] - y[:18]).mean()
    assert pre.scale_["a"] == pytest.approx(scale)
    w = pre.windows("a", series["a"], [10])
    assert w["context"].shape == (1, 4, 2)
    assert w["context"][0, :, 0] == pytest.approx((y[7:11] - y[10]) / scale, rel=1e-5)
    assert w["targets"][0] == pytest.approx((y[11:13] - y[10]) / scale, rel=1e-5)


@pytest.mark.parametrize("change,message", [
    ({"horizon": 60}, "horizon 60 is longer than series 'a' \\(40 steps\\)"),
    ({"context": 30}, "training period .* is shorter than context \\+ horizon"),
    ({"season": 9}, "season 9 is longer than context 4"),
])
def test_impossible_windows_are_refused(change, message):
    cfg = load_config({"name": "f", "data": {"path": "x.csv", "target": "y", "task": "forecast",
                                             "forecast": {"time_column": "t", "series_column": "s", "horizon": 2,
                                                          "context": 4, **change}}})
    with pytest.raises(DataError, match=message):
        prepare_forecast(cfg, frame(), "f.csv", {})


def test_bad_times_and_repeated_times_name_the_row_or_series():
    df = frame().assign(t=lambda f: f["t"].astype(str))
    df.loc[3, "t"] = "not a date"
    with pytest.raises(DataError, match="row 4, column 't': 'not a date' is not a date"):
        ForecastPreprocessor(data_config()).series(df, "f.csv")
    with pytest.raises(DataError, match="series 'a' has 1 repeated time"):
        ForecastPreprocessor(data_config()).series(pd.concat([frame(), frame().iloc[:1]]), "f.csv")


def test_the_config_asks_for_the_forecast_section_and_refuses_a_test_file():
    with pytest.raises(ConfigError, match="data.task forecast needs a data.forecast section"):
        load_config({"name": "f", "data": {"path": "x.csv", "target": "y", "task": "forecast"}})
    with pytest.raises(ConfigError, match="data.test_path is not read"):
        load_config({"name": "f", "data": {"path": "x.csv", "target": "y", "task": "forecast", "test_path": "y.csv",
                                           "forecast": {"time_column": "t"}}})
