"""What pretraining buys: instruction tuning (data.task: causal_lm) of the shipped gpt-mini vs the same architecture
from random initialisation, with the same recipe (LoRA, and full fine-tuning), on Alpaca-style instructions.

    .venv/bin/python bench/gpt_mini_sft.py                 # both starts x (lora, full), 2 epochs
    .venv/bin/python bench/gpt_mini_sft.py --limit 200     # a smoke run

Data: ../shared/data/instructions (alpaca_en_demo + alpaca_zh_demo, 1,999 rows; CC BY-NC 4.0: a benchmark only, no
copy is shipped); `instruction` (+ `input` when present) is the prompt, `output` the response; 10% held out (seed 42).
Reported per run: the held-out response-token loss and perplexity (lower is better) and greedy samples for a few
held-out English and Chinese instructions. The random start is gpt-mini's config and tokenizer with freshly
initialised weights (seed 42), saved as a Hugging Face directory, so everything but the weights is the same.
Writes bench/results/gpt_mini_sft.json. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "instructions"
TEMPLATE = "### Instruction:\n{prompt}\n### Response:\n"
RECIPES = {"lora": {"finetune": "lora", "adapter": {"r": 16, "lora_alpha": 32, "target_modules": ["c_attn", "c_proj", "c_fc"]},
                    "lr": 3e-3},
           "full": {"finetune": "full", "lr": 5e-4}}


def frame(limit: int | None):
    import pandas as pd

    rows = []
    for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        for r in json.loads((DATA / name).read_text(encoding="utf-8")):
            prompt = r["instruction"] + (("\n" + r["input"]) if r.get("input") else "")
            rows.append({"prompt": prompt, "response": r["output"]})
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=42).reset_index(drop=True)
    return df.head(limit) if limit else df


def random_start(dest: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from modelfoundry.core.paths import resolve_model_path

    src = resolve_model_path("gpt-mini")
    torch.manual_seed(42)
    GPT2LMHeadModel(GPT2Config.from_pretrained(src)).save_pretrained(dest)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(src / f, dest / f)
    return dest


def one(path: str, recipe: str, df, work: Path, epochs: int) -> dict:
    from modelfoundry.config import load_config
    from modelfoundry.predictor import Predictor
    from modelfoundry.train import train

    df.to_csv(work / "sft.csv", index=False)
    r = RECIPES[recipe]
    cfg = load_config({
        "name": f"sft-{recipe}", "output_dir": str(work / "runs"),
        "data": {"path": str(work / "sft.csv"), "task": "causal_lm", "prompt": "prompt", "target": "response",
                 "prompt_template": TEMPLATE, "text": {"max_length": 256}, "split": {"val": 0.0, "test": 0.1}},
        "model": {"type": "pretrained", "path": path, **{k: v for k, v in r.items() if k != "lr"}},
        "train": {"epochs": epochs, "batch_size": 16, "lr": r["lr"], "schedule": "cosine", "warmup_ratio": 0.05,
                  "early_stopping": None},
        "evaluate": {"baselines": False, "report": False}})
    t = time.perf_counter()
    run = train(cfg)
    seconds = time.perf_counter() - t
    m = json.loads((run.path / "metrics.json").read_text())
    pred = Predictor.load(run.path)
    held = df.tail(int(len(df) * 0.1))
    picks = [held[held.prompt.str.isascii()].head(2), held[~held.prompt.str.isascii()].head(2)]
    prompts = [p for part in picks for p in part.prompt]
    outs = pred.generate(prompts, max_new_tokens=48, repetition_penalty=1.2)
    return {"test": m["test"], "train_s": round(seconds, 1), "samples": [{"prompt": p, "response": o} for p, o in zip(prompts, outs)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = ap.parse_args()
    os.environ.setdefault("FOUNDRY_PROGRESS", "0")
    df = frame(args.limit)
    results = {}
    sys.path.insert(0, str(HERE))
    from pretrain_vs_nanogpt import cpu_flags, cpu_name

    out = HERE / "results" / ("gpt_mini_sft.json" if not args.limit else f"gpt_mini_sft-limit{args.limit}.json")

    def write() -> None:  # after every run: a long benchmark that is stopped keeps what it measured
        out.write_text(json.dumps({"benchmark": "instruction tuning: gpt-mini vs random init, same recipe",
                                   "rows": len(df), "epochs": args.epochs, "recipes": {k: RECIPES[k] for k in args.recipes},
                                   "machine": {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count()},
                                   "results": results}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        starts = {"gpt-mini (pretrained)": "gpt-mini", "random init (same architecture)": str(random_start(work / "random"))}
        for recipe in args.recipes:
            for name, path in starts.items():
                print(f"{recipe} from {name} ...", file=sys.stderr, flush=True)
                results[f"{recipe} | {name}"] = res = one(path, recipe, df, work, args.epochs)
                print(f"   {res['test']}  {res['train_s']} s", file=sys.stderr, flush=True)
                write()
    print(f"-> {out}")


if __name__ == "__main__":
    main()
