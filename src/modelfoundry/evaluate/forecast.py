"""Forecast evaluation: the rolling-origin backtest's MASE and sMAPE beside the naive and seasonal-naive forecasts
(always), per step ahead and per series; the forecast interval from the validation residuals; a fan chart per series
with the backtest windows; and, with evaluate.portfolio, a portfolio built on the forecasts (portfolio.py)."""

from __future__ import annotations

import html
import json

import numpy as np
import torch

from ..core.html import page
from ..core.plots import tick_labels
from ..core.runs import Run, atomic_write_text, write_json
from ..data import Prepared
from .portfolio import backtest_portfolio
from .predict_split import outputs
from .report import _fig, _save, _table

INTERVAL_FILE = "forecast_interval.json"


def seasonal_naive(context: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The value one season back (in the window's relative units, from its target channel) for each step ahead;
    season 1 is the naive forecast (the last value: 0 in relative units)."""
    L = context.shape[1]
    h = np.arange(1, horizon + 1)
    back = h - season * np.ceil(h / season).astype(int)  # <= 0: an index relative to the origin
    return context[:, L - 1 + back, 0]


def scores(y: np.ndarray, pred: np.ndarray, level: np.ndarray, scale: np.ndarray) -> dict:
    """MASE (relative units), sMAPE and MAE in the target's units."""
    actual, forecast = level[:, None] + scale[:, None] * y, level[:, None] + scale[:, None] * pred
    denom = np.abs(actual) + np.abs(forecast)
    smape = np.where(denom > 0, 2 * np.abs(forecast - actual) / np.where(denom > 0, denom, 1), 0.0)
    return {"mase": round(float(np.abs(pred - y).mean()), 6), "smape": round(float(smape.mean() * 100), 4),
            "mae": round(float(np.abs(forecast - actual).mean()), 6)}


def scored_beside_baselines(y, out, ctx, level, scale, fc) -> dict[str, dict]:
    """The model's forecasts and the naive and seasonal-naive ones on the same windows, each scored."""
    candidates = {"model": out, "naive": np.zeros_like(y),
                  f"seasonal_naive (m={fc.season})": seasonal_naive(ctx, fc.horizon, fc.season)}
    return {name: scores(y, pred, level, scale) for name, pred in candidates.items()}


def backtest_history(model, pre, df, where: str) -> dict:
    """`foundry evaluate` on a forecast run: the run's model forecasts every series of another table (of series it
    was trained on) from rolling origins across its whole length, beside naive and seasonal naive."""
    from ..core.infer import predict_tensors

    fc = pre.fc
    series, filled = pre.series(df, where)
    unknown = sorted(set(series) - set(pre.scale_))
    if unknown:
        raise ValueError(f"{where}: series {unknown[:5]} were not in training; their scale is unknown")
    ctx, tgt, level, scale = [], [], [], []
    for key, s in series.items():
        origins = list(range(fc.context - 1, len(s) - fc.horizon, fc.step or fc.horizon))
        if origins:
            w = pre.windows(key, s, origins)
            ctx.append(w["context"]), tgt.append(w["targets"]), level.append(w["level"])
            scale.append(np.full(len(origins), w["scale"]))
    if not ctx:
        raise ValueError(f"{where}: no series is longer than context + horizon ({fc.context} + {fc.horizon})")
    ctx, y, level, scale = np.concatenate(ctx), np.concatenate(tgt), np.concatenate(level), np.concatenate(scale)
    out = predict_tensors(model, {"sequence": torch.from_numpy(ctx)}, "forecast")
    table = scored_beside_baselines(y, out, ctx, level, scale, fc)
    return {"split": "test", "rows": int(len(y)), "test": table.pop("model"), "baselines": table, "series": filled}


def evaluate_forecast(run: Run, cfg, data: Prepared, model) -> dict:
    fc = cfg.data.forecast
    y_val, out_val = outputs(model, data, "val") if "val" in data.encoded else (None, None)
    split = "test" if "test" in data.encoded else "val"
    y, out = outputs(model, data, split)
    w = data.windows[split]
    ctx = data.encoded[split].features["sequence"].numpy()
    level, scale = w["level"].to_numpy(float), w["scale"].to_numpy(float)
    table = scored_beside_baselines(y, out, ctx, level, scale, fc)
    base = table[f"seasonal_naive (m={fc.season})"]["mase"]
    result = {"split": split, "rows": int(len(y)), split: table["model"],
              "baselines": {k: v for k, v in table.items() if k != "model"},
              "relative_mase": round(table["model"]["mase"] / base, 4) if base else None,
              "backtest": {"origins": int(len(w)), "series": int(w["series"].nunique()), "horizon": fc.horizon,
                           "step": fc.step or fc.horizon, "first_origin": str(w["origin"].min()),
                           "last_origin": str(w["origin"].max())},
              "mase_by_step": [round(float(v), 4) for v in np.abs(out - y).mean(0)],
              "mase_by_series": {k: round(float(np.abs(out[i] - y[i]).mean()), 4) for k, i in w.groupby("series").groups.items()}}
    result["test"] = result[split]
    interval = None
    if y_val is not None and len(y_val) >= 10:  # the residuals' quantiles at each step ahead (relative units)
        lo, hi = (1 - fc.interval) / 2, (1 + fc.interval) / 2
        resid = y_val - out_val
        interval = {"coverage": fc.interval, "lower": np.quantile(resid, lo, axis=0).tolist(),
                    "upper": np.quantile(resid, hi, axis=0).tolist()}
        inside = (y >= out + np.asarray(interval["lower"])) & (y <= out + np.asarray(interval["upper"]))
        result["interval"] = {"coverage": fc.interval, "observed_coverage": round(float(inside.mean()), 4)}
        atomic_write_text(run.model_dir / INTERVAL_FILE, json.dumps(interval, indent=2))
    if cfg.evaluate.portfolio is not None:
        result["portfolio"] = backtest_portfolio(cfg.evaluate.portfolio, data, w, y, out, fc)
    write_json(run.path / "metrics.json", result)
    if cfg.evaluate.report:
        write_forecast_report(run, data, result, w, y, out, interval)
    return result


def write_forecast_report(run: Run, data: Prepared, result: dict, w, y, out, interval: dict | None) -> None:
    plt = _fig()
    figures = []
    for key in list(dict.fromkeys(w["series"]))[:6]:
        rows = np.flatnonzero((w["series"] == key).to_numpy())
        s = data.series[key][data.preprocessor.target]
        first = int(w["position"].iloc[rows[0]])
        history = s.iloc[max(0, first - 2 * data.preprocessor.fc.context):]
        fig, ax = plt.subplots(figsize=(10, 3.2))
        ax.plot(history.index, history.to_numpy(), color="#333", lw=1, label="actual")
        for j, i in enumerate(rows):
            pos, lev, sc = int(w["position"].iloc[i]), w["level"].iloc[i], w["scale"].iloc[i]
            times = s.index[pos + 1: pos + 1 + out.shape[1]]
            pred = lev + sc * out[i, : len(times)]
            ax.plot(times, pred, color="tab:blue", lw=1.5, label="forecast" if j == 0 else None)
            if interval is not None:
                ax.fill_between(times, lev + sc * (out[i, : len(times)] + np.asarray(interval["lower"])[: len(times)]),
                                lev + sc * (out[i, : len(times)] + np.asarray(interval["upper"])[: len(times)]),
                                color="tab:blue", alpha=0.2, lw=0, label=f"{interval['coverage']:.0%} interval" if j == 0 else None)
            ax.axvline(s.index[pos], color="#bbb", lw=0.6)
        (name, target), unreadable = tick_labels([key, data.preprocessor.target])  # no CJK font: named in the caption
        ax.set(title=f"{'this series' if unreadable else name}: backtest forecasts from rolling origins (grey lines)",
               ylabel="" if unreadable else target)
        ax.legend(fontsize=8, loc="upper left")
        figures.append((f"Fan chart: {key}", _save(plt, fig, run, f"forecast_{len(figures)}.png")))
    if result.get("portfolio"):
        from .portfolio import equity_plot

        figures.append(("Portfolio equity (backtest; not investment advice)",
                        _save(plt, equity_plot(plt, result["portfolio"]), run, "portfolio_equity.png")))
    rows = [{"forecast": k, **v} for k, v in [("model", result["test"]), *result["baselines"].items()]]
    parts = [f"<p>Rolling-origin backtest: {result['backtest']['origins']} origins over {result['backtest']['series']} "
             f"series, {result['backtest']['horizon']} steps ahead from each; MASE below 1 beats the in-sample "
             f"seasonal-naive error. Relative MASE (model / seasonal naive): {result['relative_mase']}.</p>",
             "<h2>Backtest</h2>" + _table(rows),
             "<h2>MASE by step ahead</h2>" + _table([{"step": i + 1, "mase": v} for i, v in enumerate(result["mase_by_step"])])]
    if result.get("portfolio"):
        p = result["portfolio"]
        parts.append("<h2>Portfolio on the forecasts (a backtest, not investment advice)</h2>"
                     + _table([{"strategy": k, **v} for k, v in p["strategies"].items()]))
    parts += [f"<h2>{html.escape(t)}</h2><img src='{src}' alt='{html.escape(t)}'>" for t, src in figures]
    atomic_write_text(run.path / "report.html", page(f"{run.path.name} report", "Forecast report", "\n".join(parts)))
