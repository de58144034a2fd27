"""German credit, the same stratified 5 folds: ModelFoundry vs Ludwig vs HistGradientBoosting, side by side.

    .venv/bin/python bench/tabular_vs_ludwig.py                 # ModelFoundry + HistGradientBoosting (+ Ludwig if set up)
    .venv/bin/python bench/tabular_vs_ludwig.py --setup-ludwig  # first create bench/.ludwig-venv (pip install ludwig; GBs)

Ludwig pulls its own (multi-GB) torch, so it lives in a virtualenv of its own under bench/ and runs in a
subprocess per fold; its wall time therefore includes its start-up, which we report separately.
Writes bench/results/tabular_vs_ludwig.json. Run it alone: other torch processes distort the times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RECIPE = REPO / "recipes" / "finance" / "credit_scoring.yaml"
LUDWIG_VENV = HERE / ".ludwig-venv"
LUDWIG_EPOCHS = 50

LUDWIG_SCRIPT = r"""
import json, sys, time
import pandas as pd
from ludwig.api import LudwigModel
cfg, train_csv, test_csv, out = sys.argv[1:5]
t = time.perf_counter()
model = LudwigModel(json.loads(open(cfg).read()), logging_level=40)
model.train(dataset=train_csv, skip_save_model=True, skip_save_progress=True, skip_save_log=True,
            skip_save_processed_input=True, output_directory=out)
pred, _ = model.predict(dataset=test_csv, output_directory=out)
col = [c for c in pred.columns if c.endswith("probabilities_True")][0]
json.dump({"proba": pred[col].astype(float).tolist(), "fit_s": time.perf_counter() - t}, open(out + "/pred.json", "w"))
"""


def load():
    from modelfoundry.config import load_config
    from modelfoundry.data import read_frame

    cfg = load_config(RECIPE, ["evaluate.cv=null", "evaluate.baselines=false", "evaluate.report=false"])
    return cfg, read_frame(cfg, cfg.data.path)


def ours(cfg, df, tr, te) -> tuple[np.ndarray, np.ndarray]:
    from modelfoundry.data import prepare
    from modelfoundry.evaluate.predict_split import outputs
    from modelfoundry.train import make_accelerator, train_model

    data = prepare(cfg, df, fold=(tr, te))
    model, _ = train_model(cfg, data, None, make_accelerator(cfg.train.precision))
    y, proba = outputs(model, data, "test")
    bad = data.preprocessor.classes_.index(2)  # risk: 1 = good, 2 = bad
    return (y == bad).astype(int), proba[:, bad]


def hgb(df, target, tr, te) -> tuple[np.ndarray, np.ndarray]:
    x = df.drop(columns=[target]).copy()
    for c in x.columns:
        if x[c].dtype == object or str(x[c].dtype).startswith("str"):
            x[c] = x[c].astype("category")
    y = (df[target] == 2).astype(int).to_numpy()
    est = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0).fit(x.iloc[tr], y[tr])
    return y[te], est.predict_proba(x.iloc[te])[:, 1]


def ludwig(df, target, tr, te) -> tuple[np.ndarray, np.ndarray, float] | None:
    py = LUDWIG_VENV / "bin" / "python"
    if not py.exists():
        return None
    d = df.copy()
    d[target] = d[target] == 2
    feats = [{"name": c, "type": "number" if pd.api.types.is_numeric_dtype(d[c]) else "category"}
             for c in d.columns if c != target]
    config = {"input_features": feats, "output_features": [{"name": target, "type": "binary"}],
              "trainer": {"epochs": LUDWIG_EPOCHS}}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        d.iloc[tr].to_csv(t / "train.csv", index=False)
        d.iloc[te].to_csv(t / "test.csv", index=False)
        (t / "cfg.json").write_text(json.dumps(config))
        (t / "run.py").write_text(LUDWIG_SCRIPT)
        subprocess.run([str(py), str(t / "run.py"), str(t / "cfg.json"), str(t / "train.csv"), str(t / "test.csv"), tmp],
                       check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        res = json.loads((t / "pred.json").read_text())
    return d[target].iloc[te].astype(int).to_numpy(), np.asarray(res["proba"]), res["fit_s"]


def setup_ludwig() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(LUDWIG_VENV)], check=True)
    subprocess.run([str(LUDWIG_VENV / "bin" / "pip"), "install", "ludwig"], check=True)
    # Ludwig 0.11 pins a bitsandbytes that fails to import under triton 3; tabular models do not need it
    subprocess.run([str(LUDWIG_VENV / "bin" / "pip"), "uninstall", "-y", "bitsandbytes"], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup-ludwig", action="store_true", help="create bench/.ludwig-venv with Ludwig first (GBs)")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    if args.setup_ludwig:
        setup_ludwig()
    cfg, df = load()
    target = cfg.data.target
    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=42).split(df, df[target]))
    systems: dict[str, dict] = {"modelfoundry": {}, "hist_gradient_boosting": {}, "ludwig": {}}
    if not (LUDWIG_VENV / "bin" / "python").exists():
        print(f"Ludwig skipped: {LUDWIG_VENV} is absent (create it with --setup-ludwig; it installs a multi-GB torch)",
              file=sys.stderr)
        systems.pop("ludwig")
    for name in systems:
        aucs, accs, wall, fit = [], [], 0.0, 0.0
        for tr, te in folds:
            t = time.perf_counter()
            if name == "modelfoundry":
                y, p = ours(cfg, df, tr, te)
            elif name == "hist_gradient_boosting":
                y, p = hgb(df, target, tr, te)
            else:
                y, p, fit_s = ludwig(df, target, tr, te)
                fit += fit_s
            wall += time.perf_counter() - t
            aucs.append(roc_auc_score(y, p))
            accs.append(accuracy_score(y, p > 0.5))
        systems[name] = {"roc_auc_mean": round(float(np.mean(aucs)), 4), "roc_auc_std": round(float(np.std(aucs)), 4),
                         "accuracy_mean": round(float(np.mean(accs)), 4), "wall_s": round(wall, 2)}
        if name == "ludwig":  # its wall time includes a Python start-up per fold; fit_s is inside the process
            systems[name]["fit_and_predict_s"] = round(fit, 2)
        print(f"{name:<24} ROC-AUC {np.mean(aucs):.4f} ± {np.std(aucs):.4f}  accuracy {np.mean(accs):.4f}  "
              f"wall {wall:.1f} s", file=sys.stderr)
    result = {"benchmark": "tabular_vs_ludwig", "data": "German credit (1,000 rows)", "folds": args.folds,
              "recipe": str(RECIPE.relative_to(REPO)), "systems": systems, "cpus": os.cpu_count(),
              "note": "each system trains on the same stratified folds (seed 42); mean over folds"}
    if "ludwig" in systems:
        result["ratios"] = {"wall_modelfoundry_over_ludwig": round(systems["modelfoundry"]["wall_s"] / systems["ludwig"]["wall_s"], 3),
                            "wall_modelfoundry_over_ludwig_in_process": round(
                                systems["modelfoundry"]["wall_s"] / systems["ludwig"]["fit_and_predict_s"], 3),
                            "roc_auc_delta": round(systems["modelfoundry"]["roc_auc_mean"] - systems["ludwig"]["roc_auc_mean"], 4)}
    out = HERE / "results" / "tabular_vs_ludwig.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
