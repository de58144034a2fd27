"""Federated learning benchmarks (issue 23), each part alone on the machine, JSON in bench/results/federated_*.json:

    .venv/bin/python bench/federated_bench.py sites      # the four UCI hospitals: federated vs centralized vs each alone
    .venv/bin/python bench/federated_bench.py noniid     # Dirichlet(0.5) over 10 sites, FedAvg and FedProx, tabular
    .venv/bin/python bench/federated_bench.py text       # the same on text (MiniLM + LoRA), and LoRA vs full rounds
    .venv/bin/python bench/federated_bench.py poison     # 1 of 10 sites sends its update x10: FedAvg vs robust rules
    .venv/bin/python bench/federated_bench.py dp         # local DP: accuracy vs epsilon per round
    .venv/bin/python bench/federated_bench.py transport  # seconds per round: engine local vs deployment (loopback)

The anchor for every federated number is the centralized model: the same config without `federated:` (its rows
pooled, trained on one machine), on the same split, and each site training alone on its rows (scored on the same
held-out test rows). Tabular: the pooled heart_sites.csv (920 patients); text: BANKING77's first 20 intents
(train.csv rows, test.csv as the test split)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
RECIPE = REPO / "recipes" / "healthcare" / "heart_sites_federated.yaml"


def machine() -> dict:
    import torch
    from pretrain_vs_nanogpt import cpu_flags, cpu_name
    return {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(), "threads": torch.get_num_threads()}


def run_config(cfg) -> tuple[dict, float]:
    from modelfoundry.api import train

    t = time.perf_counter()
    run = train(cfg)
    m = json.loads((run.path / "metrics.json").read_text(encoding="utf-8"))
    m["run"] = str(run.path)
    return m, round(time.perf_counter() - t, 1)


def cached(work: Path, name: str, job) -> tuple[dict, float]:
    """A long part's finished jobs are kept (work/jobs/NAME.json): a part stopped by a mistake resumes there."""
    path = work / "jobs" / f"{name}.json"
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        return saved["metrics"], saved["seconds"]
    m, t = job()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metrics": m, "seconds": t}), encoding="utf-8")
    return m, t


def heart(work: Path, overrides: list[str]):
    from modelfoundry.config import load_config

    return load_config(RECIPE, [f"output_dir={work}", *overrides])


def alone(cfg, metric: str, epochs: int) -> list[dict]:
    """Each site trains on its own rows only (same model and settings, `epochs` epochs), scored on the test split."""
    from modelfoundry.data import prepare
    from modelfoundry.evaluate.predict_split import predict_split
    from modelfoundry.federated.site import build_sites
    from modelfoundry.train import make_accelerator, train_model

    data = prepare(cfg)
    out = []
    for site in build_sites(cfg, data):
        local = site.cfg.override({"train.epochs": epochs})
        model, _ = train_model(local, site.data, None, make_accelerator(local.train.precision))
        score = predict_split(model, data, "test", [metric])[metric]
        out.append({"site": site.name, "train_rows": site.profile["train_rows"], metric: round(float(score), 4)})
    return out


def history_curve(m: dict, key: str) -> list[float]:
    """The global model's score after each round, from the run's history.jsonl."""
    lines = (Path(m["run"]) / "history.jsonl").read_text(encoding="utf-8").splitlines()
    return [round(json.loads(line)[key], 4) for line in lines]


def sites(work: Path) -> dict:
    metric = "roc_auc"
    fed, t_fed = run_config(heart(work, []))
    central, t_c = run_config(heart(work, ["federated=null", "train.epochs=60"]))
    each = alone(heart(work, []), metric, 40)
    return {"metric": metric, "federated": {metric: fed["test"][metric], "accuracy": fed["test"]["accuracy"],
                                            "rounds": fed["federated"]["rounds"], "seconds": t_fed,
                                            "curve_val_roc_auc": history_curve(fed, "val_roc_auc")},
            "centralized": {metric: central["test"][metric], "accuracy": central["test"]["accuracy"], "seconds": t_c},
            "ratio_to_centralized": round(fed["test"][metric] / central["test"][metric], 4), "each_site_alone": each}


