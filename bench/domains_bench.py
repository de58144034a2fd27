"""Smart-home, finance and healthcare recipes (issue 25), each part alone on the machine, JSON in
bench/results/domains_<part>.json:

    .venv/bin/python bench/domains_bench.py voice [--speakers george,jackson,...]   # FSDD, each speaker held out
    .venv/bin/python bench/domains_bench.py voice --variants recipe,synthetic --tag synthetic  # + espeak-ng voices
    .venv/bin/python bench/domains_bench.py fraud [--seeds 5]    # deep SVDD / autoencoder vs Isolation Forest, LOF
    .venv/bin/python bench/domains_bench.py motions [--seeds 5]  # BasicMotions, the archive's own split
    .venv/bin/python bench/domains_bench.py stocks [--seeds 5]   # 5-day forecasts of 10 stocks, portfolio backtest

voice: recipes/smart_home/voice_commands.yaml trained on five speakers and tested on the sixth, for each speaker held
out (FSDD's recordings from ../shared/data/fsdd, or --recordings DIR); with and without SpecAugment, and
voice_commands_synthetic.yaml (espeak-ng's synthetic takes added to the five voices; needs the espeak-ng program). The anchor: the
same split is what a spoken-command product meets (a new voice); FSDD's own README reports no speaker-held-out number.
fraud: recipes/finance/fraud_anomaly.yaml over seeds (the seed moves the split and the initialisation): PR-AUC, ROC-AUC
and recall at the alert budget of the model and of both baselines on the same test rows, and the autoencoder, and deep
SVDD without the trimmed loss (contamination 0).
motions: recipes/healthcare/wearable_motions.yaml over seeds; the published reference is 1-NN with dynamic time
warping on the same split (UEA archive: 1.0 with the dependent DTW, Bagnall et al. 2018 / Ruiz et al. 2021).
stocks: recipes/finance/stock_forecast.yaml over seeds: backtest MASE of the model, naive and seasonal naive, and the
portfolio strategies' Sharpe ratios and drawdowns (a backtest, not investment advice)."""

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
sys.path.insert(0, str(REPO / "datasets"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
SHARED = REPO.parent / "shared" / "data"


def machine() -> dict:
    import torch
    from pretrain_vs_nanogpt import cpu_flags, cpu_name
    return {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(), "threads": torch.get_num_threads()}


def _train(recipe: Path, overrides: list[str]) -> dict:
    from modelfoundry.api import train
    from modelfoundry.config import load_config

    t = time.perf_counter()
    run = train(load_config(recipe, [*overrides, "evaluate.report=false"]))
    m = json.loads((run.path / "metrics.json").read_text())
    return {**m, "wall_s": round(time.perf_counter() - t, 1)}


def voice(speakers: list[str], recordings: Path, out_dir: Path, variants: list[str]) -> dict:
    from fetch_fsdd import manifests
    from synth_speech import synthesize, write_manifests

    recipe = REPO / "recipes" / "smart_home" / "voice_commands.yaml"
    result: dict = {"recipe": str(recipe.relative_to(REPO)), "held_out": {}}
    synthetic_variants = [v for v in variants if v.startswith("synthetic")]
    if synthetic_variants:  # one set of espeak-ng takes (the recipe's 300 a word, seed 0) for every split
        t = time.perf_counter()
        synthetic = synthesize(out_dir / "synthetic", 300, 0)
        result["synthetic"] = {"takes": len(synthetic), "voices": int(synthetic["speaker"].nunique()),
                               "seconds": round(time.perf_counter() - t, 1)}
    for speaker in speakers:
        folder = out_dir / f"fsdd-{speaker}"
        manifests(recordings, folder, speaker)
        if synthetic_variants:
            write_manifests(folder, synthetic)
        base = [f"data.test_path={folder / 'test.csv'}", f"output_dir={out_dir}",
                "evaluate.explain.importance=false", "evaluate.baselines=false"]  # baselines: one run of the recipe
        real, synth = [f"data.path={folder / 'train.csv'}"], [f"data.path={folder / 'train_synthetic.csv'}"]
        row = {}
        options = {"recipe": real, "specaugment": [*real, "data.augment.audio_time_mask=10", "data.augment.audio_freq_mask=6"],
                   "level": [*real, "data.audio.normalize=level"],
                   "speaker_validation": [*real, "data.split.method=group", "data.split.group_column=speaker",
                                          "data.split.val=0.2"],
                   "synthetic": synth, "synthetic_level": [*synth, "data.audio.normalize=level"],
                   "synthetic_mixup": [*synth, "data.augment.mixup=0.2"]}
        for name, extra in {k: v for k, v in options.items() if k in variants}.items():
            m = _train(recipe.with_name("voice_commands_synthetic.yaml") if name in synthetic_variants else recipe, base + extra)
            row[name] = {"accuracy": m["test"]["accuracy"], "f1_macro": m["test"]["f1_macro"], "wall_s": m["wall_s"],
                         "baselines": {k: v.get("f1_macro") for k, v in m.get("baselines", {}).items()}}
            print(speaker, name, row[name], flush=True)
        result["held_out"][speaker] = row
    for name in variants:
        acc = [r[name]["accuracy"] for r in result["held_out"].values()]
        result[f"mean_accuracy_{name}"] = round(float(np.mean(acc)), 4)
    return result


def fraud(seeds: int, out_dir: Path) -> dict:
    recipe = REPO / "recipes" / "finance" / "fraud_anomaly.yaml"
    variants = {"deep_svdd (recipe)": [], "deep_svdd, contamination 0": ["model.contamination=0.0"],
                "autoencoder": ["model={type: autoencoder, hidden: [32, 16], code: 4, contamination: 0.3}"]}
    result: dict = {"recipe": str(recipe.relative_to(REPO)), "seeds": seeds, "variants": {}}
    for name, extra in variants.items():
        runs = []
        for seed in range(seeds):
            m = _train(recipe, [f"train.seed={seed}", f"output_dir={out_dir}", *extra])
            runs.append({"test": m["test"], "alerts": m["alerts"]["test"],
                         "baselines": {k: {"pr_auc": v["pr_auc"], "roc_auc": v["roc_auc"]} for k, v in m["baselines"].items()},
                         "baseline_alerts": m["alerts"].get("baselines", {})})
        summary = {"pr_auc": [r["test"]["pr_auc"] for r in runs],
                   "recall_at_budget": [r["alerts"]["recall_at_budget"] for r in runs],
                   "isolation_forest_pr_auc": [r["baselines"]["isolation_forest"]["pr_auc"] for r in runs],
                   "isolation_forest_recall_at_budget": [r["baseline_alerts"]["isolation_forest"]["recall_at_budget"]
                                                         for r in runs],
                   "local_outlier_factor_pr_auc": [r["baselines"]["local_outlier_factor"]["pr_auc"] for r in runs]}
        result["variants"][name] = {"runs": runs, "mean": {k: round(float(np.mean(v)), 4) for k, v in summary.items()},
                                    "std": {k: round(float(np.std(v)), 4) for k, v in summary.items()},
                                    "model_beats_isolation_forest": sum(a >= b for a, b in zip(
                                        summary["pr_auc"], summary["isolation_forest_pr_auc"]))}
        print(name, result["variants"][name]["mean"], flush=True)
    return result


def motions(seeds: int, out_dir: Path) -> dict:
    recipe = REPO / "recipes" / "healthcare" / "wearable_motions.yaml"
    runs = [_train(recipe, [f"train.seed={seed}", f"output_dir={out_dir}"]) for seed in range(seeds)]
    acc = [r["test"]["accuracy"] for r in runs]
    return {"recipe": str(recipe.relative_to(REPO)), "seeds": seeds, "accuracy": acc,
            "mean_accuracy": round(float(np.mean(acc)), 4), "min_accuracy": min(acc),
            "baselines": {k: v.get("accuracy") for k, v in runs[0].get("baselines", {}).items()},
            "wall_s": [r["wall_s"] for r in runs],
            "reference": {"1nn_dtw_dependent": 1.0, "source": "UEA multivariate archive results (Bagnall et al. 2018; "
                                                              "Ruiz et al. 2021)"}}


def stocks(seeds: int, out_dir: Path) -> dict:
    recipe = REPO / "recipes" / "finance" / "stock_forecast.yaml"
    runs = [_train(recipe, [f"train.seed={seed}", f"output_dir={out_dir}"]) for seed in range(seeds)]
    mase = {"model": [r["test"]["mase"] for r in runs],
            **{k: [r["baselines"][k]["mase"] for r in runs] for k in runs[0]["baselines"]}}
    smape = {"model": [r["test"]["smape"] for r in runs],
             **{k: [r["baselines"][k]["smape"] for r in runs] for k in runs[0]["baselines"]}}
    strategies = {k: {s: [r["portfolio"]["strategies"][k][s] for r in runs] for s in ("sharpe", "annual_return",
                                                                                       "max_drawdown")}
                  for k in runs[0]["portfolio"]["strategies"]}
    return {"recipe": str(recipe.relative_to(REPO)), "seeds": seeds, "backtest": runs[0]["backtest"],
            "mase": {k: {"mean": round(float(np.mean(v)), 4), "std": round(float(np.std(v)), 4)} for k, v in mase.items()},
            "smape": {k: round(float(np.mean(v)), 4) for k, v in smape.items()},
            "relative_mase": [r["relative_mase"] for r in runs],
            "interval_coverage": [r.get("interval", {}).get("observed_coverage") for r in runs],
            "portfolio": {k: {s: round(float(np.mean(v)), 4) for s, v in d.items()} for k, d in strategies.items()},
            "disclaimer": "a backtest of a method on past prices, not investment advice",
            "wall_s": [r["wall_s"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=["voice", "fraud", "motions", "stocks"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--speakers", default="george,jackson,lucas,nicolas,theo,yweweler")
    ap.add_argument("--recordings", type=Path, default=SHARED / "fsdd" / "recordings")
    ap.add_argument("--variants", default="recipe,specaugment",
                    help="voice: of recipe, specaugment (masks on), level (data.audio.normalize=level), "
                         "speaker_validation (one training speaker validates), synthetic (voice_commands_synthetic.yaml: "
                         "espeak-ng takes added, datasets/synth_speech.py), synthetic_level (and normalize: level), "
                         "synthetic_mixup (and data.augment.mixup=0.2)")
    ap.add_argument("--tag", help="written to domains_<part>-<tag>.json (keeps the default run's file)")
    args = ap.parse_args()
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.part == "voice":
            result = voice(args.speakers.split(","), args.recordings, Path(tmp), args.variants.split(","))
        elif args.part == "fraud":
            result = fraud(args.seeds, Path(tmp))
        elif args.part == "stocks":
            result = stocks(args.seeds, Path(tmp))
        else:
            result = motions(args.seeds, Path(tmp))
    result.update(machine=machine(), total_s=round(time.perf_counter() - t, 1))
    out = HERE / "results" / f"domains_{args.part}{'-' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
