"""Accountability benchmarks (issue 24), each part alone on the machine, JSON in bench/results/accountability_*.json:

    .venv/bin/python bench/accountability_bench.py fairness   # German credit: groups by sex and age band, mitigation
    .venv/bin/python bench/accountability_bench.py explain    # seconds per 100 rows per explainer; deletion margins

fairness: recipes/finance/credit_fairness.yaml over 5 seeds (the seed moves the split and the initialisation): per
group metrics, and ThresholdOptimizer (equalized odds, fitted on the validation split) before -> after on the test
split: the equalized-odds difference and the accuracy it costs; and the same config trained with reweighing. The sensitive attributes are audited by sex alone, by
age band alone, and by both.

explain: on the credit recipe (tabular MLP) and BANKING77's four-intent sample (a Transformer from scratch): seconds
per 100 rows for permutation importance (all test rows), SHAP and Integrated Gradients, and the deletion test (top-k
attributed features removed vs k random ones) over 100 test rows. The personal-data scan has its own script,
bench/pii_bench.py."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
RECIPE = REPO / "recipes" / "finance" / "credit_fairness.yaml"
SEX = "evaluate.fairness.sensitive=[personal_status]"


def machine() -> dict:
    import torch
    from pretrain_vs_nanogpt import cpu_flags, cpu_name
    return {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(), "threads": torch.get_num_threads()}


def fairness(seeds: int, out_dir: Path) -> dict:
    from modelfoundry.api import train
    from modelfoundry.config import load_config

    audits = {"sex": ["evaluate.fairness.sensitive=[personal_status]", "evaluate.fairness.bins={}"],
              "age_band": ["evaluate.fairness.sensitive=[age]", "evaluate.fairness.groups={}"],
              "sex_and_age_band": []}
    result: dict = {"recipe": str(RECIPE.relative_to(REPO)), "seeds": seeds, "audits": {}}
    for name, extra in audits.items():
        runs = []
        for seed in range(seeds):
            cfg = load_config(RECIPE, [f"train.seed={seed}", f"output_dir={out_dir}", "evaluate.report=false", *extra])
            run = train(cfg)
            m = json.loads((run.path / "metrics.json").read_text())
            f = m["fairness"]
            table = {r["metric"]: r for r in f["mitigation"]["table"]}
            rw = train(load_config(RECIPE, [f"train.seed={seed}", f"output_dir={out_dir}", "evaluate.report=false",
                                            "evaluate.fairness.mitigate=reweigh", *extra]))
            rm = json.loads((rw.path / "metrics.json").read_text())
            runs.append({"seed": seed, "roc_auc": m["test"]["roc_auc"], "groups": f["groups"],
                         "small_groups": f["small_groups"],
                         **{f"{k}_{w}": table[k][w] for k in ("accuracy", "equalized_odds_difference",
                                                              "demographic_parity_difference") for w in ("before", "after")},
                         "accuracy_reweigh": rm["test"]["accuracy"],
                         "equalized_odds_difference_reweigh": rm["fairness"].get("equalized_odds_difference"),
                         "demographic_parity_difference_reweigh": rm["fairness"].get("demographic_parity_difference")})
            print(f"{name} seed {seed}: EO diff {runs[-1]['equalized_odds_difference_before']} -> "
                  f"{runs[-1]['equalized_odds_difference_after']}, accuracy {runs[-1]['accuracy_before']} -> "
                  f"{runs[-1]['accuracy_after']}", flush=True)

        def stat(key, runs=runs):
            v = np.array([r[key] for r in runs if r[key] is not None], dtype=float)
            return {"mean": round(float(v.mean()), 4), "std": round(float(v.std()), 4)}

        result["audits"][name] = {"runs": runs, **{k: stat(k) for k in runs[0]
                                                   if k.endswith(("_before", "_after", "_reweigh"))}}
    return result


def explain(rows: int, out_dir: Path) -> dict:
    from modelfoundry.api import train
    from modelfoundry.config import load_config
    from modelfoundry.evaluate.explain import (
        Scorer,
        column_deletion,
        deletion_test,
        integrated_gradients,
        ordinary,
        token_deletion,
    )
    from modelfoundry.predictor import Predictor

    result: dict = {}
    # tabular: the credit recipe (no mitigation: the explanations are of the model's own scores)
    cfg = load_config(RECIPE, [f"output_dir={out_dir}", "evaluate.report=false", "evaluate.fairness=null",
                               "evaluate.explain.repeats=5"])
    run = train(cfg)
    m = json.loads((run.path / "metrics.json").read_text())
    ex = m["explanations"]
    pred = Predictor.load(run.path)
    frame = pd.read_csv(REPO / "datasets" / "german_credit" / "german.csv", header=None, sep=",",
                        names=cfg.data.columns)
    test = frame.sample(n=rows, random_state=0).drop(columns=["risk"])
    pred.explain(test.iloc[:2])  # shap compiles its kernels once per process (~8 s): not counted below
    t = time.perf_counter()
    items = pred.explain(test)
    shap_s = time.perf_counter() - t
    scorer = Scorer(pred.model, pred.preprocessor, pred.task)
    targets = [[str(c) for c in pred.classes].index(it["explained"]) for it in items]
    background = pd.DataFrame(json.loads((run.path / "explain_background.json").read_text()))
    attrs = [np.array(list(it["attributions"].values())) for it in items]
    result["tabular"] = {
        "model": "credit_fairness MLP", "columns": len(items[0]["attributions"]), "test_rows": m["rows"],
        "permutation_importance_s_per_100_rows": round(ex["importance_s"] / ex["importance_rows"] * 100, 3),
        "permutation_repeats": 5, "top_columns": [r["column"] for r in ex["importance"][:5]],
        "shap_s_per_100_rows": round(shap_s / rows * 100, 3),
        "deletion": {k: deletion_test(column_deletion(scorer, test, background, targets), attrs, k=k) for k in (1, 3)}}
    print(json.dumps(result["tabular"]), flush=True)
    # text: a Transformer from scratch on the four-intent BANKING77 sample
    sample = REPO / "tests" / "fixtures" / "banking77_sample.csv"
    cfg = load_config({"name": "intents-explain", "output_dir": str(out_dir),
                       "data": {"path": str(sample), "target": "category", "split": {"test": 0.4}},
                       "model": {"type": "transformer"}, "train": {"epochs": 15, "lr": 3e-3},
                       "evaluate": {"report": False}})
    run = train(cfg)
    m = json.loads((run.path / "metrics.json").read_text())
    pred = Predictor.load(run.path)
    texts = pd.read_csv(sample).drop(columns=["category"]).sample(n=min(rows, 96), random_state=0)
    scorer = Scorer(pred.model, pred.preprocessor, pred.task)
    t = time.perf_counter()
    raw = integrated_gradients(scorer, texts)
    ig_s = time.perf_counter() - t
    targets = [int(it["target"]) for it in raw]
    result["text"] = {
        "model": "Transformer from scratch (2 layers), BANKING77 sample, 4 intents", "test_accuracy": m["test"]["accuracy"],
        "rows": len(texts), "integrated_gradients_s_per_100_rows": round(ig_s / len(texts) * 100, 3),
        "steps_used": {"min": min(it["steps"] for it in raw), "max": max(it["steps"] for it in raw)},
        "max_convergence_delta": max(it["convergence_delta"] for it in raw),
        "deletion": {k: deletion_test(token_deletion(scorer, texts, targets, raw), ordinary(raw), k=k) for k in (1, 3)}}
    print(json.dumps(result["text"]), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["fairness", "explain"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--work", default=str(HERE / "work" / "accountability"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    result = fairness(args.seeds, work) if args.part == "fairness" else explain(args.rows, work)
    result = {"part": args.part, "machine": machine(), "seconds": round(time.perf_counter() - t, 1), **result}
    out = HERE / "results" / f"accountability_{args.part}.json"
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
