"""Does gpt-mini answer instructions after SFT? recipes/pretraining/gpt_mini_instruct.yaml (full fine-tuning on the
small bilingual instruction set build_instructions.py makes from shipped data) from the shipped gpt-mini and from
random weights (the same config and tokenizer), the answers to the 550 held-out instructions scored per task.

    .venv/bin/python bench/gpt_mini_instruct.py                # both starts, the recipe as written (3 epochs)
    .venv/bin/python bench/gpt_mini_instruct.py --steps 20     # a smoke run (not for results)

Scored on greedy answers (max 64 new tokens, repetition penalty 1.2): intent (BANKING77 test queries, 77 intents) and
department (Chinese medical questions, 11 departments): exact match of the answer's first line; poem: the share of
replies that are a quatrain of the asked form (recipes/alignment/tang_form.py: four verses of 5 or 7 characters);
answer: samples only. Beside them the majority answer of the training set (what a model that ignores the question
scores) and the held-out response-token loss. Writes bench/results/gpt_mini_instruct.json. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RECIPE = REPO / "recipes" / "pretraining" / "gpt_mini_instruct.yaml"
DATA = REPO / "recipes" / "pretraining" / "data"


def norm(text: str) -> str:
    lines = unicodedata.normalize("NFKC", text).strip().splitlines()
    return lines[0].strip().rstrip(".。") if lines else ""


def score(run: Path, test: list[dict], train: list[dict]) -> dict:
    from tang_form import score as form_score  # recipes/alignment, on the path from main()

    from modelfoundry.predictor import Predictor

    pred = Predictor.load(run)
    t = time.perf_counter()
    answers = pred.generate([r["prompt"] for r in test], max_new_tokens=64, repetition_penalty=1.2)
    gen_s = time.perf_counter() - t
    out = {"generate_s": round(gen_s, 1)}
    for task in ("intent", "department"):
        pairs = [(norm(a), norm(r["response"])) for a, r in zip(answers, test) if r["task"] == task]
        majority = Counter(norm(r["response"]) for r in train if r["task"] == task).most_common(1)[0][0]
        out[task] = {"exact_match": round(sum(a == b for a, b in pairs) / len(pairs), 4), "n": len(pairs),
                     "majority_answer_baseline": round(sum(b == majority for _, b in pairs) / len(pairs), 4),
                     "distinct_answers": len({a for a, _ in pairs})}
    poems = [(a, 5 if "五言" in r["prompt"] else 7) for a, r in zip(answers, test) if r["task"] == "poem"]
    out["poem"] = {"form_compliance": round(sum(form_score(a, n) == 1.0 for a, n in poems) / len(poems), 4),
                   "n": len(poems)}
    samples = {}
    for a, r in zip(answers, test):
        if len(samples.setdefault(r["task"], [])) < 4:
            samples[r["task"]].append({"prompt": r["prompt"], "reference": r["response"], "answer": a})
    out["samples"] = samples
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, help="train.max_steps (a smoke run)")
    args = ap.parse_args()
    os.environ.setdefault("FOUNDRY_PROGRESS", "0")
    sys.path[:0] = [str(HERE), str(REPO / "recipes" / "alignment")]
    from gpt_mini_sft import random_start
    from pretrain_vs_nanogpt import cpu_flags, cpu_name

    from modelfoundry.config import load_config
    from modelfoundry.train import train

    if not (DATA / "instructions_test.jsonl").exists():
        subprocess.run([sys.executable, str(REPO / "recipes" / "pretraining" / "build_instructions.py")], check=True)
    test = [json.loads(x) for x in (DATA / "instructions_test.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = [json.loads(x) for x in (DATA / "instructions.jsonl").read_text(encoding="utf-8").splitlines()]
    out = HERE / "results" / ("gpt_mini_instruct.json" if not args.steps else f"gpt_mini_instruct-steps{args.steps}.json")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        starts = {"gpt-mini (pretrained)": "gpt-mini", "random init (same architecture)": str(random_start(work / "random"))}
        for name, path in starts.items():
            print(f"{name} ...", file=sys.stderr, flush=True)
            sets = [f"model.path={path}", f"output_dir={work / 'runs'}"] + ([f"train.max_steps={args.steps}"] if args.steps else [])
            cfg = load_config(RECIPE, sets)
            t = time.perf_counter()
            run = train(cfg)
            train_s = time.perf_counter() - t
            metrics = json.loads((run.path / "metrics.json").read_text())
            results[name] = {"test": metrics["test"], "train_s": round(train_s, 1), **score(run.path, test, rows)}
            print(f"   {json.dumps({k: v for k, v in results[name].items() if k != 'samples'}, ensure_ascii=False)}",
                  file=sys.stderr, flush=True)
            out.write_text(json.dumps({
                "benchmark": "instruction tuning (full) of gpt-mini vs random init on build_instructions.py's set",
                "recipe": str(RECIPE.relative_to(REPO)), "train_rows": len(rows), "test_rows": len(test),
                "machine": {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count()}, "results": results},
                indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
