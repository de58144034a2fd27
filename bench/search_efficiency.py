"""Search efficiency on the heart-disease recipe: grid vs random vs TPE, the same trial budget, 5 seeds each;
then the wall time of one fixed study with 1 and with 2 worker processes.

    .venv/bin/python bench/search_efficiency.py            # writes bench/results/search_efficiency.{json,png}

Part 1 searches one discrete space (4 learning rates x 3 layer layouts x 3 dropouts = 36 configurations)
with Optuna's GridSampler, RandomSampler and TPESampler, each trial training the recipe's MLP (our
`train_model`, seed 42) and scoring validation ROC-AUC at its best epoch. Training is deterministic for a
given configuration, so each configuration is trained once and its score reused when another sampler or seed
proposes it again: the samplers' trial counts are what is compared, not the training's noise.
Part 2 runs `foundry tune` (grid sampler: all 36 configurations once, so both runs train the same models) with
--workers 1 and --workers 2, in fresh processes, alternating, 3 times each; the speed-up is the ratio of medians.
Run it alone: other processes distort the times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RECIPE = REPO / "recipes" / "healthcare" / "heart_disease.yaml"
RESULTS = HERE / "results"
SPACE = {"train.lr": [3e-4, 1e-3, 3e-3, 1e-2], "model.hidden": [[32], [64, 32], [128, 64]], "model.dropout": [0.0, 0.2, 0.4]}
SEEDS = [0, 1, 2, 3, 4]
TOLERANCE = 0.005
REPEATS = 3


def base_config():
    from modelfoundry.config import load_config

    return load_config(RECIPE, ["evaluate.cv=null", "evaluate.baselines=false", "evaluate.report=false"])


class Scorer:
    """Validation ROC-AUC of one configuration (trained once, then remembered)."""

    def __init__(self):
        from modelfoundry.data import prepare

        self.cfg = base_config()
        self.data = prepare(self.cfg)
        self.cache: dict[str, float] = {}
        self.train_s = 0.0

    def __call__(self, params: dict) -> float:
        from modelfoundry.train import make_accelerator, train_model
        from modelfoundry.tune import trial_config

        key = json.dumps(params, sort_keys=True)
        if key not in self.cache:
            t = time.perf_counter()
            cfg = trial_config(self.cfg, params)
            _, result = train_model(cfg, self.data, None, make_accelerator("fp32"))
            self.cache[key] = float(result.history[result.best_epoch - 1]["val_roc_auc"])
            self.train_s += time.perf_counter() - t
        return self.cache[key]


def search(scorer: Scorer, sampler: str, seed: int, budget: int) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    enc = {k: [json.dumps(v) for v in vals] for k, vals in SPACE.items()}
    samplers = {"grid": lambda: optuna.samplers.GridSampler(enc, seed=seed),
                "random": lambda: optuna.samplers.RandomSampler(seed=seed),
                "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)}
    study = optuna.create_study(direction="maximize", sampler=samplers[sampler]())
    study.optimize(lambda t: scorer({k: json.loads(t.suggest_categorical(k, v)) for k, v in enc.items()}), n_trials=budget)
    values = [t.value for t in study.trials]
    return list(np.maximum.accumulate(values))


def to_reach(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v >= target - TOLERANCE), None)


def workers_time(n_workers: int, trials: int) -> float:
    import yaml

    raw = yaml.safe_load(RECIPE.read_text())
    raw["data"]["path"] = str((RECIPE.parent / raw["data"]["path"]).resolve())
    raw["evaluate"] = {"baselines": False, "report": False}
    raw["tune"] = {"sampler": "grid", "trials": trials, "metric": "val_roc_auc", "seed": 0,
                   "space": {k: {"choice": v} for k, v in SPACE.items()}}
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "tune.yaml"
        cfg.write_text(yaml.safe_dump(raw))
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "modelfoundry.cli", "tune", str(cfg), "--workers", str(n_workers),
                        "--set", f"output_dir={d}/runs"], check=True, env=env, cwd=d, capture_output=True)
        return time.perf_counter() - t


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    scorer = Scorer()
    budget = int(np.prod([len(v) for v in SPACE.values()]))
    curves = {s: [search(scorer, s, seed, budget) for seed in SEEDS] for s in ("grid", "random", "tpe")}
    grid_best = max(curves["grid"][0])
    out = {"benchmark": "heart disease (UCI Cleveland), MLP, validation ROC-AUC", "space": SPACE, "budget": budget,
           "seeds": SEEDS, "grid_best": grid_best, "tolerance": TOLERANCE, "configs_trained": len(scorer.cache),
           "training_s": round(scorer.train_s, 1), "samplers": {}}
    for s, cs in curves.items():
        reach = [to_reach(c, grid_best) for c in cs]
        arr = np.array(cs)
        out["samplers"][s] = {"trials_to_reach_grid_best": reach,
                              "mean_trials_to_reach": round(float(np.mean([r or budget + 1 for r in reach])), 2),
                              "best_after_n_mean": [round(float(v), 4) for v in arr.mean(0)],
                              "best_after_n_std": [round(float(v), 4) for v in arr.std(0)]}
    out["third_of_grid"] = budget / 3
    out["tpe_goal_met"] = out["samplers"]["tpe"]["mean_trials_to_reach"] <= budget / 3
    trials = budget
    runs = {1: [], 2: []}
    for _ in range(REPEATS):
        for n in runs:
            runs[n].append(round(workers_time(n, trials), 1))
    t1, t2 = float(np.median(runs[1])), float(np.median(runs[2]))
    out["workers"] = {"trials": trials, "sampler": "grid", "repeats": REPEATS, "one_worker_runs_s": runs[1],
                      "two_workers_runs_s": runs[2], "one_worker_s": t1, "two_workers_s": t2,
                      "speedup": round(t1 / t2, 2), "speedup_range": [round(min(runs[1]) / max(runs[2]), 2),
                                                                      round(max(runs[1]) / min(runs[2]), 2)],
                      "goal_1_7x_met": t1 / t2 >= 1.7}
    _plot(out)
    (RESULTS / "search_efficiency.json").write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "samplers"}, indent=2))
    for s, r in out["samplers"].items():
        print(s, r["trials_to_reach_grid_best"], r["mean_trials_to_reach"])


def _plot(out: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    n = np.arange(1, out["budget"] + 1)
    for s, r in out["samplers"].items():
        m, sd = np.array(r["best_after_n_mean"]), np.array(r["best_after_n_std"])
        ax.plot(n, m, label=f"{s} (mean of {len(out['seeds'])} seeds)")
        ax.fill_between(n, m - sd, m + sd, alpha=0.2)
    ax.axhline(out["grid_best"] - out["tolerance"], color="grey", ls="--", lw=1, label="grid best - 0.005")
    ax.set(xlabel="trials", ylabel="best validation ROC-AUC so far", title="Search efficiency, heart disease MLP")
    ax.legend()
    fig.savefig(RESULTS / "search_efficiency.png", dpi=90, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
