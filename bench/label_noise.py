"""Label-error detection on BANKING77: flip 5% of the training labels at random (seeded; each to another
intent), run the data profile, and score the rows it flags against the flipped ones; then train the LoRA
recipe (recipes/customer_service/intent_lora.yaml) on the original, the noisy and the cleaned training file
(`foundry data clean` with data.fixes.label_errors) and compare test accuracy.

    .venv/bin/python bench/label_noise.py                       # detection + 3 trainings (~25 min on 2 cores)
    .venv/bin/python bench/label_noise.py --no-train            # detection only (~3 min)
    .venv/bin/python bench/label_noise.py --fix relabel --confidence 0.5

Writes bench/results/label_noise.json. Goals (issue 6): recall >= 0.8 with precision >= 0.6; the cleaned
data recovers at least half of the accuracy the noise cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "banking77"
RECIPE = REPO / "recipes" / "customer_service" / "intent_lora.yaml"


def flip(train: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(train), int(round(len(train) * fraction)), replace=False))
    classes = sorted(train.category.unique())
    noisy = train.copy()
    for r in rows:
        noisy.loc[r, "category"] = rng.choice([c for c in classes if c != train.category[r]])
    return noisy, rows


def accuracy(train_file: Path, test_file: Path, runs: Path, tag: str) -> dict:
    from modelfoundry.config import load_config
    from modelfoundry.train import train

    cfg = load_config(RECIPE, [f"output_dir={runs}", f"name=noise-{tag}", f"data.path={train_file}",
                               f"data.test_path={test_file}", "evaluate.baselines=false", "evaluate.report=false"])
    t0 = time.perf_counter()
    run = train(cfg)
    test = json.loads((run.path / "metrics.json").read_text())["test"]
    out = {"accuracy": round(test["accuracy"], 4), "f1_macro": round(test["f1_macro"], 4),
           "seconds": round(time.perf_counter() - t0, 1)}
    print(f"   {tag}: {out}", file=sys.stderr, flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fix", choices=["drop", "relabel"], default="drop")
    ap.add_argument("--confidence", type=float, default=0.0,
                    help="data.fixes.label_error_confidence for the cleaned file (0 = every flagged row)")
    ap.add_argument("--no-train", action="store_true", help="detection only")
    ap.add_argument("--out", default=str(HERE / "results" / "label_noise.json"))
    args = ap.parse_args()
    from modelfoundry.config import load_config
    from modelfoundry.data.repair import clean_data

    train = pd.read_csv(DATA / "train.csv")
    noisy, flipped = flip(train, args.fraction, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="label-noise-"))
    noisy_file = tmp / "train.csv"
    noisy.to_csv(noisy_file, index=False)
    cfg = load_config({"name": "noise", "output_dir": str(tmp / "runs"),
                       "data": {"path": str(noisy_file), "test_path": str(DATA / "test.csv"), "target": "category",
                                "split": {"val": 0.0},
                                "fixes": {"label_errors": args.fix, "label_error_confidence": args.confidence,
                                          "duplicates": "keep", "leakage": "keep"}}})
    t0 = time.perf_counter()
    cleaned_file, changes, report = clean_data(cfg, tmp / "clean")
    seconds = time.perf_counter() - t0
    issues = report["label_issues"]["issues"]
    flagged = {i["row"] for i in issues}
    truth = set(flipped.tolist())
    hits = len(flagged & truth)
    precision, recall = hits / max(1, len(flagged)), hits / len(truth)
    by_conf = {}
    for c in (0.0, 0.5, 0.7, 0.9):
        f = {i["row"] for i in issues if i["confidence"] >= c}
        by_conf[str(c)] = {"flagged": len(f), "precision": round(len(f & truth) / max(1, len(f)), 4),
                           "recall": round(len(f & truth) / len(truth), 4)}
    suggested_right = sum(1 for i in issues if i["row"] in truth and i["suggested"] == train.category[i["row"]])
    result = {"dataset": "BANKING77 train (10,003 rows), test 3,080", "fraction_flipped": args.fraction,
              "flipped": len(truth), "flagged": len(flagged), "true_positives": hits,
              "precision": round(precision, 4), "recall": round(recall, 4), "by_confidence": by_conf,
              "flipped_rows_whose_suggestion_is_the_original_label": round(suggested_right / max(1, hits), 4),
              "detector": report["label_issues"].get("model"), "profile_and_clean_seconds": round(seconds, 1),
              "fix": args.fix, "fix_confidence": args.confidence, "rows_changed": int(len(changes)),
              "goal_recall_0.8_precision_0.6_met": recall >= 0.8 and precision >= 0.6}
    print(json.dumps(result, indent=1), file=sys.stderr, flush=True)
    if not args.no_train:
        runs = tmp / "runs"
        acc = {"original": accuracy(DATA / "train.csv", DATA / "test.csv", runs, "original"),
               "noisy": accuracy(noisy_file, DATA / "test.csv", runs, "noisy"),
               "cleaned": accuracy(cleaned_file, DATA / "test.csv", runs, "cleaned")}
        lost = acc["original"]["accuracy"] - acc["noisy"]["accuracy"]
        recovered = acc["cleaned"]["accuracy"] - acc["noisy"]["accuracy"]
        result.update({"recipe": str(RECIPE.relative_to(REPO)), "test_accuracy": acc,
                       "accuracy_lost_to_noise": round(lost, 4), "accuracy_recovered_by_cleaning": round(recovered, 4),
                       "recovered_fraction": round(recovered / lost, 3) if lost > 0 else None,
                       "goal_recover_half_met": bool(lost > 0 and recovered >= lost / 2)})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
