"""Row-level cleaning before the split: exact duplicates and rows whose missing values are set to `drop`.
Value-level fixes (imputation, clipping, flag columns) are fitted on the training split by the
Preprocessor. Every change is counted."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from .config import CleanConfig


def is_numeric(values: pd.Series, kind: str) -> bool:
    """Whether a column takes the numeric missing-value rules: numeric and date columns, and binary columns whose
    values are numbers (the Preprocessor scales those as numbers)."""
    return kind in ("numeric", "datetime") or (kind == "binary" and pd.api.types.is_numeric_dtype(values))


def _hashable(v):
    """Cells holding arrays or lists (images, sequences) compare by content."""
    if isinstance(v, np.ndarray):
        return hashlib.sha1(v.tobytes() + str(v.shape).encode()).hexdigest()
    return str(v) if isinstance(v, (list, dict, tuple)) else v


def outlier_bounds(values: pd.Series, clean: CleanConfig, method: str | None = None) -> tuple[float, float] | None:
    """(low, high) clip bounds of a numeric column's training values by data.clean.outliers (or `method`): IQR
    fences at outlier_threshold (default 1.5) interquartile ranges, or mean +- outlier_threshold (default 3.0)
    standard deviations; None for 'none'. Missing values are ignored. The one copy: training and data clean."""
    method = method or clean.outliers
    if method == "iqr":
        k = clean.outlier_threshold if clean.outlier_threshold is not None else 1.5
        q1, q3 = values.quantile(0.25), values.quantile(0.75)
        return q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    if method == "zscore":
        k = clean.outlier_threshold if clean.outlier_threshold is not None else 3.0
        return values.mean() - k * values.std(), values.mean() + k * values.std()
    return None


def drop_rows(df: pd.DataFrame, clean: CleanConfig, schema: dict[str, str]) -> tuple[pd.DataFrame, dict]:
    report: dict = {"rows_in": len(df), "duplicates_dropped": 0, "missing_dropped": {}}
    if clean.duplicates:
        hashable = df.map(_hashable) if len(df) else df
        dup = hashable.duplicated().to_numpy()
        report["duplicates_dropped"] = int(dup.sum())
        report["duplicate_rows"] = [int(i) for i in dup.nonzero()[0][:100]]
        df = df[~dup]
    for col, kind in schema.items():
        strategy, _ = clean.missing_strategy(col, is_numeric(df[col], kind))
        if strategy == "drop" and kind != "ignore":
            gone = df[col].isna()
            if gone.any():
                report["missing_dropped"][col] = int(gone.sum())
                df = df[~gone]
    report["rows_out"] = len(df)
    return df, report