def noniid(work: Path) -> dict:
    metric = "roc_auc"
    base = ["federated.partition.method=dirichlet", "federated.partition.alpha=0.5", "federated.clients=10",
            "federated.partition.column=null", "data.types.site=ignore"]
    central, _ = run_config(heart(work, ["federated=null", "train.epochs=60", "data.types.site=ignore"]))
    out = {"metric": metric, "centralized": central["test"][metric], "sites": 10, "alpha": 0.5}
    for strategy, extra in (("fedavg", []), ("fedprox", ["federated.options.proximal_mu=0.1"])):
        m, t = run_config(heart(work, [*base, f"federated.strategy={strategy}", *extra]))
        out[strategy] = {metric: m["test"][metric], "ratio_to_centralized": round(m["test"][metric] / central["test"][metric], 4),
                         "rounds": m["federated"]["rounds"], "seconds": t,
                         "curve_val_roc_auc": history_curve(m, "val_roc_auc")}
    out["each_site_alone"] = alone(heart(work, base), metric, 40)
    return out


def text_config(work: Path, overrides: list[str]):
    from modelfoundry.config import load_config

    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    if not (data / "train.csv").exists():
        train = pd.read_csv(REPO / "datasets" / "banking77" / "train.csv")
        keep = sorted(train["category"].unique())[:20]
        train[train["category"].isin(keep)].to_csv(data / "train.csv", index=False)
        test = pd.read_csv(REPO / "datasets" / "banking77" / "test.csv")
        test[test["category"].isin(keep)].to_csv(data / "test.csv", index=False)
    raw = {"name": "banking20", "output_dir": str(work),
           "data": {"path": str(data / "train.csv"), "test_path": str(data / "test.csv"), "target": "category",
                    "text": {"max_length": 32}, "split": {"val": 0.1}},
           "model": {"type": "pretrained", "path": "minilm", "finetune": "lora", "pooling": "mean",
                     "adapter": {"r": 8, "lora_alpha": 16, "target_modules": ["query", "key", "value", "dense"]}},
           "train": {"lr": 2e-3, "epochs": 3, "batch_size": 32, "early_stopping": None},
           "evaluate": {"metrics": ["accuracy", "f1_macro"], "report": False}}
    return load_config(raw, overrides)


def text(work: Path, rounds: int) -> dict:
    fed = ["federated.clients=10", "federated.partition.method=dirichlet", "federated.partition.alpha=0.5",
           f"federated.rounds={rounds}"]
    central, t_c = cached(work, "centralized_lora", lambda: run_config(text_config(work, [])))
    out = {"metric": "accuracy", "rows": central.get("rows"), "centralized_lora": {"accuracy": central["test"]["accuracy"],
                                                                                   "epochs": 3, "seconds": t_c}}
    for name, extra in (("fedavg_lora", []), ("fedavg_lora_qkv", ["model.adapter.target_modules=[query,key,value]"]),
                        ("fedavg_lora_qv_r16", ["model.adapter.target_modules=[query,value]", "model.adapter.r=16",
                                                "model.adapter.lora_alpha=32"]),
                        ("fedavg_lora_qkv_lr4e-3", ["model.adapter.target_modules=[query,key,value]", "train.lr=4e-3"]),
                        ("fedavg_lora_r4", ["model.adapter.r=4", "model.adapter.lora_alpha=8"]),
                        ("fedprox_lora", ["federated.strategy=fedprox",
                                                                "federated.options.proximal_mu=0.01"]),
                        ("fedavg_full", ["model.finetune=full", "model.adapter={}", "train.lr=5e-5"]),
                        ("fedavg_full_lr2e-4", ["model.finetune=full", "model.adapter={}", "train.lr=2e-4"])):
        m, t = cached(work, name, lambda extra=extra: run_config(text_config(work, [*fed, *extra])))
        out[name] = {"accuracy": m["test"]["accuracy"], "ratio_to_centralized":
                     round(m["test"]["accuracy"] / central["test"]["accuracy"], 4), "seconds": t,
                     "payload": m["federated"]["payload"],
                     "curve_val_accuracy": history_curve(m, "val_accuracy")}
        print(name, out[name]["accuracy"], t, file=sys.stderr, flush=True)
    out["each_site_alone"] = alone(text_config(work, fed), "accuracy", 3)
    return out


