"""`foundry generate`: a causal-LM run's response to an instruction, or a pretrained (clm) run's continuation of text."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data.pii import OutputGuard, check_patterns
from ..predictor import Predictor


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("--prompt", action="append", help="an instruction, or text to continue (repeatable)")
    p.add_argument("--file", help="prompts, one per line")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    p.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="sample from the smallest set with this much probability")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeated tokens (CTRL)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="JSON lines {prompt, response} even for one prompt")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="print tokens as they are made (default: for one prompt in a terminal)")
    p.add_argument("--redact-pii", action="store_true", help="replace personal data in the output (e-mail, phone, "
                   "resident ID, bank card, IP) with its tag, [EMAIL] etc. (the whole response is then printed at once)")
    p.add_argument("--block", action="append", default=[], metavar="REGEX",
                   help="refuse a prompt matching this regular expression (case-insensitive; repeatable)")


def run(args) -> int:
    pred = Predictor.load(args.run)
    prompts = list(args.prompt or [])
    if args.file:
        prompts += [line.rstrip("\n") for line in Path(args.file).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError("foundry generate: give --prompt TEXT (repeatable) or --file PROMPTS.txt (one per line)")
    options = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
               "top_k": args.top_k, "repetition_penalty": args.repetition_penalty, "seed": args.seed}
    guard = OutputGuard(args.redact_pii, check_patterns(args.block, "--block"))
    if guard.active:
        return guarded(pred, prompts, options, guard, args.json)
    stream = args.stream if args.stream is not None else (len(prompts) == 1 and not args.json and sys.stdout.isatty())
    if stream and not args.json:
        for p in prompts:
            pred.generate_stream(p, lambda piece: print(piece, end="", flush=True), **options)
            print()
        return 0
    outs = pred.generate(prompts, **options)
    for p, o in zip(prompts, outs):
        print(json.dumps({"prompt": p, "response": o}, ensure_ascii=False) if len(prompts) > 1 or args.json else o)
    return 0


def guarded(pred: Predictor, prompts: list[str], options: dict, guard: OutputGuard, as_json: bool) -> int:
    """Generation behind the guard: blocked prompts get no response (and exit status 3 when any was), responses are
    redacted whole; the counts go to stderr."""
    allowed = [p for p in prompts if guard.blocked(p) is None]
    outs = dict(zip(allowed, pred.generate(allowed, **options))) if allowed else {}
    for p in prompts:
        o = guard.clean(outs[p])[0] if p in outs else None
        if len(prompts) > 1 or as_json:
            print(json.dumps({"prompt": p, "response": o, **({} if p in outs else {"blocked": True})}, ensure_ascii=False))
        else:
            print(o if o is not None else "")
    print("guard: " + ", ".join(f"{k} {v}" for k, v in guard.counts.items() if v) if any(guard.counts.values())
          else "guard: nothing blocked or redacted", file=sys.stderr)
    return 3 if guard.counts["prompts_blocked"] else 0
