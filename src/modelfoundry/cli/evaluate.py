"""`foundry evaluate`: score a run's model on another labelled file, or a pretraining run on another corpus."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import load_config, run_config
from ..core.runs import write_json
from ..core.spec import CORPUS_TASKS
from ..data import Prepared
from ..data.recommend import interactions
from ..data.schema import check_target
from ..evaluate import M, evaluate_data
from ..evaluate.forecast import backtest_history
from ..evaluate.recommend import evaluate_frame
from ..predictor import Predictor
from ..pretrain.score import score_corpus
from .common import add_set, input_frame


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("data")
    add_set(p)


def run(args) -> int:
    pred = Predictor.load(args.run)
    cfg = run_config(pred.run)
    if pred.task in CORPUS_TASKS:  # a pretraining run: loss / perplexity (/ bits per byte) on another corpus
        if args.overrides:  # e.g. --set data.corpus.documents=file for another kind of text file
            cfg = load_config(cfg.to_dict(), args.overrides)
        result = score_corpus(pred.model, pred.preprocessor, Path(args.data), cfg.data.corpus, cfg.data.format,
                              cfg.train.seed, cfg.data.corpus.mlm_probability)
        return _write(pred, args.data, {"test": result})
    if pred.task == "causal_lm":
        raise ValueError(f"{args.run}: a causal-LM fine-tune; its held-out loss is in metrics.json (score new pairs by "
                         "training with them as data.test_path)")
    df = input_frame(pred.run, args.data, args.overrides)
    if pred.task == "forecast":  # rolling origins over the file's series, beside naive and seasonal naive
        return _write(pred, args.data, backtest_history(pred.model, pred.preprocessor, df, args.data))
    if pred.task == "recommend":  # later interactions of the users: ranked over the catalogue, beside popularity
        pre = pred.preprocessor
        frame, _ = interactions(df, pre.data, args.data)
        if pre.rc.feedback == "implicit" and pre.rc.rating and pre.rc.positive is not None:
            frame = frame[frame[pre.rc.rating] >= pre.rc.positive]
        names = [n for n in (cfg.evaluate.metrics or M.names_for("recommend"))
                 if n != "rmse" or pre.rc.feedback == "explicit"]
        result = evaluate_frame(pred.model, pre, frame, None, names)
        result.pop("_curves")
        return _write(pred, args.data, result)
    if pred.task == "anomaly" and cfg.data.target not in df.columns:
        raise ValueError(f"{args.data}: no '{cfg.data.target}' column; an anomaly run is evaluated against labels "
                         "(1 = anomaly); to score rows without labels, use foundry predict")
    check_target(df, cfg.data.target, args.data, pred.task)
    enc = pred.preprocessor.transform(df, strict=True)
    y = pred.preprocessor.encode_target(df[cfg.data.target].iloc[enc.rows])
    data = Prepared({"test": df}, {"test": enc}, {"test": y}, pred.preprocessor, {})
    names = M.canonical(cfg.evaluate.metrics, pred.task)
    result, _, _ = evaluate_data(pred.model, data, names, "test", baselines=False)
    return _write(pred, args.data, result)


def _write(pred: Predictor, data: str, result: dict) -> int:
    out = pred.run.path / "evaluations" / f"{Path(data).stem}.json"
    write_json(out, {"data": str(Path(data).resolve()), **result})
    print(json.dumps(result["test"], indent=2, ensure_ascii=False))
    print(f"-> {out}", file=sys.stderr)
    return 0
