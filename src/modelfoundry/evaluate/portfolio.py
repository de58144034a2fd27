"""A portfolio on the forecasts, backtested (a demonstration of what forecasts feed, not investment advice): at
each backtest origin (every `horizon` steps, forecasts not overlapping) the model's forecast return of each series
over the horizon is the expected return, the covariance comes from the trailing `lookback` returns, and weights are
long-only mean-variance (max mu'w - risk_aversion/2 w'Sigma w) or risk parity (equal risk contributions), beside
equal weights. Each holds until the next origin and earns the realised returns."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize

DISCLAIMER = "A backtest of a method on past prices, not investment advice."


def _simplex(n: int, cap: float) -> dict:
    return {"bounds": [(0.0, cap)] * n, "constraints": [{"type": "eq", "fun": lambda w: w.sum() - 1.0}]}


def mean_variance(mu: np.ndarray, cov: np.ndarray, risk_aversion: float, cap: float) -> np.ndarray:
    n = len(mu)
    res = minimize(lambda w: -(mu @ w) + risk_aversion / 2 * w @ cov @ w, np.full(n, 1 / n), method="SLSQP",
                   **_simplex(n, cap))
    return np.clip(res.x, 0, None) / np.clip(res.x, 0, None).sum()


def risk_parity(cov: np.ndarray, cap: float) -> np.ndarray:
    """Weights whose risk contributions w_i (Sigma w)_i are equal (Maillard, Roncalli & Teiletche 2010)."""
    n = len(cov)

    def spread(w):
        total = w @ cov @ w
        return float(np.sum((w * (cov @ w) / max(total, 1e-18) - 1 / n) ** 2))

    res = minimize(spread, np.full(n, 1 / n), method="SLSQP", **_simplex(n, cap))
    return np.clip(res.x, 0, None) / np.clip(res.x, 0, None).sum()


def _stats(returns: np.ndarray, years: float) -> dict:
    equity = np.cumprod(1 + returns)
    per_year = len(returns) / years if years > 0 else len(returns)
    peak = np.maximum.accumulate(np.r_[1.0, equity])
    sd = returns.std(ddof=1) if len(returns) > 1 else 0.0
    return {"total_return": round(float(equity[-1] - 1), 4),
            "annual_return": round(float(equity[-1] ** (1 / years) - 1), 4) if years > 0 else None,
            "annual_volatility": round(float(sd * np.sqrt(per_year)), 4),
            "sharpe": round(float(returns.mean() / sd * np.sqrt(per_year)), 3) if sd > 0 else None,
            "max_drawdown": round(float((np.r_[1.0, equity] / peak - 1).min()), 4)}


def backtest_portfolio(cfg, data, w: pd.DataFrame, y: np.ndarray, out: np.ndarray, fc) -> dict:
    keys = sorted(w["series"].unique())
    if len(keys) < 2:
        raise ValueError("evaluate.portfolio: needs at least two series (data.forecast.series_column)")
    target = data.preprocessor.target
    prices = pd.DataFrame({k: data.series[k][target] for k in keys}).ffill()
    step = fc.step or fc.horizon
    every = max(1, -(-fc.horizon // step))  # hold for a whole horizon: origins a horizon apart
    origins = sorted(set(w["origin"]))
    held = [t for i, t in enumerate(origins) if i % every == 0]
    last = fc.horizon - 1
    periods, weights = [], {m: [] for m in ["equal", *cfg.methods]}
    returns = {m: [] for m in weights}
    for t in held:
        rows = w.index[(w["origin"] == t).to_numpy()]
        if len(rows) != len(keys):
            continue  # a series without a window at this origin: skip the date
        order = [rows[(w.loc[rows, "series"] == k).to_numpy()][0] for k in keys]
        level, scale = w.loc[order, "level"].to_numpy(float), w.loc[order, "scale"].to_numpy(float)
        mu = scale * out[order, last] / level            # forecast return over the horizon
        realised = scale * y[order, last] / level
        hist = prices.loc[:t].pct_change().dropna().tail(cfg.lookback)
        cov = hist.cov().to_numpy() * fc.horizon if len(hist) > 2 else np.eye(len(keys)) * 1e-4
        chosen = {"equal": np.full(len(keys), 1 / len(keys))}
        if "mean_variance" in cfg.methods:
            chosen["mean_variance"] = mean_variance(mu, cov, cfg.risk_aversion, cfg.max_weight)
        if "risk_parity" in cfg.methods:
            chosen["risk_parity"] = risk_parity(cov, cfg.max_weight)
        for m, wt in chosen.items():
            weights[m].append(wt.round(4).tolist())
            returns[m].append(float(wt @ realised))
        periods.append(str(t))
    if not periods:
        raise ValueError("evaluate.portfolio: no backtest origin where every series has a forecast")
    years = (pd.Timestamp(periods[-1]) - pd.Timestamp(periods[0])).days / 365.25 + fc.horizon / 252
    return {"disclaimer": DISCLAIMER, "assets": keys, "periods": periods, "holding_steps": fc.horizon,
            "strategies": {m: _stats(np.asarray(r), years) for m, r in returns.items()},
            "returns": {m: [round(v, 6) for v in r] for m, r in returns.items()},
            "mean_weights": {m: dict(zip(keys, np.mean(v, axis=0).round(4).tolist())) for m, v in weights.items()}}


def equity_plot(plt, p: dict):
    fig, ax = plt.subplots(figsize=(10, 3.5))
    times = pd.to_datetime(p["periods"])
    for m, r in p["returns"].items():
        ax.plot(times, np.cumprod(1 + np.asarray(r)), label=m.replace("_", " "), lw=1.8 if m != "equal" else 1.2,
                color=None if m != "equal" else "#777")
    ax.axhline(1.0, color="#ccc", lw=0.8)
    ax.set(ylabel="growth of 1", title=f"Rebalanced every {p['holding_steps']} steps on the forecasts. {DISCLAIMER}")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    return fig
