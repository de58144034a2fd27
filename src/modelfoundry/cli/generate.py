"""`foundry generate`: a causal-LM run's response to an instruction."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..predictor import Predictor


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("--prompt", action="append", help="an instruction (repeatable)")
    p.add_argument("--file", help="instructions, one per line")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="JSON lines {prompt, response} even for one prompt")


def run(args) -> int:
    pred = Predictor.load(args.run)
    prompts = list(args.prompt or [])
    if args.file:
        prompts += [line.rstrip("\n") for line in Path(args.file).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError("foundry generate: give --prompt TEXT (repeatable) or --file PROMPTS.txt (one per line)")
    outs = pred.generate(prompts, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         top_p=args.top_p, seed=args.seed)
    for p, o in zip(prompts, outs):
        print(json.dumps({"prompt": p, "response": o}, ensure_ascii=False) if len(prompts) > 1 or args.json else o)
    return 0
