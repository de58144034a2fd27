"""Forecast runs: the backtest beside naive and seasonal naive, intervals, the fan chart, Predictor.forecast, and the
portfolio built on the forecasts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modelfoundry.api import train
from modelfoundry.config import Config
from modelfoundry.evaluate.forecast import seasonal_naive
from modelfoundry.evaluate.portfolio import mean_variance, risk_parity
from modelfoundry.predictor import Predictor

from ..conftest import tiny_config


def weekly(n=200, series=("a", "b", "c"), seed=0) -> pd.DataFrame:
    """Daily series with a weekly cycle around a slow drift: naive forecasts miss the cycle, a model learns it."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    parts = [pd.DataFrame({"day": pd.date_range("2023-01-02", periods=n, freq="D"), "store": k,
                           "sales": 50 + 10 * i + 0.05 * t + 8 * np.sin(2 * np.pi * t / 7 + i) + rng.normal(0, 0.5, n)})
             for i, k in enumerate(series)]
    return pd.concat(parts, ignore_index=True)


def forecast_config(tmp_path, path, portfolio=None, report=False, **forecast):
    return Config.model_validate(tiny_config(
        tmp_path, {"path": str(path), "target": "sales", "task": "forecast",
                   "forecast": {"time_column": "day", "series_column": "store", "horizon": 3, "context": 14,
                                "season": 1, "test": 0.2, "val": 0.15, **forecast}},
        model={"type": "mlp", "hidden": [32], "dropout": 0.0}, train={"epochs": 30, "batch_size": 32, "lr": 3e-3},
        evaluate={"report": report, **({"portfolio": portfolio} if portfolio else {})}))


def test_seasonal_naive_repeats_the_value_one_season_back():
    ctx = np.arange(10, dtype=float)[None, :, None]  # relative values 0..9, the origin is the last one
    assert seasonal_naive(ctx, 3, 1).tolist() == [[9, 9, 9]]
    assert seasonal_naive(ctx, 5, 3).tolist() == [[7, 8, 9, 7, 8]]


def test_backtest_beats_the_naive_forecasts_and_forecasts_from_a_history(tmp_path):
    path = tmp_path / "sales.csv"
    weekly().to_csv(path, index=False)
    run = train(forecast_config(tmp_path, path, report=True))
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["test"]["mase"] < 0.6 * m["baselines"]["naive"]["mase"], m
    assert set(m["baselines"]) == {"naive", "seasonal_naive (m=1)"} and len(m["mase_by_step"]) == 3
    assert m["backtest"]["series"] == 3 and m["backtest"]["origins"] == 3 * len(range(159, 197, 3))
    assert 0.4 <= m["interval"]["observed_coverage"] <= 1.0
    card = (run.path / "MODEL_CARD.md").read_text()
    assert "pipeline_tag: time-series-forecasting" in card and "Forecasts the next values of `sales`" in card
    page = (run.path / "report.html").read_text()
    assert "Fan chart: a" in page and (run.path / "plots" / "forecast_0.png").exists()
    history = weekly().groupby("store").head(180)
    out = Predictor.load(run.path).forecast(history)
    assert len(out) == 9 and list(out.columns) == ["store", "step", "time", "prediction", "lower", "upper"]
    a = out[out["store"] == "a"]
    assert a["time"].tolist() == list(pd.date_range("2023-07-01", periods=3, freq="D"))
    truth = weekly().query("store == 'a'")["sales"].to_numpy()[180:183]
    assert np.abs(a["prediction"].to_numpy() - truth).mean() < 2.0
    assert (a["lower"] < a["prediction"]).all() and (a["prediction"] < a["upper"]).all()


def test_risk_parity_and_mean_variance_weights():
    cov = np.diag([0.04, 0.01, 0.0025])  # volatilities 0.2, 0.1, 0.05
    w = risk_parity(cov, 1.0)
    assert w == pytest.approx(np.array([1, 2, 4]) / 7, abs=1e-3)  # inverse volatility when uncorrelated
    mv = mean_variance(np.array([0.05, 0.0, 0.0]), cov, 0.1, 1.0)
    assert mv[0] > 0.9 and mv.sum() == pytest.approx(1.0)
    assert mean_variance(np.array([0.05, 0.0, 0.0]), cov, 0.1, 0.5)[0] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.slow  # whole training runs: the fast tier stays near 3 minutes; CI runs it
def test_portfolio_backtest_on_the_forecasts(tmp_path):
    path = tmp_path / "prices.csv"
    weekly().to_csv(path, index=False)
    run = train(forecast_config(tmp_path, path, portfolio={"lookback": 20}, report=True))
    p = json.loads((run.path / "metrics.json").read_text())["portfolio"]
    assert set(p["strategies"]) == {"equal", "mean_variance", "risk_parity"}
    assert "not investment advice" in p["disclaimer"] and len(p["periods"]) == len(range(159, 197, 3))
    for weights in p["mean_weights"].values():
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-3)
    assert (run.path / "plots" / "portfolio_equity.png").exists()


def test_k_fold_is_refused_and_a_forecast_run_is_served_on_v1_forecast(tmp_path):
    from modelfoundry.data.sources import DataError
    from modelfoundry.serve import load_models

    path = tmp_path / "sales.csv"
    weekly(n=120).to_csv(path, index=False)
    cfg = forecast_config(tmp_path, path, step=1, interval=0.5)
    with pytest.raises(DataError, match="k-fold would train on the future"):
        dumped = cfg.model_dump()
        train(Config.model_validate({**dumped, "evaluate": {**dumped["evaluate"], "cv": {"folds": 3}}}))
    run = train(cfg)
    from modelfoundry.cli.main import main

    weekly(n=150, seed=1).to_csv(tmp_path / "later.csv", index=False)  # the same stores, another stretch of days
    assert main(["evaluate", str(run.path), str(tmp_path / "later.csv")]) == 0
    later = json.loads((run.path / "evaluations" / "later.json").read_text())
    assert later["test"]["mase"] < later["baselines"]["naive"]["mase"] and later["rows"] == 3 * len(range(13, 147, 1))
    m = json.loads((run.path / "metrics.json").read_text())  # an origin every step; a 50% interval
    assert m["backtest"]["origins"] == 3 * len(range(95, 117)) and m["interval"]["coverage"] == 0.5
    assert json.loads((run.path / "model" / "forecast_interval.json").read_text())["coverage"] == 0.5
    from fastapi.testclient import TestClient

    from modelfoundry.serve.app import ServeSettings, create_app

    history = weekly(n=150, seed=1).groupby("store").tail(20)
    rows = json.loads(history.to_json(orient="records", date_format="iso"))
    with TestClient(create_app(load_models([run.path]), ServeSettings())) as c:
        r = c.post("/v1/forecast", json=rows)
        assert r.status_code == 200, r.text
        body = r.json()
        direct = Predictor.load(run.path).forecast(history)
        assert body["horizon"] == 3 and len(body["forecast"]) == len(direct) == 9
        assert [f["prediction"] for f in body["forecast"]] == pytest.approx(direct["prediction"].tolist())
        assert body["forecast"][0]["time"].startswith(str(direct["time"].iloc[0].date()))
        bad = c.post("/v1/forecast", json=[{**rows[0], "store": "nowhere"}])
        assert bad.status_code == 422 and "were not in training" in bad.text
        assert c.post("/v1/predict", json=rows).status_code == 404  # a forecast run answers histories, not rows
