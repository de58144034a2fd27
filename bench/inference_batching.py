"""Inference batches for text: sequential batches padded to their longest text (the anchor: what a plain
`DataLoader` over the test set does) vs ModelFoundry's length-sorted batches of at most `max_tokens` padded
tokens, side by side in one process, on BANKING77 test queries.

    .venv/bin/python bench/inference_batching.py --run RUNS/<a text run>              # torch
    .venv/bin/python bench/inference_batching.py --run RUNS/<its int8 variant> --backend onnx

For 32 and 64 random queries (a served batch) and the whole test set (evaluation, 256 rows per batch),
rows/s with sequential batches and with each token budget, 5 draws each, median. Writes
bench/results/inference_batching[-onnx].json. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUDGETS = (128, 256, 512, 1024, 2048)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    ap.add_argument("--out", help="where the JSON goes (default bench/results/inference_batching[-onnx].json)")
    args = ap.parse_args()
    import pandas as pd

    from modelfoundry.core.infer import INFERENCE_TOKENS, predict_tensors
    from modelfoundry.predictor import Predictor

    pred = Predictor.load(args.run, backend=args.backend)
    default = getattr(pred.model, "inference_tokens", INFERENCE_TOKENS)
    texts = pd.read_csv(REPO / "datasets" / "banking77" / "test.csv")["text"].tolist()
    col = next(iter(pred.preprocessor.tokenizers_))
    features = pred.preprocessor.transform(pd.DataFrame({col: texts})).features
    rng = np.random.default_rng(0)
    rows = {}
    for n in (32, 64, len(texts)):
        draws = [rng.choice(len(texts), n, replace=False) for _ in range(5 if n < len(texts) else 3)]
        batch_size = n if n < len(texts) else 256
        res = {}
        for budget in (None, *BUDGETS):  # alternating within each draw, so drift hits every setting alike
            res[budget] = []
        for idx in draws:
            f = {k: v[idx] for k, v in features.items()}
            for budget in res:
                predict_tensors(pred.model, f, pred.task, batch_size=batch_size, max_tokens=budget)  # warm
                t = time.perf_counter()
                predict_tensors(pred.model, f, pred.task, batch_size=batch_size, max_tokens=budget)
                res[budget].append(n / (time.perf_counter() - t))
        med = {("sequential" if b is None else str(b)): round(statistics.median(v), 1) for b, v in res.items()}
        rows[str(n) if n < len(texts) else f"test set ({n})"] = {
            "rows_per_s": med, "speedup_at_default": round(med[str(default)] / med["sequential"], 2)}
        print(n, json.dumps(rows[list(rows)[-1]]), flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    out = {"run": args.run, "backend": args.backend, "default_max_tokens": default, "cores": os.cpu_count(), "cpu": cpu,
           "results": rows}
    path = Path(args.out) if args.out else HERE / "results" / f"inference_batching{'-onnx' if args.backend == 'onnx' else ''}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
