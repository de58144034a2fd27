"""The data profile: schema, statistics and quality findings, written to data_profile.json."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _num(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    return round(float(v), 6)


def profile_frame(df: pd.DataFrame, schema: dict[str, str], target: str, task: str) -> dict:
    cols = {}
    for col in df.columns:
        s = df[col]
        kind = "target" if col == target else schema.get(col, "ignore")
        entry: dict[str, Any] = {"type": kind, "missing": int(s.isna().sum()),
                                 "missing_fraction": _num(s.isna().mean()) if len(s) else 0.0}
        try:
            entry["unique"] = int(s.nunique())
        except TypeError:  # list/array cells
            entry["unique"] = None
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            d = s.describe(percentiles=[0.01, 0.25, 0.5, 0.75, 0.99])
            entry["stats"] = {k: _num(d.get(k)) for k in ("mean", "std", "min", "1%", "25%", "50%", "75%", "99%", "max")}
            q1, q3 = s.quantile(0.25), s.quantile(0.75)
            entry["outliers_iqr"] = int(((s < q1 - 1.5 * (q3 - q1)) | (s > q3 + 1.5 * (q3 - q1))).sum())
            hist, edges = np.histogram(s.dropna(), bins=20) if s.notna().any() else ([], [])
            entry["histogram"] = {"counts": [int(c) for c in hist], "edges": [_num(e) for e in edges]}
        elif kind in ("categorical", "binary", "target") and entry["unique"] is not None:
            entry["top"] = {str(k): int(v) for k, v in s.value_counts().head(10).items()}
        if kind == "text":
            lengths = s.dropna().astype(str).str.len()
            entry["length"] = {"mean": _num(lengths.mean()), "min": int(lengths.min()), "max": int(lengths.max()),
                               "p95": _num(lengths.quantile(0.95))}
        cols[str(col)] = entry
    profile: dict[str, Any] = {"rows": len(df), "columns": cols, "task": task, "target": target}
    if task == "classification":
        counts = df[target].value_counts()
        profile["class_balance"] = {str(k): int(v) for k, v in counts.items()}
        profile["imbalance_ratio"] = _num(counts.max() / max(counts.min(), 1))
    return profile
