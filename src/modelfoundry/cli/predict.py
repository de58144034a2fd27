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
    add_raw_csv(p)
    add_set(p)


def run(args) -> int:
    pred = Predictor.load(args.run)
    df = input_frame(pred.run, args.input, args.overrides)
    out = pred.forecast(df) if pred.task == "forecast" else pred.predict(df)  # forecast: one row per series and step

    text = csv_text(out, raw=args.raw_csv)
    if args.output:
        atomic_write_text(Path(args.output), text)
        print(f"{len(out)} predictions -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
