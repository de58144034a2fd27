"""`foundry data clean`: apply data.fixes to a copy of the data and log every change.

Writes OUT/<file name> (same format as the name says) and OUT/changes.csv: one line per row or cell touched
(row, column, action, old, new, reason), plus OUT/data_profile.json, the audit the fixes came from. Held-out rows
(the validation and test splits, and a separate test file) are never changed: only training rows are dropped,
relabelled, imputed or clipped, so scores stay comparable; in a CSV/TSV copy every row that was not changed is
its source record, byte for byte. The original file is never overwritten."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..core.runs import atomic_write_bytes, atomic_write_text, csv_text, write_json
from .audit import audit
from .clean import is_numeric, outlier_bounds
from .pii import mask, masked, pseudonym, rewrite
from .prepare import read_frame
from .sources import DataError, csv_lines, decode, sniff_delimiter
from .split import smiles_column, split_frame

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config


def _source_records(text: str, delimiter: str) -> list[str] | None:
    """The source text of the header and of each non-blank record, line endings included (a quoted field may span
    lines), or None where they do not line up with pandas' rows."""
    import csv
    import io

    lines = csv_lines(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar='"')
    out, start = [], 0
    for record in reader:
        if record:
            out.append("".join(lines[start: reader.line_num]))
        start = reader.line_num
    return out


def _write_delimited(df: pd.DataFrame, path: Path, changed: set[int], kept: list[int], source: Path,
                     cfg: Config, sep: str) -> bool:
    """Write the kept rows, each unchanged one as its source record; False where the source cannot be lined up
    (whitespace-separated, data.columns instead of a header, or records that pandas counts otherwise)."""
    d = cfg.data
    text = decode(source, d.encoding)
    delimiter = d.delimiter or sniff_delimiter(text, sep)
    if delimiter == " " or d.columns:
        return False
    records = _source_records(text, delimiter)
    if records is None or len(records) != len(df) + 1:
        return False
    newline = "\r\n" if records[0].endswith("\r\n") else "\n"
    parts = [records[0] if records[0].endswith(("\n", "\r")) else records[0] + newline]
    for r in kept:
        if r in changed:
            parts.append(df.iloc[[r]].to_csv(index=False, header=False, sep=delimiter, lineterminator=newline))
        else:
            rec = records[r + 1]
            parts.append(rec if rec.endswith(("\n", "\r")) else rec + newline)
    atomic_write_text(path, "".join(parts))
    return True


def _write_frame(df: pd.DataFrame, path: Path) -> None:
    import io

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(path, buf.getvalue())
    elif suffix in (".jsonl", ".ndjson"):
        atomic_write_text(path, df.to_json(orient="records", lines=True, force_ascii=False))
    elif suffix in (".tsv", ".tab"):
        atomic_write_text(path, df.to_csv(index=False, sep="\t"))
    elif suffix in (".csv", ".txt"):
        atomic_write_text(path, df.to_csv(index=False))
    else:
        raise DataError(f"{path}: cannot write this format (csv, tsv, parquet or jsonl)")


