"""Train / validation / test splits: random, stratified, group, time-ordered, an explicit column, or a
separate test file. Always seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from .config import SplitConfig
from .sources import DataError

SPLITS = ("train", "val", "test")


def _two_way(idx: np.ndarray, frac: float, method: str, y: pd.Series, groups: pd.Series | None,
             order: pd.Series | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split idx into (keep, held) with about `frac` of it held out."""
    if frac <= 0 or len(idx) < 2:
        return idx, idx[:0]
    if method == "time":
        ordered = idx[np.argsort(order.iloc[idx].to_numpy(), kind="stable")]
        n_held = max(1, int(round(len(idx) * frac)))
        return ordered[:-n_held], ordered[-n_held:]
    if method == "group":
        gss = GroupShuffleSplit(n_splits=1, test_size=frac, random_state=seed)
        keep, held = next(gss.split(idx, groups=groups.iloc[idx].to_numpy()))
        return idx[keep], idx[held]
    strat = None
    if method == "stratified":
        labels = y.iloc[idx].fillna("<unlabelled>").astype(str)  # an anomaly task's evaluation labels may be partial
        counts = labels.value_counts()
        if counts.min() >= 2 and int(round(len(idx) * frac)) >= len(counts):
            strat = labels.to_numpy()
    keep, held = train_test_split(idx, test_size=frac, random_state=seed, stratify=strat)
    return np.sort(keep), np.sort(held)


def smiles_column(schema: dict[str, str]) -> str | None:
    """The first SMILES column of a schema (what a scaffold split groups by, unless data.split.group_column names one)."""
    return next((c for c, k in schema.items() if k == "smiles"), None)


def split_frame(df: pd.DataFrame, cfg: SplitConfig, task: str, target: str, seed: int,
                has_test_file: bool, group_default: str | None = None, smiles_column: str | None = None
                ) -> dict[str, np.ndarray]:
    """Row positions of each split. smiles_column: the data's SMILES column (method scaffold)."""
    idx = np.arange(len(df))
    if cfg.column:
        if cfg.column not in df.columns:
            raise DataError(f"data.split.column: column '{cfg.column}' not in the data")
        values = df[cfg.column].astype(str).str.lower().str.strip()
        bad = sorted(set(values) - set(SPLITS))
        if bad:
            raise DataError(f"data.split.column '{cfg.column}': values must be train/val/test, found {bad[:5]}")
        return {s: idx[(values == s).to_numpy()] for s in SPLITS}
    method = cfg.method
    if method == "scaffold":
        col = cfg.group_column or smiles_column
        if col is None or col not in df.columns:
            raise DataError("data.split.method scaffold needs a SMILES column: declare it in data.types "
                            "(`{smiles: smiles}`) or name it in data.split.group_column")
        from .molecules import scaffold_split

        parts = scaffold_split(df[col].tolist(), 0.0 if has_test_file else cfg.test, cfg.val, seed)
        if len(parts["train"]) == 0:
            raise DataError(f"data.split.method scaffold left no training rows: one scaffold of column '{col}' holds "
                            f"more of the {len(df)} rows than the training share (1 - test - val); use another split "
                            "method for a set of close analogues")
        return parts
    if method == "auto":
        method = "group" if group_default else ("stratified" if task in ("classification", "anomaly") else "random")
    groups = df[cfg.group_column or group_default] if method == "group" else None
    order = df[cfg.time_column] if method == "time" else None
    y = df[target]
    if has_test_file:
        train, test = idx, idx[:0]
    else:
        train, test = _two_way(idx, cfg.test, method, y, groups, order, seed)
    val_frac = cfg.val / (1 - (0 if has_test_file else cfg.test))
    train, val = _two_way(train, val_frac, method, y, groups, order, seed + 1)
    if len(train) == 0:
        raise DataError(f"the split left no training rows ({len(df)} rows in all)")
    return {"train": train, "val": val, "test": test}
