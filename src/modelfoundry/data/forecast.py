"""Multi-step forecasting (data.task forecast): a long table of one or more time series (a time column, a series
column, the target and exogenous columns) becomes windows: `context` past steps in, the next `horizon` target values
out. Every series splits by time (training, then validation, then the backtest period); the backtest forecasts from
rolling origins every `step` steps, each from the history actually known at its origin, with the model trained once.

Values a model sees are relative: a window's target channel and outputs are (y - y_origin) / scale, where scale is
the series' in-sample seasonal-naive mean absolute error (the MASE denominator), so the mean absolute error of the
outputs is the MASE itself and one model serves series of any level. Exogenous columns are standardised per series.
Gaps in the time axis (the series' frequency, inferred or given) and missing values are filled by `fill`, counted."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.runs import atomic_write_text
from ..core.spec import InputSpec
from .config import DataConfig
from .features import Encoded
from .prepared import Prepared
from .sources import DataError


def _frequency(times: pd.DatetimeIndex, declared: str | None) -> str:
    if declared:
        return declared
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        freq = pd.infer_freq(times) if len(times) >= 3 else None
    if freq:
        return freq
    if (times.dayofweek < 5).all() and times.to_series().diff().dt.days.max() <= 4:
        return "B"  # trading days: weekdays, holidays missing (filled as gaps)
    step = times.to_series().diff().mode()
    if not len(step):
        return "D"
    step = step.iloc[0]
    if step == pd.Timedelta(days=step.days):  # whole days: 'D', '7D' (not pandas' '24h')
        return "D" if step.days == 1 else f"{step.days}D"
    return pd.tseries.frequencies.to_offset(step).freqstr


class ForecastPreprocessor:
    """Series layout, frequency, per-series scales and exogenous statistics: what turns a history table into the
    model's windows, at training and at predict time. Saved as JSON beside the model."""

    task = "forecast"

    def __init__(self, data: DataConfig):
        self.data = data
        self.fc = data.forecast
        self.target = data.target
        self.schema = {data.target: "numeric", **{c: "numeric" for c in self.fc.exogenous}}
        """What the model reads: the target's past and the exogenous columns."""

    # ------------------------------------------------------------------ series
    def series(self, df: pd.DataFrame, where: str) -> tuple[dict[str, pd.DataFrame], dict]:
        """Per series: a frame on a regular time axis (target + exogenous), gaps and missing values filled by the
        rule; and what was filled, counted per series."""
        fc = self.fc
        cols = [fc.time_column, self.target, *fc.exogenous] + ([fc.series_column] if fc.series_column else [])
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(f"{where}: column(s) {missing} not found (data.forecast / data.target); it has: "
                            f"{', '.join(map(str, df.columns[:20]))}")
        times = pd.to_datetime(df[fc.time_column], errors="coerce", format="mixed")
        if times.isna().any():
            row = int(np.flatnonzero(times.isna().to_numpy())[0])
            raise DataError(f"{where}: row {row + 1}, column '{fc.time_column}': {df[fc.time_column].iloc[row]!r} is "
                            "not a date or time")
        keys = df[fc.series_column].astype(str) if fc.series_column else pd.Series("series", index=df.index)
        out, filled = {}, {}
        for key, part in df.assign(_t=times, _k=keys).groupby("_k", sort=True):
            part = part.sort_values("_t")
            dup = part["_t"].duplicated()
            if dup.any():
                raise DataError(f"{where}: series '{key}' has {int(dup.sum())} repeated time(s), e.g. "
                                f"{part['_t'][dup].iloc[0]}; one row per series and time")
            values = part.set_index("_t")[[self.target, *fc.exogenous]].apply(pd.to_numeric, errors="coerce")
            freq = self.freq_ if hasattr(self, "freq_") else _frequency(values.index, fc.frequency)
            full = values.reindex(pd.date_range(values.index[0], values.index[-1], freq=freq))
            gaps = len(full) - len(values)
            holes = int(full.isna().any(axis=1).sum())
            if holes and fc.fill == "error":
                raise DataError(f"{where}: series '{key}' has {gaps} missing time step(s) and {holes - gaps} missing "
                                f"value(s) at frequency {freq}; set data.forecast.fill to ffill or interpolate")
            full = full.ffill() if fc.fill == "ffill" else full.interpolate(method="time", limit_direction="both")
            full = full.bfill()
            if full[self.target].isna().all():
                raise DataError(f"{where}: series '{key}' has no numeric '{self.target}' value")
            out[str(key)] = full
            filled[str(key)] = {"steps": len(full), "gaps": gaps, "filled": holes}
            self.freq_ = freq
        return out, filled

    # ------------------------------------------------------------------ fit
    def fit(self, series: dict[str, pd.DataFrame], train_end: dict[str, int]) -> ForecastPreprocessor:
        """Per series: the MASE scale and the exogenous columns' statistics, from its training steps only."""
        m = self.fc.season
        self.scale_, self.exog_ = {}, {}
        for key, s in series.items():
            y = s[self.target].to_numpy(float)[: train_end[key]]
            diffs = np.abs(y[m:] - y[:-m]) if len(y) > m else np.abs(np.diff(y))
            scale = float(diffs.mean()) if len(diffs) and diffs.mean() > 0 else float(np.abs(y).mean() or 1.0)
            self.scale_[key] = scale
            x = s[self.fc.exogenous].to_numpy(float)[: train_end[key]]
            self.exog_[key] = {"mean": x.mean(0).tolist() if len(x) else [], "std": (x.std(0) + 1e-8).tolist() if len(x) else []}
        return self

    def windows(self, key: str, s: pd.DataFrame, origins: list[int], with_targets: bool = True) -> dict:
        """Windows ending at each origin (the last known step): context [N, L, 1 + E], targets [N, H], levels."""
        L, H = self.fc.context, self.fc.horizon
        y = s[self.target].to_numpy(np.float64)
        x = (s[self.fc.exogenous].to_numpy(np.float64) - np.asarray(self.exog_[key]["mean"])) / np.asarray(self.exog_[key]["std"]) \
            if self.fc.exogenous else np.zeros((len(y), 0))
        scale = self.scale_[key]
        ctx, tgt, level = [], [], []
        for t in origins:
            lo = t - L + 1
            idx = np.clip(np.arange(lo, t + 1), 0, None)  # a short history repeats its first step
            ctx.append(np.concatenate([((y[idx] - y[t]) / scale)[:, None], x[idx]], axis=1))
            if with_targets:
                tgt.append((y[t + 1: t + 1 + H] - y[t]) / scale)
            level.append(y[t])
        return {"context": np.asarray(ctx, np.float32).reshape(len(origins), L, 1 + len(self.fc.exogenous)),
                "targets": np.asarray(tgt, np.float32).reshape(len(origins), H) if with_targets else None,
                "level": np.asarray(level), "scale": scale}

    def spec(self) -> InputSpec:
        return InputSpec(task="forecast", n_outputs=self.fc.horizon,
                         sequence=(self.fc.context, 1 + len(self.fc.exogenous)))

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        state = {"kind": "forecast", "data": self.data.model_dump(mode="json"), "scale": self.scale_,
                 "exog": self.exog_, "frequency": self.freq_}
        atomic_write_text(directory / "preprocessor.json", json.dumps(state, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path, state: dict | None = None) -> ForecastPreprocessor:
        s = state or json.loads((directory / "preprocessor.json").read_text(encoding="utf-8"))
        self = cls(DataConfig.model_validate(s["data"]))
        self.scale_, self.exog_, self.freq_ = s["scale"], s["exog"], s["frequency"]
        return self


def split_points(n: int, fc, key: str, where: str) -> tuple[int, int]:
    """(train_end, val_end): step counts of a series' training and training + validation periods."""
    test = math.ceil(n * fc.test) if fc.test else 0
    val = math.ceil(n * fc.val) if fc.val else 0
    train_end, val_end = n - test - val, n - test
    need = fc.context + fc.horizon
    if fc.horizon >= n:
        raise DataError(f"{where}: data.forecast.horizon {fc.horizon} is longer than series '{key}' ({n} steps)")
    if train_end < need:
        raise DataError(f"{where}: series '{key}' has {n} steps; its training period ({train_end} steps after "
                        f"val {fc.val} and test {fc.test}) is shorter than context + horizon = {need}; shorten "
                        "data.forecast.context or horizon, or give a longer series")
    if fc.test and n - val_end < fc.horizon:
        raise DataError(f"{where}: series '{key}': the backtest period ({n - val_end} steps) is shorter than the "
                        f"horizon {fc.horizon}; raise data.forecast.test")
    return train_end, val_end


def prepare_forecast(cfg, df: pd.DataFrame, where: str, cleaning: dict) -> Prepared:
    """Windows of every series for training, validation and the rolling-origin backtest."""
    d = cfg.data
    fc = d.forecast
    if fc.season > fc.context:
        raise DataError(f"data.forecast.season {fc.season} is longer than context {fc.context}: the seasonal-naive "
                        "baseline needs a full season of history in each window")
    pre = ForecastPreprocessor(d)
    series, filled = pre.series(df, where)
    ends = {k: split_points(len(s), fc, k, where) for k, s in series.items()}
    pre.fit(series, {k: e[0] for k, e in ends.items()})
    H, step = fc.horizon, fc.step or fc.horizon
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for key, s in series.items():
        n, (train_end, val_end) = len(s), ends[key]
        origins = {"train": list(range(fc.context - 1, train_end - H)),
                   "val": list(range(train_end - 1, val_end - H)),
                   "test": list(range(val_end - 1, n - H, step))}
        for split, orig in origins.items():
            if orig:
                w = pre.windows(key, s, orig)
                times = s.index[np.asarray(orig)]
                parts[split].append((w, pd.DataFrame({"series": key, "origin": times, "level": w["level"],
                                                      "scale": w["scale"], "position": orig})))
    encoded, targets, windows = {}, {}, {}
    for split, items in parts.items():
        if not items:
            continue
        ctx = np.concatenate([w["context"] for w, _ in items])
        encoded[split] = Encoded({"sequence": torch.from_numpy(ctx)}, np.arange(len(ctx)))
        targets[split] = torch.from_numpy(np.concatenate([w["targets"] for w, _ in items]))
        windows[split] = pd.concat([m for _, m in items], ignore_index=True)
    if "train" not in encoded:
        raise DataError(f"{where}: no training windows; the series are shorter than context + horizon")
    profile = {"source": where, "task": "forecast", "series": filled, "frequency": pre.freq_,
               "splits": {s: len(e) for s, e in encoded.items()}, "cleaning": cleaning,
               "backtest": {"origins": len(windows.get("test", [])), "step": step, "horizon": H}}
    return Prepared({"series": df}, encoded, targets, pre, profile, windows=windows, series=series)


def future_times(last: pd.Timestamp, freq: str, horizon: int) -> list[Any]:
    return list(pd.date_range(last, periods=horizon + 1, freq=freq)[1:])