def clean_data(cfg: Config, out_dir: str | Path, raw_csv: bool = False) -> tuple[Path, pd.DataFrame, dict]:
    """Returns (cleaned file, the change log, the audit). changes.csv quotes cells that a spreadsheet would run as
    formulas (`csv_text`) unless raw_csv; the cleaned copy is data and is written as it is."""
    d, fx = cfg.data, cfg.data.fixes
    src = cfg.resolve_path(d.path)
    if src is None or src.is_dir():
        raise DataError(f"data.path: foundry data clean needs a table file (csv, tsv, parquet, jsonl), got {src}")
    out_dir = Path(out_dir)
    out = out_dir / src.name
    if out.resolve() == src.resolve():
        raise DataError(f"-o {out_dir}: would overwrite the original {src}; choose another folder")
    report = audit(cfg, with_label_issues=fx.label_errors != "keep")
    df = read_frame(cfg, d.path)
    split = split_frame(df, d.split, report["task"], d.target, cfg.train.seed, bool(d.test_path), None,
                        smiles_column(report["schema"]))
    held = set(split["val"].tolist()) | set(split["test"].tolist())
    train_rows = np.array(sorted(set(range(len(df))) - held))
    changes: list[dict] = []
    drop: dict[int, str] = {}

    def drop_row(row: int, action: str, reason: str) -> None:
        if row not in held and row not in drop:
            drop[row] = action
            changes.append({"row": row, "column": "", "action": action, "old": "", "new": "", "reason": reason})

    if fx.duplicates == "drop":
        for r in report["duplicates"]["rows"]:
            drop_row(r["row"], "drop_duplicate", f"exact duplicate of row {r['duplicate_of']}")
    if fx.near_duplicates == "drop":
        for r in report["near_duplicates"]["rows"]:
            drop_row(r["row"], "drop_near_duplicate",
                     f"near duplicate of row {r['near_duplicate_of']} (similarity {r['similarity']})")
    if fx.leakage == "drop":
        for p in report["leakage"]["pairs"]:
            h = p["held_out"]
            drop_row(p["train"]["row"], "drop_leaked",
                     f"repeats held-out row {h['row']} of the {h['file']} file (similarity {p['similarity']})")
    if fx.label_errors != "keep":
        for it in report.get("label_issues", {}).get("issues", []):
            if it["confidence"] < fx.label_error_confidence or it["row"] in held or it["row"] in drop:
                continue
            why = f"likely label error: out-of-fold probability {it['confidence']} for '{it['suggested']}'"
            if fx.label_errors == "drop":
                drop_row(it["row"], "drop_label_error", why)
            else:
                old = df.at[it["row"], d.target]
                new = type(old)(it["suggested"]) if isinstance(old, (int, np.integer)) else it["suggested"]
                df.at[it["row"], d.target] = new
                changes.append({"row": it["row"], "column": d.target, "action": "relabel", "old": old, "new": new,
                                "reason": why})
    schema = report["schema"]
    fit_rows = [r for r in train_rows if r not in drop]
    if fx.missing == "impute":  # training rows only: held-out rows keep their missing values, as they came
        _impute(df, schema, fit_rows, fit_rows, cfg, changes, drop)
    if fx.outliers == "clip":
        _clip(df, schema, [r for r in fit_rows if r not in drop], fit_rows, cfg, changes)
    dropped_columns = []
    if fx.pii != "keep":
        dropped_columns = _pii(df, report["pii"], [r for r in fit_rows if r not in drop], fx.pii, changes)
    assert not held & ({c["row"] for c in changes}), "a held-out row was changed"
    kept = [r for r in range(len(df)) if r not in drop]
    changed = {c["row"] for c in changes if c["row"] not in drop}
    if dropped_columns:
        df = df.drop(columns=dropped_columns)
    fmt = d.format if d.format != "auto" else ("tsv" if src.suffix.lower() in (".tsv", ".tab") else
                                              "csv" if src.suffix.lower() in (".csv", ".txt", ".data") else "other")
    if not (fmt in ("csv", "tsv") and out.suffix.lower() == src.suffix.lower() and not dropped_columns
            and _write_delimited(df, out, changed, kept, src, cfg, "\t" if fmt == "tsv" else ",")):
        _write_frame(df.loc[kept].reset_index(drop=True), out)
    changes.sort(key=lambda c: (-1 if c["row"] == "" else c["row"], c["column"]))  # a whole column first
    log = pd.DataFrame(changes, columns=["row", "column", "action", "old", "new", "reason"])
    atomic_write_text(out_dir / "changes.csv", csv_text(log, raw=raw_csv))
    write_json(out_dir / "data_profile.json", report)
    return out, log, report


