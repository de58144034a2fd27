"""BANKING77 (full official train/test), all-MiniLM-L6-v2, LoRA: ModelFoundry vs Hugging Face Trainer + PEFT.

    .venv/bin/python bench/finetune_vs_hf.py                      # the comparison, then the strategy table
    .venv/bin/python bench/finetune_vs_hf.py --part compare       # anchor vs ours (same settings) vs our recipe
    .venv/bin/python bench/finetune_vs_hf.py --part strategies    # every model.finetune strategy, ModelFoundry only
    .venv/bin/python bench/finetune_vs_hf.py --limit 500          # a smoke run on the first 500 training rows

The anchor's settings (the issue's): 3 epochs, batch 32, max length 64, LoRA r=8 alpha=16 dropout 0.1 on
query/key/value/dense, lr 1e-3, linear decay, no warm-up (Trainer's defaults otherwise). "ours (anchor settings)"
is ModelFoundry with exactly those; "ours (recipe)" is recipes/customer_service/intent_lora.yaml.

Each contender runs in a fresh child process (so its peak RSS is its own). Train time is the training loop
alone: trainer.train() for the anchor, our fit() for us; loading the model, wrapping it in PEFT and tokenizing
are outside both (our model build is reported as build_s). Total time includes loading, tokenization and test
prediction.
Writes bench/results/finetune_vs_hf.json and bench/results/finetune_strategies.json. Run it alone: other
torch processes distort the times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "banking77"
RECIPE = REPO / "recipes" / "customer_service" / "intent_lora.yaml"
RESULTS = HERE / "results"
ANCHOR = {"epochs": 3, "batch_size": 32, "max_length": 64, "lr": 1e-3,
          "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "key", "value", "dense"]}}
# every strategy at a learning rate that suits it (adapters and virtual tokens need larger steps than full weights)
STRATEGIES = {"full": {"lr": 1e-4}, "linear_probe": {"lr": 1e-2}, "lora": {"lr": 2e-3},
              "adalora": {"lr": 2e-3, "adapter": {"init_r": 12, "target_r": 8, "target_modules": ["query", "key", "value", "dense"]}},
              "ia3": {"lr": 1e-2}, "prefix": {"lr": 1e-2}, "prompt": {"lr": 3e-2}}


def frames(limit: int | None):
    import pandas as pd

    train, test = pd.read_csv(DATA / "train.csv"), pd.read_csv(DATA / "test.csv")
    if limit:  # every intent keeps some rows
        train = train.groupby("category", group_keys=False).head(max(1, limit // train["category"].nunique()))
    return train, test


def scores(y_true, y_pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
            "f1_macro": round(float(f1_score(y_true, y_pred, average="macro")), 4)}


def run_anchor(limit: int | None) -> dict:
    """Hugging Face Trainer + PEFT, as its documentation shows it."""
    import numpy as np
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from modelfoundry.core.paths import resolve_model_path

    t0 = time.perf_counter()
    train, test = frames(limit)
    labels = sorted(train["category"].unique())
    index = {c: i for i, c in enumerate(labels)}
    path = resolve_model_path("minilm")
    tok = AutoTokenizer.from_pretrained(path)

    def encode(df):
        enc = tok(df["text"].tolist(), truncation=True, max_length=ANCHOR["max_length"])
        return [{"input_ids": ids, "attention_mask": m, "labels": index[c]}
                for ids, m, c in zip(enc["input_ids"], enc["attention_mask"], df["category"])]

    train_ds, test_ds = encode(train), encode(test)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, **ANCHOR["lora"]))
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, num_train_epochs=ANCHOR["epochs"],
                                 per_device_train_batch_size=ANCHOR["batch_size"], per_device_eval_batch_size=256,
                                 learning_rate=ANCHOR["lr"], save_strategy="no", eval_strategy="no",
                                 logging_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(),
                                 disable_tqdm=True, seed=42)
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=DataCollatorWithPadding(tok))
        t = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t
        pred = trainer.predict(test_ds)
    y_pred = np.asarray(pred.predictions).argmax(-1)
    y_true = [index[c] for c in test["category"]]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"train_s": round(train_s, 1), "total_s": round(time.perf_counter() - t0, 1), **scores(y_true, y_pred),
            "trainable_parameters": trainable}


def run_ours(limit: int | None, kind: str, strategy: str | None = None) -> dict:
    from modelfoundry.config import load_config
    from modelfoundry.train import train

    t0 = time.perf_counter()
    tr, te = frames(limit)
    runs = Path(tempfile.mkdtemp(prefix="bench-"))
    common = {"output_dir": str(runs), "evaluate": {"baselines": False, "report": False}}
    if kind == "anchor-settings":
        cfg = load_config({"name": "bench-anchor", **common,
                           "data": {"target": "category", "text": {"max_length": ANCHOR["max_length"]}, "split": {"val": 0.0}},
                           "model": {"type": "pretrained", "path": "minilm", "finetune": "lora", "adapter": ANCHOR["lora"]},
                           "train": {"epochs": ANCHOR["epochs"], "batch_size": ANCHOR["batch_size"], "lr": ANCHOR["lr"],
                                     "schedule": "linear", "warmup_ratio": 0.0, "early_stopping": None,
                                     "weight_decay": 0.0}})
    elif kind == "recipe":
        cfg = load_config(RECIPE, [f"output_dir={runs}", "evaluate.baselines=false", "evaluate.report=false"])
    else:
        opts = STRATEGIES[strategy]
        model = {"type": "pretrained", "path": "minilm", "finetune": strategy, **({"adapter": opts["adapter"]} if "adapter" in opts else {})}
        cfg = load_config({"name": f"bench-{strategy}", **common, "model": model,
                           "data": {"target": "category", "text": {"max_length": ANCHOR["max_length"]}, "split": {"val": 0.0}},
                           "train": {"epochs": ANCHOR["epochs"], "batch_size": ANCHOR["batch_size"], "lr": opts["lr"],
                                     "schedule": "linear", "warmup_ratio": 0.1, "early_stopping": None}})
    run = train(cfg, frame=tr, test_frame=te)
    manifest = json.loads((run.path / "manifest.json").read_text())
    metrics = json.loads((run.path / "metrics.json").read_text())["test"]
    weights = run.path / "model" / "weights.safetensors"
    # the training loop alone, as trainer.train() is timed for the anchor (model loading is outside both)
    return {"train_s": round(manifest["timings"]["loop_s"], 1), "build_s": round(manifest["timings"]["fit_s"] - manifest["timings"]["loop_s"], 1), "total_s": round(time.perf_counter() - t0, 1),
            "accuracy": round(metrics["accuracy"], 4), "f1_macro": round(metrics["f1_macro"], 4),
            "trainable_parameters": manifest["trainable_parameters"],
            "saved_bytes": weights.stat().st_size, "base_reloaded": manifest["saved_model"].get("tensors_from_base", 0) > 0,
            "epochs": cfg.train.epochs, "lr": cfg.train.lr}


def child(args) -> None:
    if args.one == "anchor":
        out = run_anchor(args.limit)
    elif args.one.startswith("strategy:"):
        out = run_ours(args.limit, "strategy", args.one.split(":", 1)[1])
    else:
        out = run_ours(args.limit, args.one)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    Path(args.out).write_text(json.dumps(out))


def spawn(name: str, limit: int | None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    cmd = [sys.executable, __file__, "--one", name, "--out", out] + (["--limit", str(limit)] if limit else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    print(f"-- {name}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    print(f"   {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def machine() -> dict:
    import torch

    from modelfoundry.core.hardware import resolve_precision

    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(), "precision_auto": resolve_precision("auto") or "fp32"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "compare", "strategies"], default="all")
    ap.add_argument("--limit", type=int, default=None, help="train on about this many rows (smoke runs; not for results)")
    ap.add_argument("--only", nargs="+", choices=list(STRATEGIES), help="strategies: rerun these, keep the others' results")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return child(args)
    RESULTS.mkdir(exist_ok=True)
    suffix = f"-limit{args.limit}" if args.limit else ""
    if args.part in ("all", "compare"):
        res = {"anchor (HF Trainer + PEFT)": spawn("anchor", args.limit),
               "ours (anchor settings)": spawn("anchor-settings", args.limit),
               "ours (recipe)": spawn("recipe", args.limit)}
        a = res["anchor (HF Trainer + PEFT)"]
        for r in res.values():
            r["train_time_ratio"] = round(r["train_s"] / a["train_s"], 3)
            r["accuracy_delta"] = round(r["accuracy"] - a["accuracy"], 4)
        out = {"benchmark": "BANKING77 LoRA fine-tuning of all-MiniLM-L6-v2", "settings": ANCHOR, "limit": args.limit,
               "recipe": str(RECIPE.relative_to(REPO)), "machine": machine(), "results": res}
        (RESULTS / f"finetune_vs_hf{suffix}.json").write_text(json.dumps(out, indent=2))
        print(json.dumps(out, indent=2))
    if args.part in ("all", "strategies"):
        path = RESULTS / f"finetune_strategies{suffix}.json"
        res = json.loads(path.read_text())["results"] if args.only and path.exists() else {}
        res.update({s: spawn(f"strategy:{s}", args.limit) for s in (args.only or STRATEGIES)})
        res = {s: res[s] for s in STRATEGIES if s in res}
        out = {"benchmark": "BANKING77, all-MiniLM-L6-v2, every model.finetune strategy (3 epochs, batch 32, max length 64)",
               "learning_rates": {s: o["lr"] for s, o in STRATEGIES.items()}, "limit": args.limit, "machine": machine(),
               "results": res}
        path.write_text(json.dumps(out, indent=2))
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
