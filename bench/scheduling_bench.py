"""Job-shop scheduling: the recipe (MaskablePPO dispatching, recipes/manufacturing/jobshop_taillard.yaml) on
Taillard's 15x15 instances ta01-ta10, per seed, beside the dispatching rules on the same non-delay steps and the
proven optima. The rules are the anchors here (they are what a scheduler uses without learning); their gaps are also
checked against the published ones (Zhang et al., "Learning to Dispatch for Job Shop Scheduling via Deep
Reinforcement Learning", NeurIPS 2020, table 2: SPT 25.9%, MWKR 19.2% on this set; its learned policy: 26.0%).

    .venv/bin/python bench/scheduling_bench.py --seeds 3     # alone on the machine
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
RECIPE = REPO / "recipes" / "manufacturing" / "jobshop_taillard.yaml"


def machine() -> dict:
    import torch
    from pretrain_vs_nanogpt import cpu_flags, cpu_name
    return {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(), "threads": torch.get_num_threads()}


def main() -> None:
    from modelfoundry.api import train
    from modelfoundry.config import load_config

    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--timesteps", type=int, default=None, help="override the recipe's schedule.timesteps")
    args = p.parse_args()
    out = {"machine": machine(), "recipe": str(RECIPE.relative_to(REPO)), "published": {"spt": 0.259, "mwkr": 0.192,
                                                                                       "l2d_ppo": 0.260},
           "seeds": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            overrides = [f"output_dir={tmp}", f"train.seed={42 + seed}"]
            if args.timesteps:
                overrides.append(f"schedule.timesteps={args.timesteps}")
            t = time.perf_counter()
            run = train(load_config(RECIPE, overrides))
            seconds = time.perf_counter() - t
            m = json.loads((run.path / "metrics.json").read_text())
            best = min(run.history(), key=lambda h: h["val_makespan"])
            out["seeds"].append({"seed": 42 + seed, "policy_gap": m["test"]["gap_mean"],
                                 "policy_sampled_gap": m.get("test_sampled", {}).get("gap_mean"),
                                 "rules": {r: v["gap_mean"] for r, v in m["baselines"].items()},
                                 "best_rule": m["best_rule"], "best_val_at": best["timesteps"], "seconds": round(seconds, 1),
                                 "per_instance": m["per_instance"]})
            print(json.dumps({k: v for k, v in out["seeds"][-1].items() if k != "per_instance"}), flush=True)
    gaps = [s["policy_gap"] for s in out["seeds"]]
    sampled = [s["policy_sampled_gap"] for s in out["seeds"] if s["policy_sampled_gap"] is not None]
    rules = out["seeds"][0]["rules"]
    best = min(rules, key=rules.get)
    out["summary"] = {"policy_gap_mean": round(float(np.mean(gaps)), 4), "policy_gap_std": round(float(np.std(gaps)), 4),
                      "policy_gap_worst": round(float(np.max(gaps)), 4),
                      "policy_sampled_gap_mean": round(float(np.mean(sampled)), 4) if sampled else None,
                      "best_rule": best, "best_rule_gap": rules[best],
                      "beats_best_rule_every_seed": all(g < rules[best] for g in gaps),
                      "seconds_mean": round(float(np.mean([s["seconds"] for s in out["seeds"]])), 1)}
    (HERE / "results" / "scheduling.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()
