"""`foundry runs`: list runs, or compare some side by side."""

from __future__ import annotations

import argparse
import sys

from ..core.runs import list_runs
from ..evaluate.compare import compare_runs
from .common import add_set


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "compare"])
    p.add_argument("runs", nargs="*", help="compare: two or more run directories")
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--plot", default="runs_compare.png", help="compare: where to write the overlaid curves")
    add_set(p)


def run(args) -> int:
    if args.action == "compare":
        table = compare_runs(args.runs, plot=args.plot)
        print(table.to_string(index=False))
        print(f"curves -> {args.plot}", file=sys.stderr)
        return 0
    if args.runs:
        raise ValueError("foundry runs list takes no run directories (did you mean: foundry runs compare RUN_A RUN_B)")

    rows = list_runs(args.output_dir)
    if not rows:
        print(f"no runs under {args.output_dir}/", file=sys.stderr)
        return 0
    for r in rows:
        m = r["metrics"]
        key = next((k for k in ("accuracy", "rmse", "pr_auc", "perplexity") if k in m), None)
        score = f"{key}={m[key]:.4f}" if key and m[key] is not None else ""
        print(f"{r['status']:<11} {r['created'] or '':<26} {score:<16} {r['run']}")
    return 0
