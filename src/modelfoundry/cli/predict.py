"""`foundry predict`: predict raw rows with a run's model and preprocessor."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.runs import atomic_write_text, csv_text
from ..predictor import Predictor
from .common import add_raw_csv, add_set, input_frame


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("input")
    p.add_argument("-o", "--output", help="CSV to write (default: stdout)")
    p.add_argument("-k", type=int, default=10, help="a recommend run given users only: items per user (default 10)")
    add_raw_csv(p)
    add_set(p)


def recommendations(pred: Predictor, df, k: int):
    """One row per input row: the user, its top k items and their scores (JSON lists), and whether it was a cold start."""
    import json

    user = pred.preprocessor.rc.user
    if user not in df.columns:
        from ..data import DataError

        raise DataError(f"input has no '{user}' column (data.recommend.user); it has: {', '.join(map(str, df.columns))}")
    out = pred.recommend_many(df[user].tolist(), k)
    out["items"] = out["items"].map(lambda v: json.dumps(v, ensure_ascii=False))  # 高等数学, not \u9ad8...
    out["scores"] = out["scores"].map(json.dumps)
    out.insert(0, user, df[user].to_numpy())
    return out


def schedules(run_path: Path, path: str):
    """A schedule run: every instance of the file scheduled by its policy, one row per operation."""
    import pandas as pd

    from ..schedule import schedule_instances

    return pd.DataFrame([{"instance": name, **row} for name, rows in schedule_instances(run_path, Path(path)).items()
                         for row in rows])


def run(args) -> int:
    from ..core.runs import Run

    path = Run.open(args.run).path
    if (path / "model" / "policy.json").exists():  # a schedule run: instances in, schedules out
        out = schedules(path, args.input)
        return _write(out, args, f"{out['instance'].nunique()} schedules")
    pred = Predictor.load(args.run)
    df = input_frame(pred.run, args.input, args.overrides)
    if pred.task == "forecast":  # one row per series and step
        out = pred.forecast(df)
    elif pred.task == "recommend" and pred.preprocessor.rc.item not in df.columns:  # a user column alone: top items
        out = recommendations(pred, df, args.k)
    else:
        out = pred.predict(df)
    return _write(out, args, f"{len(out)} predictions")


def _write(out, args, what: str) -> int:
    """The CSV to --output (atomically, saying what went there) or to stdout."""
    text = csv_text(out, raw=args.raw_csv)
    if args.output:
        atomic_write_text(Path(args.output), text)
        print(f"{what} -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
