"""Healthcare (molecules), education (recommendation, knowledge tracing) recipes of issue 26, each part alone on the
machine, JSON in bench/results/domains26_<part>.json:

    .venv/bin/python bench/domains26_bench.py molecules [--seeds 3]   # ESOL, BBBP, Lipophilicity on scaffold splits
    .venv/bin/python bench/domains26_bench.py recommend [--seeds 3]   # MovieLens small: mf, two_tower vs popularity
    .venv/bin/python bench/domains26_bench.py tracing [--seeds 2]     # ASSISTments 2009: DKT vs skill mean, PFA

molecules: recipes/healthcare/esol_solubility.yaml on ESOL (shipped), and the same config on BBBP (classification) and
Lipophilicity (read from ../shared/data/molecules: CC BY-SA, not shipped), over seeds (the scaffold split is
seeded: each seed moves the split and the initialisation). The anchor, in the same run on the same features and split: a
random forest of 500 trees (scikit-learn), MoleculeNet's classic baseline; MoleculeNet's published ESOL number (RF,
RMSE 1.07, Wu et al. 2018) is quoted beside it."""

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
SHARED = REPO.parent / "shared" / "data"


def machine() -> dict:
    import torch
    from pretrain_vs_nanogpt import cpu_flags, cpu_name
    return {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(), "threads": torch.get_num_threads()}


MOLECULE_SETS = {"esol": (REPO / "datasets" / "molecules" / "esol.csv", "logp", "regression"),
                 "bbbp": (REPO / "datasets" / "molecules" / "bbbp.csv", "p_np", "classification"),
                 "lipophilicity": (SHARED / "molecules" / "lipophilicity.csv", "lipo", "regression")}


def molecules(seeds: int, out_dir: Path) -> dict:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.metrics import mean_squared_error, roc_auc_score

    from modelfoundry.api import train
    from modelfoundry.config import load_config
    from modelfoundry.data import prepare

    recipe = REPO / "recipes" / "healthcare" / "esol_solubility.yaml"
    out = {}
    for name, (path, target, task) in MOLECULE_SETS.items():
        base = [f"data.path={path}", f"data.target={target}", f"output_dir={out_dir}", "evaluate.report=false"]
        if task == "classification":
            base += ["train.early_stopping.metric=val_roc_auc"]
        metric = "rmse" if task == "regression" else "roc_auc"
        runs = []
        for seed in range(seeds):  # the seed moves the scaffold split (its order of small groups) and the initialisation
            t = time.perf_counter()
            cfg = load_config(recipe, [*base, f"train.seed={seed}"])
            run = train(cfg)
            m = json.loads((run.path / "metrics.json").read_text())
            entry = {"seed": seed, "test": m["test"], "baselines": m.get("baselines"),
                     "wall_s": round(time.perf_counter() - t, 1)}
            data = prepare(cfg)  # the same split and features, for the anchor
            x_tr, x_te = data.encoded["train"].features["numeric"].numpy(), data.encoded["test"].features["numeric"].numpy()
            y_tr, y_te = data.targets["train"].numpy(), data.targets["test"].numpy()
            t = time.perf_counter()
            if task == "regression":
                rf = RandomForestRegressor(n_estimators=500, n_jobs=-1, random_state=seed).fit(x_tr, y_tr)
                pred = data.preprocessor.decode_regression(rf.predict(x_te))
                truth = data.preprocessor.decode_regression(y_te)
                entry["random_forest_500"] = {"rmse": float(np.sqrt(mean_squared_error(truth, pred)))}
            else:
                rf = RandomForestClassifier(n_estimators=500, n_jobs=-1, random_state=seed).fit(x_tr, y_tr)
                entry["random_forest_500"] = {"roc_auc": float(roc_auc_score(y_te, rf.predict_proba(x_te)[:, 1]))}
            entry["random_forest_500"]["wall_s"] = round(time.perf_counter() - t, 1)
            entry["scaffold_split"] = data.profile["scaffold_split"]
            runs.append(entry)
            print(name, seed, metric, entry["test"][metric], "RF", entry["random_forest_500"][metric], flush=True)
        scores = [r["test"][metric] for r in runs]
        rf_scores = [r["random_forest_500"][metric] for r in runs]
        out[name] = {"task": task, "metric": metric, "runs": runs,
                     "model_mean": round(float(np.mean(scores)), 4), "model_std": round(float(np.std(scores)), 4),
                     "rf_mean": round(float(np.mean(rf_scores)), 4), "rf_std": round(float(np.std(rf_scores)), 4),
                     "ratio_model_to_rf": round(float(np.mean(scores)) / float(np.mean(rf_scores)), 3)}
    out["reference"] = "MoleculeNet (Wu et al. 2018): ESOL random forest RMSE 1.07; the issue's goal: ESOL RMSE <= 1.0"
    return out


