"""Column types and the task, inferred from the data and overridable per column (`data.types`)."""

from __future__ import annotations

import difflib
import re
import warnings

import numpy as np
import pandas as pd

from .molecules import looks_like_smiles
from .sources import DataError


def check_target(df: pd.DataFrame, target: str, where: str, task: str = "auto") -> None:
    """The target column exists and has no missing values. An anomaly task trains without labels: its target (the
    evaluation labels) may be absent or partly missing (rows nobody checked)."""
    if task == "anomaly":
        return
    if target not in df.columns:
        cols = [str(c) for c in df.columns]
        close = difflib.get_close_matches(target, cols, n=1, cutoff=0.4)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise DataError(f"{where}: target column '{target}' not found. Columns: {', '.join(cols[:30])}{hint} "
                        "(set data.target)")
    missing = df[target].isna().to_numpy().nonzero()[0]
    if len(missing):
        rows = ", ".join(str(r) for r in missing[:10])
        raise DataError(f"{where}: target '{target}' is missing (NaN) in {len(missing)} row(s), 0-based rows {rows}"
                        f"{' ...' if len(missing) > 10 else ''}; fill or remove them")


def infer_task(y: pd.Series, declared: str) -> str:
    if declared != "auto":
        return declared
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification"
    values = y.dropna().to_numpy()
    integral = np.all(np.equal(np.mod(values, 1), 0))
    return "classification" if integral and len(np.unique(values)) <= 20 else "regression"


def _looks_like_datetime(s: pd.Series) -> bool:
    sample = s.dropna().astype(str).head(200)
    if sample.empty or not sample.str.contains(r"\d{1,4}[-/:.]\d{1,2}", regex=True).mean() > 0.9:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return parsed.notna().mean() > 0.9


def infer_type(s: pd.Series) -> str:
    non_null = s.dropna()
    if non_null.empty:
        return "ignore"
    first = non_null.iloc[0]
    if isinstance(first, (list, tuple, np.ndarray)):
        return "image" if np.asarray(first).ndim >= 2 else "sequence"
    if pd.api.types.is_bool_dtype(s) or non_null.nunique() == 2:
        return "binary"
    if pd.api.types.is_numeric_dtype(s):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime"
    text = non_null.astype(str)
    if text.str.lower().str.match(r".*\.(png|jpe?g|bmp|gif|webp)$").mean() > 0.9:
        return "image"
    if text.str.lower().str.match(r".*\.(wav|flac|ogg|mp3|aiff?)$").mean() > 0.9:
        return "audio"
    if _looks_like_datetime(s):
        return "datetime"
    lengths = text.str.len()
    words = text.str.split().str.len()
    unique_ratio = non_null.nunique() / len(non_null)
    cjk = text.str.contains(r"[\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]", regex=True).mean() > 0.5
    long_enough = words.mean() >= 3 or lengths.mean() >= (8 if cjk else 20)  # CJK writes no spaces
    if long_enough and unique_ratio > 0.3:
        return "text"
    return "categorical"


ID_NAME = re.compile(r"^(?:id|uuid|guid|index|idx|row|row_?id|row_?num(?:ber)?|record_?id|key|序号|编号)$|(?:_id|Id|ID)$",
                     re.I)
"""Headers that name a row identifier (`id`, `row_id`, `customerID`, `序号`)."""


def id_like(s: pd.Series, name: str, kind: str) -> str | None:
    """Why a column looks like a row identifier (unique per row, so nothing to learn from and a path to overfitting),
    or None. AutoGluon leaves such columns out by default; so do we, unless data.types declares them."""
    if kind not in ("numeric", "categorical"):  # text, images, sequences and dates are never identifiers here
        return None
    values = s.dropna()
    if len(values) < 20 or len(values) < len(s) or values.nunique() < len(values):
        return None
    if kind == "numeric":
        v = values
        if pd.api.types.is_integer_dtype(s) and (v.is_monotonic_increasing or v.is_monotonic_decreasing):
            return "unique, increasing integers"
        if ID_NAME.search(str(name)):
            return "named like an identifier, a different value in every row"
        return None
    if kind == "categorical":
        return "a different value in every row (no category repeats)"
    return None


def infer_schema(df: pd.DataFrame, target: str, overrides: dict[str, str], id_column: str | None,
                 exclude: set[str] = frozenset(), id_like_found: dict | None = None) -> dict[str, str]:
    """Column -> type. A column not declared in `overrides` that looks like a row identifier (`id_like`) is ignored;
    `id_like_found` receives {column: why}."""
    unknown = [c for c in overrides if c not in df.columns]
    if unknown:
        cols = [str(c) for c in df.columns]
        hints = [f"'{c}'" + (f" (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(c, cols, n=1)) else "")
                 for c in unknown]
        raise DataError(f"data.types names column(s) not in the data: {', '.join(hints)}")
    schema = {}
    for col in df.columns:
        if col == target or col in exclude:
            continue
        if col == id_column:
            schema[col] = "ignore"
            continue
        if col in overrides:
            schema[col] = overrides[col]
            continue
        schema[col] = infer_type(df[col])
        if schema[col] in ("text", "categorical") and looks_like_smiles(str(col)):
            schema[col] = "smiles"
    ids = {col: why for col, kind in schema.items() if col not in overrides
           and (why := id_like(df[col], col, kind))}
    if ids and any(k != "ignore" for c, k in schema.items() if c not in ids):  # never the only inputs left
        for col, why in ids.items():
            schema[col] = "ignore"
            if id_like_found is not None:
                id_like_found[str(col)] = why
    for col, kind in schema.items():
        if kind == "numeric" and not pd.api.types.is_numeric_dtype(df[col]):
            coerced = pd.to_numeric(df[col], errors="coerce")
            bad = (coerced.isna() & df[col].notna()).to_numpy().nonzero()[0]
            if len(bad):
                raise DataError(f"column '{col}' is declared numeric but row {bad[0]} holds {df[col].iloc[bad[0]]!r} "
                                f"({len(bad)} non-numeric value(s)); declare it text/categorical in data.types, or fix the data")
    if not any(k != "ignore" for k in schema.values()):
        raise DataError(f"no feature columns left besides the target '{target}' (columns: {', '.join(map(str, df.columns))})")
    return schema
