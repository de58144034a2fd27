"""Print the README's results table from the newest complete run of each recipe.

    .venv/bin/python scripts/results_table.py [RUNS_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
KEYS = {"classification": ["accuracy", "f1_macro", "roc_auc", "pr_auc"], "regression": ["rmse", "mae", "r2"]}


def newest(runs: Path, name: str) -> Path | None:
    done = [m.parent for m in sorted((runs / name).glob("*/manifest.json"))
            if json.loads(m.read_text()).get("status") == "complete"]
    return done[-1] if done else None


def main() -> None:
    runs = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "runs"
    print("| recipe | model | data (train/val/test) | test metrics | best baseline | CV (mean ± std) | wall time |")
    print("|---|---|---|---|---|---|---|")
    for recipe in sorted((REPO / "recipes").glob("*/*.yaml")):
        raw = yaml.safe_load(recipe.read_text())
        run = newest(runs, raw["name"])
        if run is None:
            continue
        m = json.loads((run / "metrics.json").read_text())
        man = json.loads((run / "manifest.json").read_text())
        prof = json.loads((run / "data_profile.json").read_text())
        task = prof["task"]
        keys = [k for k in KEYS[task] if m["test"].get(k) is not None]
        test = ", ".join(f"{k} {m['test'][k]:.3f}" for k in keys)
        lower = task == "regression"
        key = keys[0]
        base = [(n, b[key]) for n, b in m.get("baselines", {}).items() if b.get(key) is not None]
        best = min(base, key=lambda t: t[1]) if lower else max(base, key=lambda t: t[1]) if base else None
        cv = ", ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in m.get("cv", {}).items() if k in ("accuracy", "roc_auc", "rmse"))
        s = prof["splits"]
        model = raw.get("model", {}).get("type", "mlp")
        print(f"| `{recipe.relative_to(REPO)}` | {model} | {s.get('train')}/{s.get('val')}/{s.get('test')} | {test} | "
              f"{f'{best[0]}: {key} {best[1]:.3f}' if best else '-'} | {cv or '-'} | {man['timings']['total_s']:.0f} s |")


if __name__ == "__main__":
    main()
