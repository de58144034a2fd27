"""The `.ts` time-series format of the UEA & UCR archive (sktime's and aeon's): one series per line, its channels
separated by ':', the values of a channel by ',', the class label last. Read into one list column per channel
(`dim_0`, `dim_1`, ...) and the target column, so each row is one series and each channel one `sequence` input.

Written here rather than importing sktime (or aeon) for one reader: either pulls a large dependency tree for a
format this short. Timestamped series (`@timeStamps true`) are refused with the reason."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .sources import DataError, decode


def _values(text: str, path: Path, line: int, channel: int) -> list[float]:
    out = []
    for v in text.split(","):
        v = v.strip()
        if v in ("?", "NaN", "nan", ""):
            out.append(math.nan)
            continue
        try:
            out.append(float(v))
        except ValueError:
            raise DataError(f"{path}: line {line}, channel {channel}: {v[:30]!r} is not a number (missing values "
                            "are written '?')") from None
    return out


def read_ts(path: Path, target: str = "label") -> pd.DataFrame:
    """A `.ts` file -> DataFrame: `dim_0..dim_{d-1}` (lists of floats, NaN for '?') and `target` (the class label,
    or the regression value, when the header says `@classLabel true` / `@targetLabel true`)."""
    header: dict[str, str] = {}
    rows: list[dict] = []
    in_data = False
    dims = None
    for n, raw in enumerate(decode(path, None).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataError(f"{path}: line {n}: expected a header line (@name value) or @data, got {line[:40]!r}")
            key, _, value = line[1:].partition(" ")
            key = key.lower()
            if key == "data":
                in_data = True
                if header.get("timestamps", "false").lower() == "true":
                    raise DataError(f"{path}: @timeStamps true: timestamped series are not read; write the values "
                                    "at equal steps (or use a long table with data.sequence)")
            else:
                header[key] = value.strip()
            continue
        labelled = header.get("classlabel", "false").split()[0].lower() == "true" or \
            header.get("targetlabel", "false").lower() == "true"
        parts = line.split(":")
        label = parts.pop().strip() if labelled else None
        if dims is None:
            dims = len(parts)
            declared = header.get("dimensions")
            if declared is not None and declared.isdigit() and int(declared) != dims:
                raise DataError(f"{path}: line {n} has {dims} channel(s) but the header says @dimensions {declared}")
        elif len(parts) != dims:
            raise DataError(f"{path}: line {n} has {len(parts)} channel(s), the lines before it {dims}")
        row: dict = {f"dim_{i}": _values(p, path, n, i) for i, p in enumerate(parts)}
        if label is not None:
            row[target] = label
        rows.append(row)
    if not in_data:
        raise DataError(f"{path}: no @data line; not a .ts file of the UEA & UCR archive")
    if not rows:
        raise DataError(f"{path}: @data holds no series")
    df = pd.DataFrame(rows)
    if target in df.columns and header.get("targetlabel", "false").lower() == "true":
        df[target] = pd.to_numeric(df[target], errors="raise")
    return df
