"""Does augmentation help? Two small-data cases, each with and without, several seeds, one process run.

1. Text: BANKING77 with 10 training examples per intent (770 rows, drawn with the seed), the full test set.
   LoRA on the embedded MiniLM (the intent_lora recipe's model and adapter) and a small Transformer from
   scratch, each without augmentation and with text augmentation (synonym replacement and insertion from
   MiniLM's embedding neighbours, swaps, deletions).
2. Tables: the credit-card fraud sample (492 frauds, 1,230 normal; 20% test, stratified), an MLP with
   nothing, with balanced class weights, and with SMOTE oversampling; PR-AUC (average precision) on the test.

    .venv/bin/python bench/augmentation.py                    # both parts (~20 min on 2 cores)
    .venv/bin/python bench/augmentation.py --part tables --seeds 5

Writes bench/results/augmentation.json with every run and the mean +- std deltas, whichever way they go.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
TEXT_AUG = {"text_synonym": 0.1, "text_insert": 0.05, "text_swap": 0.05, "text_delete": 0.05}
TEXT_MODELS = {
    "lora": ({"type": "pretrained", "path": "minilm", "finetune": "lora", "pooling": "mean",
              "adapter": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": ["query", "key", "value", "dense"]}},
             {"lr": 2e-3, "epochs": 12, "batch_size": 32, "schedule": "linear", "warmup_ratio": 0.1}),
    "scratch": ({"type": "transformer", "hidden_size": 128, "num_layers": 2, "num_heads": 4, "intermediate_size": 256,
                 "dropout": 0.1, "pooling": "mean"},
                {"lr": 1e-3, "epochs": 40, "batch_size": 32, "schedule": "cosine", "warmup_ratio": 0.05}),
}
TABLE_VARIANTS = {"nothing": ({}, {}), "class_weights": ({}, {"class_weights": "balanced"}),
                  "smote": ({"oversample": "smote"}, {})}


def _train(cfg: dict, frame: pd.DataFrame, test: pd.DataFrame | None) -> dict:
    from modelfoundry.config import load_config
    from modelfoundry.train import train

    t0 = time.perf_counter()
    run = train(load_config(cfg), frame=frame, test_frame=test)
    out = json.loads((run.path / "metrics.json").read_text())["test"]
    return {**{k: round(v, 4) for k, v in out.items() if isinstance(v, float)}, "seconds": round(time.perf_counter() - t0, 1)}


def text_part(seeds: list[int], models: list[str], runs: Path) -> dict:
    train, test = pd.read_csv(SHARED / "banking77" / "train.csv"), pd.read_csv(SHARED / "banking77" / "test.csv")
    out: dict = {}
    for name in models:
        model, tcfg = TEXT_MODELS[name]
        for variant, aug in (("none", {}), ("augmented", TEXT_AUG)):
            for seed in seeds:
                small = train.groupby("category", group_keys=False).sample(10, random_state=seed).reset_index(drop=True)
                text = {"max_length": 64} if name == "lora" else {"max_length": 64, "vocab_size": 2000, "min_frequency": 1}
                cfg = {"name": f"aug-{name}-{variant}", "output_dir": str(runs),
                       "data": {"target": "category", "text": text, "split": {"val": 0.0}, "augment": aug},
                       "model": model, "train": {**tcfg, "seed": seed, "early_stopping": None},
                       "evaluate": {"baselines": False, "report": False, "metrics": ["accuracy", "f1_macro"]}}
                r = _train(cfg, small, test)
                out.setdefault(name, {}).setdefault(variant, []).append({"seed": seed, **r})
                print(f"   text {name} {variant} seed {seed}: {r}", file=sys.stderr, flush=True)
    return out


def table_part(seeds: list[int], runs: Path) -> dict:
    df = pd.read_csv(SHARED / "creditcard_fraud" / "creditcard_sample.csv").drop(columns=["Unnamed: 0"])
    out: dict = {}
    for variant, (aug, extra) in TABLE_VARIANTS.items():
        for seed in seeds:
            cfg = {"name": f"aug-fraud-{variant}", "output_dir": str(runs),
                   "data": {"target": "Class", "types": {"Class": "categorical"},
                            "split": {"test": 0.2, "val": 0.15}, "augment": aug},
                   "model": {"type": "mlp", "hidden": [64, 32], "dropout": 0.2},
                   "train": {"lr": 1e-3, "epochs": 40, "batch_size": 64, "seed": seed,
                             "early_stopping": {"metric": "val_loss", "patience": 8}, **extra},
                   "evaluate": {"baselines": False, "report": False, "metrics": ["pr_auc", "roc_auc", "f1_macro"]}}
            r = _train(cfg, df, None)
            out.setdefault(variant, []).append({"seed": seed, **r})
            print(f"   fraud {variant} seed {seed}: {r}", file=sys.stderr, flush=True)
    return out


def summary(runs: list[dict], metric: str) -> dict:
    vals = [r[metric] for r in runs]
    return {"mean": round(statistics.mean(vals), 4), "std": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "text", "tables"], default="all")
    ap.add_argument("--seeds", type=int, default=2, help="text part; the table part uses 5 unless --table-seeds")
    ap.add_argument("--table-seeds", type=int, default=5)
    ap.add_argument("--models", nargs="+", choices=list(TEXT_MODELS), default=list(TEXT_MODELS))
    ap.add_argument("--out", default=str(HERE / "results" / "augmentation.json"))
    args = ap.parse_args()
    runs = Path(tempfile.mkdtemp(prefix="bench-aug-"))
    path = Path(args.out)
    result = json.loads(path.read_text()) if path.exists() else {}
    if args.part in ("all", "text"):
        raw = text_part(list(range(args.seeds)), args.models, runs)
        text = {"setup": "BANKING77, 10 training examples per intent (770 rows), full test set (3,080)",
                "augmentation": TEXT_AUG, "runs": raw, "summary": {}}
        for name, variants in raw.items():
            s = {v: summary(rs, "accuracy") for v, rs in variants.items()}
            s["delta_accuracy"] = round(s["augmented"]["mean"] - s["none"]["mean"], 4)
            text["summary"][name] = s
        result["text"] = text
    if args.part in ("all", "tables"):
        raw = table_part(list(range(args.table_seeds)), runs)
        s = {v: summary(rs, "pr_auc") for v, rs in raw.items()}
        s["delta_pr_auc_smote_vs_nothing"] = round(s["smote"]["mean"] - s["nothing"]["mean"], 4)
        s["delta_pr_auc_smote_vs_class_weights"] = round(s["smote"]["mean"] - s["class_weights"]["mean"], 4)
        result["tables"] = {"setup": "credit-card fraud sample (1,722 rows, 28.6% fraud), 20% test stratified by "
                                     "the seed, MLP [64, 32]; metric PR-AUC (average precision)",
                            "runs": raw, "summary": s}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v.get("summary") for k, v in result.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
