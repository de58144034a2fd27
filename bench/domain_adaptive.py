"""Domain-adaptive pretraining on Chinese: continued masked-LM pretraining of MiniLM on the training split's own texts,
then the same fine-tuning recipe, against fine-tuning MiniLM as it comes and against the TF-IDF baseline.

    .venv/bin/python bench/domain_adaptive.py                 # 3 seeds, 100 MLM steps
    .venv/bin/python bench/domain_adaptive.py --seeds 1 --rows 600 --mlm-steps 10   # a smoke run

Task: the Chinese medical dialogues (../shared/data/zh_medical_dialogue, MIT), a patient's question (title + question)
-> one of 11 departments. Split once (seed 0): --rows rows for training, 1,500 held out for test. The MLM corpus is
the training rows' questions and answers only (no test text: task-adaptive pretraining without leakage), 5% of them
held out to report the perplexity before and after. MLM: data.task mlm, model.type pretrained path minilm, full,
block 128, batch 32, lr 5e-5, --mlm-steps steps. Fine-tuning (both starts, each seed): full, 3 epochs, batch 32, lr
1e-4, max_length 96. Reported: test accuracy and macro F1, mean ± std over the seeds, the TF-IDF + logistic
regression baseline on the same split, and the pretraining cost in minutes.
Writes bench/results/domain_adaptive.json. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "zh_medical_dialogue" / "internal_medicine_sample.csv"


def split(rows: int, work: Path):
    import pandas as pd

    df = pd.read_csv(DATA)
    df["question"] = (df["title"].fillna("") + " " + df["ask"].fillna("")).str.strip()
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    test, train = df.head(1500), df.iloc[1500:1500 + rows]
    train[["question", "department"]].to_csv(work / "train.csv", index=False)
    test[["question", "department"]].to_csv(work / "test.csv", index=False)
    corpus = [{"text": f"{q}\n{a}"} for q, a in zip(train["question"], train["answer"].fillna(""))]
    (work / "corpus.jsonl").write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in corpus), encoding="utf-8")
    return len(train), len(test)


def pretrain(work: Path, steps: int) -> tuple[str, dict, float]:
    from modelfoundry.config import load_config
    from modelfoundry.train import train

    cfg = load_config({
        "name": "dapt", "output_dir": str(work / "runs"),
        "data": {"path": str(work / "corpus.jsonl"), "task": "mlm", "corpus": {"block_size": 128, "val": 0.0, "test": 0.05}},
        "model": {"type": "pretrained", "path": "minilm", "finetune": "full"},
        "train": {"epochs": 20, "max_steps": steps, "batch_size": 32, "lr": 5e-5, "schedule": "linear",
                  "warmup_ratio": 0.06, "early_stopping": None},
        "evaluate": {"baselines": False, "report": False}})
    t = time.perf_counter()
    run = train(cfg)
    minutes = (time.perf_counter() - t) / 60
    m = json.loads((run.path / "metrics.json").read_text())["test"]
    return str(run.path / "model"), m, minutes


def finetune(work: Path, path: str, seed: int, baselines: bool) -> dict:
    from modelfoundry.config import load_config
    from modelfoundry.train import train

    cfg = load_config({
        "name": "zh-dept", "output_dir": str(work / "runs"),
        "data": {"path": str(work / "train.csv"), "test_path": str(work / "test.csv"), "target": "department",
                 "types": {"question": "text"}, "text": {"max_length": 96}, "split": {"val": 0.0}},
        "model": {"type": "pretrained", "path": path, "finetune": "full"},
        "train": {"epochs": 3, "batch_size": 32, "lr": 1e-4, "schedule": "linear", "warmup_ratio": 0.06,
                  "early_stopping": None, "seed": seed},
        "evaluate": {"baselines": baselines, "report": False}})
    m = json.loads((train(cfg).path / "metrics.json").read_text())
    out = {"accuracy": m["test"]["accuracy"], "f1_macro": m["test"]["f1_macro"]}
    if baselines:
        out["baselines"] = {k: {"accuracy": v["accuracy"], "f1_macro": v["f1_macro"]} for k, v in m["baselines"].items()}
    return out


def summary(rows: list[dict]) -> dict:
    return {k: {"mean": round(statistics.mean(r[k] for r in rows), 4),
                "std": round(statistics.stdev(r[k] for r in rows), 4) if len(rows) > 1 else 0.0}
            for k in ("accuracy", "f1_macro")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--mlm-steps", type=int, default=100)
    args = ap.parse_args()
    os.environ.setdefault("FOUNDRY_PROGRESS", "0")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n_train, n_test = split(args.rows, work)
        print("continued MLM of MiniLM ...", file=sys.stderr, flush=True)
        adapted, mlm, minutes = pretrain(work, args.mlm_steps)
        print(f"   {mlm}  {minutes:.1f} min", file=sys.stderr, flush=True)
        runs: dict[str, list[dict]] = {"minilm (as it comes)": [], "minilm + continued MLM": []}
        baselines = None
        for seed in range(args.seeds):
            for name, path in (("minilm (as it comes)", "minilm"), ("minilm + continued MLM", adapted)):
                r = finetune(work, path, seed, baselines is None)
                baselines = baselines or r.pop("baselines", None)
                runs[name].append(r)
                print(f"   seed {seed} {name}: {r}", file=sys.stderr, flush=True)
    sys.path.insert(0, str(HERE))
    from pretrain_vs_nanogpt import cpu_flags, cpu_name

    result = {"benchmark": "Chinese medical department classification (11 classes): continued MLM of MiniLM",
              "train_rows": n_train, "test_rows": n_test, "seeds": args.seeds, "mlm_steps": args.mlm_steps,
              "mlm_tokens": args.mlm_steps * 32 * 128, "mlm_minutes": round(minutes, 1), "mlm_test": mlm,
              "machine": {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count()},
              "results": {k: {"summary": summary(v), "runs": v} for k, v in runs.items()}, "baselines": baselines}
    name = "domain_adaptive" + ("" if (args.seeds, args.rows, args.mlm_steps) == (3, 3000, 100) else "-smoke")
    out = HERE / "results" / f"{name}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v["summary"] for k, v in result["results"].items()}, indent=1), f"\n-> {out}")


if __name__ == "__main__":
    main()