def _pii(df: pd.DataFrame, pii: dict, rows: list[int], how: str, changes: list[dict]) -> list[str]:
    """data.fixes.pii on the kept training rows (redact, hash), or the flagged columns to drop. The change log keeps
    the old value masked: a log that repeated the personal data would need cleaning itself."""
    if how == "drop_column":
        for col, kinds in pii.items():
            changes.append({"row": "", "column": col, "action": "drop_column", "old": "", "new": "",
                            "reason": "personal data: " + ", ".join(f"{k} in {len(v['rows'])} rows" for k, v in kinds.items())})
        return list(pii)
    keep = set(rows)
    for col, kinds in pii.items():
        if not (pd.api.types.is_object_dtype(df[col]) or pd.api.types.is_string_dtype(df[col])):
            df[col] = df[col].astype(object)  # a phone number read as an integer becomes text: '[PHONE]'
        for r in sorted({r for v in kinds.values() for r in v["rows"]} & keep):
            old = df.at[r, col]
            if "name" in kinds:
                new, found, shown = ("[NAME]" if how == "redact" else pseudonym("name", str(old))), ["name"], mask(str(old))
            else:
                (new, found), shown = rewrite(str(old), how), masked(str(old))
            if found:
                df.at[r, col] = new
                changes.append({"row": r, "column": col, "action": f"pii_{how}", "old": shown, "new": new,
                                "reason": "personal data: " + ", ".join(sorted(set(found)))})
    return []


def _impute(df, schema, kept, fit_rows, cfg, changes, drop) -> None:
    """Missing values of the kept training rows, by data.clean's own rule for each column (`missing_strategy`, the
    one training uses), with statistics of the training rows."""
    c = cfg.data.clean
    for col, kind in schema.items():
        if kind not in ("numeric", "categorical", "binary", "text") or col == cfg.data.target:
            continue
        missing = [r for r in kept if pd.isna(df.at[r, col])]
        if not missing:
            continue
        strategy, constant = c.missing_strategy(col, is_numeric(df[col], kind))
        if strategy == "drop":
            for r in missing:
                if r not in drop:
                    drop[r] = "drop_missing"
                    changes.append({"row": r, "column": col, "action": "drop_missing", "old": "", "new": "",
                                    "reason": f"missing value (data.clean strategy for '{col}': drop)"})
            continue
        base = df.loc[fit_rows, col].dropna()
        if kind == "text":
            value, how = "", "an empty text"
        elif strategy == "unknown":
            continue  # training keeps a missing category as its own bucket: nothing to write
        elif strategy == "constant":
            value, how = constant, "the constant data.clean.columns gives"
        elif base.empty:
            continue
        elif strategy in ("mean", "median", "flag") and is_numeric(df[col], kind):
            nums = pd.to_numeric(base, errors="coerce").dropna()
            value = float(nums.mean() if strategy == "mean" else nums.median())
            how = "the training rows' " + ("mean" if strategy == "mean" else "median")
        else:
            value, how = base.mode().iloc[0], "the training rows' mode"
        for r in missing:
            df.at[r, col] = value
            changes.append({"row": r, "column": col, "action": "impute", "old": "", "new": value,
                            "reason": f"missing; filled with {how}"})


def _clip(df, schema, kept, fit_rows, cfg, changes) -> None:
    c = cfg.data.clean
    method = c.outliers if c.outliers != "none" else "iqr"
    for col, kind in schema.items():
        if kind != "numeric" or col == cfg.data.target:
            continue
        base = pd.to_numeric(df.loc[fit_rows, col], errors="coerce").dropna()
        if base.empty:
            continue
        lo, hi = outlier_bounds(base, c, method)
        integer = pd.api.types.is_integer_dtype(df[col])
        if integer:  # an integer column stays integer (the held-out rows' values keep their type): whole bounds
            lo, hi = int(np.ceil(lo)), int(np.floor(hi))
        for r in kept:
            v = df.at[r, col]
            if pd.notna(v) and (v < lo or v > hi):
                new = min(max(v, lo), hi) if integer else float(min(max(v, lo), hi))
                df.at[r, col] = new
                changes.append({"row": r, "column": col, "action": "clip", "old": v, "new": round(new, 6),
                                "reason": f"outside [{lo:.4g}, {hi:.4g}] ({method} of the training rows)"})