def recommend(seeds: int, out_dir: Path) -> dict:
    """MovieLens small (datasets/fetch_movielens.py), two holdouts: each user's latest 20% (the recipe) and a random
    20% of each user's ratings; mf and two_tower over seeds, NDCG@10 beside popularity on the same users."""
    from modelfoundry.api import train
    from modelfoundry.config import load_config

    recipe = REPO / "recipes" / "education" / "movie_recommend.yaml"
    out = {}
    for protocol, extra in {"latest_20pct": [], "random_20pct": ["data.recommend.time_column=null"]}.items():
        for family in ("mf", "two_tower"):
            runs = []
            for seed in range(seeds):
                t = time.perf_counter()
                run = train(load_config(recipe, [*extra, f"model.type={family}", f"train.seed={seed}",
                                                 f"output_dir={out_dir}", "evaluate.report=false"]))
                m = json.loads((run.path / "metrics.json").read_text())
                runs.append({"seed": seed, "test": m["test"], "popularity": m["baselines"]["popularity"],
                             "relative_gain": m["comparison"]["relative_gain"], "wall_s": round(time.perf_counter() - t, 1)})
                print(protocol, family, seed, m["comparison"], flush=True)
            gains = [r["relative_gain"] for r in runs]
            out[f"{protocol}/{family}"] = {"runs": runs, "ndcg@10_mean": round(float(np.mean([r["test"]["ndcg@10"] for r in runs])), 4),
                                           "popularity_ndcg@10": runs[0]["popularity"]["ndcg@10"],
                                           "relative_gain_mean": round(float(np.mean(gains)), 4),
                                           "relative_gain_min": round(float(np.min(gains)), 4)}
    out["goal"] = "NDCG@10 at least 30% above the popularity ranking's (issue 26)"
    return out


def tracing(seeds: int, out_dir: Path) -> dict:
    """ASSISTments 2009 (datasets/fetch_assistments.py), DKVMN's train/test students: DKT over seeds beside the
    per-skill mean and PFA; the published DKT number on this preparation is 0.805 (Zhang et al. 2017, DKVMN, Table 3)."""
    from modelfoundry.api import train
    from modelfoundry.config import load_config

    recipe = REPO / "recipes" / "education" / "knowledge_tracing.yaml"
    runs = []
    for seed in range(seeds):
        t = time.perf_counter()
        run = train(load_config(recipe, [f"train.seed={seed}", f"output_dir={out_dir}", "evaluate.report=false"]))
        m = json.loads((run.path / "metrics.json").read_text())
        runs.append({"seed": seed, "test": m["test"], "baselines": m["baselines"], "wall_s": round(time.perf_counter() - t, 1),
                     "epochs": json.loads((run.path / "manifest.json").read_text()).get("epochs_run")})
        print("tracing", seed, m["test"], m["baselines"], flush=True)
    aucs = [r["test"]["roc_auc"] for r in runs]
    return {"runs": runs, "roc_auc_mean": round(float(np.mean(aucs)), 4), "roc_auc_min": round(float(np.min(aucs)), 4),
            "reference": "DKT 0.805 ROC-AUC on this split (Zhang et al. 2017, DKVMN); the issue's goal: >= 0.80"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["molecules", "recommend", "tracing"])
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"machine": machine(), "part": args.part}
        part = {"molecules": molecules, "recommend": recommend, "tracing": tracing}[args.part]
        result.update(part(args.seeds, Path(tmp)))
    dest = HERE / "results" / f"domains26_{args.part}.json"
    dest.write_text(json.dumps(result, indent=2))
    print(f"-> {dest}")


if __name__ == "__main__":
    main()
