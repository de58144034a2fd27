"""Row-level cleaning before the split: exact duplicates and rows whose missing values are set to `drop`.
Value-level fixes (imputation, clipping, flag columns) are fitted on the training split by the
Preprocessor. Every change is counted."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ..config import CleanConfig


def is_numeric(values: pd.Series, kind: str) -> bool:
    """Whether a column takes the numeric missing-value rules: numeric and date columns, and binary columns whose
    values are numbers (the Preprocessor scales those as numbers)."""
    return kind in ("numeric", "datetime") or (kind == "binary" and pd.api.types.is_numeric_dtype(values))


def _hashable(v):
    """Cells holding arrays or lists (images, sequences) compare by content."""
    if isinstance(v, np.ndarray):
        return hashlib.sha1(v.tobytes() + str(v.shape).encode()).hexdigest()
    return str(v) if isinstance(v, (list, dict, tuple)) else v


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