def poison(work: Path) -> dict:
    metric = "roc_auc"
    base = ["federated.partition.method=iid", "federated.clients=10", "federated.partition.column=null",
            "data.types.site=ignore"]
    attacks = {"scale_x10": "site 0 of 10 sends global + 10 x its update",
               "scale_x-10": "site 0 of 10 sends global - 10 x its update (boosted and sign-flipped)",
               "flip": "site 0 of 10 trains on wrong labels (every label moved to the next class)"}
    out = {"metric": metric, "attacks": attacks}
    for strategy, extra in (("fedavg", []), ("fedmedian", []), ("krum", ["federated.options.num_malicious_nodes=1"]),
                            ("trimmed_mean", ["federated.options.beta=0.2"])):
        clean, _ = run_config(heart(work, [*base, f"federated.strategy={strategy}", *extra]))
        out[strategy] = {"clean": clean["test"][metric]}
        for name in attacks:
            how = (["federated.poison.method=flip"] if name == "flip" else
                   ["federated.poison.method=scale", f"federated.poison.factor={name.split('x')[1]}"])
            hit, _ = run_config(heart(work, [*base, f"federated.strategy={strategy}", *extra,
                                             "federated.poison.sites=[0]", *how]))
            out[strategy][name] = {"poisoned": hit["test"][metric],
                                   "drop": round(clean["test"][metric] - hit["test"][metric], 4)}
    return out


def dp(work: Path) -> dict:
    metric = "roc_auc"
    base = ["federated.partition.method=iid", "federated.clients=4", "federated.partition.column=null",
            "data.types.site=ignore"]
    plain, _ = run_config(heart(work, base))
    out = {"metric": metric, "no_privacy": plain["test"][metric], "clip": 1.0, "delta_per_round": 1e-5, "levels": []}
    for eps in (100.0, 30.0, 10.0, 3.0, 1.0):
        m, _ = run_config(heart(work, [*base, "federated.privacy.clip=1.0", f"federated.privacy.epsilon={eps}"]))
        p = m["federated"]["privacy"]
        out["levels"].append({"epsilon_per_round": eps, "epsilon_total": p["epsilon"], "delta_total": p["delta"],
                              metric: m["test"][metric]})
    return out


def transport(work: Path) -> dict:
    out = {}
    for engine in ("local", "deployment"):
        m, t = run_config(heart(work, ["federated.rounds=3", f"federated.engine={engine}",
                                       "federated.superlink=127.0.0.1:29092"]))
        h = [json.loads(line) for line in (Path(m["run"]) / "history.jsonl").read_text().splitlines()]
        out[engine] = {"seconds_per_round": [x["seconds"] for x in h], "total_s": t, "roc_auc": m["test"]["roc_auc"]}
    out["ratio_deployment_to_local"] = round(sum(out["deployment"]["seconds_per_round"])
                                             / max(sum(out["local"]["seconds_per_round"]), 1e-9), 1)
    return out


def secure(work: Path) -> dict:
    """The 4 hospitals with and without SecAgg+ (same seed): the same model up to quantization, what it costs."""
    from safetensors.torch import load_file

    out, weights = {}, {}
    for name, extra in (("plain", []), ("secure", ["federated.secure_aggregation={}"])):
        m, t = run_config(heart(work, extra))
        h = [json.loads(line) for line in (Path(m["run"]) / "history.jsonl").read_text().splitlines()]
        weights[name] = load_file(str(Path(m["run"]) / "model" / "weights.safetensors"))
        out[name] = {"roc_auc": m["test"]["roc_auc"], "accuracy": m["test"]["accuracy"], "total_s": t,
                     "seconds_per_round": round(sum(x["seconds"] for x in h) / len(h), 3),
                     "sent_bytes_per_round": h[0]["sent_bytes"], "received_bytes_per_round": h[0]["received_bytes"],
                     "site_weights_seen_by_server": sum(x["site_weights_seen"] for x in h),
                     "model_bytes": m["federated"]["payload"]["full_model_bytes"]}
    out["max_abs_weight_difference"] = max(float((weights["plain"][k] - weights["secure"][k]).abs().max())
                                           for k in weights["plain"])
    out["ratio_seconds"] = round(out["secure"]["seconds_per_round"] / out["plain"]["seconds_per_round"], 2)
    out["ratio_bytes"] = round((out["secure"]["sent_bytes_per_round"] + out["secure"]["received_bytes_per_round"])
                               / (out["plain"]["sent_bytes_per_round"] + out["plain"]["received_bytes_per_round"]), 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("part", choices=["sites", "noniid", "text", "poison", "dp", "transport", "secure"])
    p.add_argument("--work", default="/tmp/federated_bench")
    p.add_argument("--rounds", type=int, default=6, help="text: rounds")
    args = p.parse_args()
    work = Path(args.work) / args.part
    work.mkdir(parents=True, exist_ok=True)
    result = {"part": args.part, "machine": machine()}
    t = time.perf_counter()
    result.update(text(work, args.rounds) if args.part == "text" else globals()[args.part](work))
    result["bench_s"] = round(time.perf_counter() - t, 1)
    out = HERE / "results" / f"federated_{args.part}.json"
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
