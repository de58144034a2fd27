"""`foundry explain`: per-row attributions of a run's predictions (SHAP per column for tables, Integrated Gradients
per token for text), one output row per input row."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from ..core.html import page
from ..core.runs import atomic_write_text, csv_text
from ..evaluate.explain import Scorer, heatmap_html, image_column, image_heatmaps_html
from ..predictor import Predictor
from .common import add_raw_csv, add_set, input_frame


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("input", help="rows to explain (a table file, as foundry predict reads)")
    p.add_argument("-o", "--output-dir", default=".", help="where explanations.csv (tables) or explanations.jsonl and "
                   "explanations.html (text) go (default .)")
    p.add_argument("--background", help="tables: training rows a removed column takes its values from (default: the "
                   "run's explain_background.json)")
    p.add_argument("--steps", type=int, default=32, help="text: Integrated Gradients steps (default 32)")
    add_raw_csv(p)
    add_set(p)


def run(args) -> int:
    pred = Predictor.load(args.run)
    df = input_frame(pred.run, args.input, args.overrides)
    background = input_frame(pred.run, args.background, args.overrides) if args.background else None
    items = pred.explain(df, background=background, steps=args.steps)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if items and "tokens" in items[0]:
        atomic_write_text(out / "explanations.jsonl", "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items))
        name = pred.run.manifest().get("name", "run")
        atomic_write_text(out / "explanations.html", page(f"{name} explanations", name, heatmap_html(items, "Token attributions"),
                                                          subtitle=pred.run.path.name))
        print(f"{len(items)} rows explained -> {out / 'explanations.jsonl'}, {out / 'explanations.html'}", file=sys.stderr)
        return 0
    if image_column(pred.preprocessor) is not None:  # pixel attributions: a heat map beside each image
        enc = Scorer(pred.model, pred.preprocessor, pred.task).encode(df)
        images = {int(r): enc.features["image"][i] for i, r in enumerate(enc.rows)}
        atomic_write_text(out / "explanations.jsonl", "".join(json.dumps(it) + "\n" for it in items))
        name = pred.run.manifest().get("name", "run")
        atomic_write_text(out / "explanations.html", page(f"{name} explanations", name,
                                                          image_heatmaps_html(items, images), subtitle=pred.run.path.name))
        print(f"{len(items)} images explained -> {out / 'explanations.jsonl'}, {out / 'explanations.html'}",
              file=sys.stderr)
        return 0
    id_col = pred.preprocessor.data.id_column
    table = pd.DataFrame([{**({id_col: df[id_col].iloc[i]} if id_col and id_col in df.columns else {}),
                           "prediction": it["prediction"], "explained": it["explained"], "base_value": it["base_value"],
                           "output": it["output"], **{f"shap_{c}": v for c, v in it["attributions"].items()}}
                          for i, it in enumerate(items)])
    atomic_write_text(out / "explanations.csv", csv_text(table, raw=args.raw_csv))
    mean = {c: float(table[f"shap_{c}"].abs().mean()) for c in items[0]["attributions"]} if items else {}
    top = ", ".join(f"{c} {v:.3f}" for c, v in sorted(mean.items(), key=lambda kv: -kv[1])[:5])
    print(f"{len(items)} rows explained -> {out / 'explanations.csv'} (mean |SHAP|: {top})", file=sys.stderr)
    return 0
