"""`foundry evaluate`: score a run's model on another labelled file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import run_config
from ..core.runs import write_json
from ..data import Prepared
from ..data.schema import check_target
from ..evaluate import M, evaluate_data
from ..predictor import Predictor
from .common import add_set, input_frame


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("data")
    add_set(p)


def run(args) -> int:
    pred = Predictor.load(args.run)
    cfg = run_config(pred.run)
    df = input_frame(pred.run, args.data, args.overrides)
    check_target(df, cfg.data.target, args.data)
    enc = pred.preprocessor.transform(df, strict=True)
    y = pred.preprocessor.encode_target(df[cfg.data.target].iloc[enc.rows])
    data = Prepared({"test": df}, {"test": enc}, {"test": y}, pred.preprocessor, {})
    names = M.canonical(cfg.evaluate.metrics, pred.task)
    result, _, _ = evaluate_data(pred.model, data, names, "test", baselines=False)
    out = pred.run.path / "evaluations" / f"{Path(args.data).stem}.json"
    write_json(out, {"data": str(Path(args.data).resolve()), **result})
    print(json.dumps(result["test"], indent=2))
    print(f"-> {out}", file=sys.stderr)
    return 0
