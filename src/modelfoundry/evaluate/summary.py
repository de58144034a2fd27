"""The run in a few lines, for the top of the report and the card: the model against its best baseline on the
headline metric, with the difference's uncertainty (a paired bootstrap over the held-out rows), and the flags a
reviewer should see first (cost verdict, fairness gaps, personal data in the inputs)."""

from __future__ import annotations

import numpy as np

from . import metrics as M

BOOTSTRAP = 1000
"""Resamples of the held-out rows for the difference's 95% interval."""


def compare_to_best_baseline(task: str, y: np.ndarray, out: np.ndarray, baseline_outputs: dict, result: dict,
                             seed: int) -> dict | None:
    """metrics.json `comparison`: the headline metric of the model and of the best baseline on it, the difference
    (model - baseline; for an error metric, negative is the model's win) and its 95% paired-bootstrap interval."""
    metric = M.HEADLINE[task]
    lower = M.METRICS[(task, metric)].lower_is_better
    scored = {n: b[metric] for n, b in result.get("baselines", {}).items() if b.get(metric) is not None}
    if not scored or metric not in result["test"]:
        return None
    best = (min if lower else max)(scored, key=scored.get)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(y), len(y))
        a = M.compute(task, y[idx], out[idx], [metric])[metric]
        b = M.compute(task, y[idx], baseline_outputs[best][idx], [metric])[metric]
        if a is not None and b is not None:
            diffs.append(a - b)
    lo, hi = (np.percentile(diffs, [2.5, 97.5]) if diffs else (np.nan, np.nan))
    diff = result["test"][metric] - scored[best]
    better = diff < 0 if lower else diff > 0
    sure = (hi < 0 or lo > 0)
    return {"metric": metric, "model": round(result["test"][metric], 4), "baseline": best,
            "baseline_score": round(scored[best], 4), "difference": round(diff, 4),
            "ci95": [round(float(lo), 4), round(float(hi), 4)], "bootstrap": BOOTSTRAP,
            "verdict": ("the model is better" if better else "the baseline is better") if sure else
                       "no clear difference (the interval contains 0)"}


def flags(result: dict, profile: dict) -> list[str]:
    """What a reviewer should see before the numbers: each a short sentence."""
    out = []
    verdict = (result.get("cost") or {}).get("verdict")
    if verdict:
        out.append(verdict["line"])
    fair = result.get("fairness") or {}
    for key in ("demographic_parity_difference", "equalized_odds_difference"):
        if (fair.get(key) or 0) >= 0.1:
            out.append(f"{key.replace('_', ' ')} {fair[key]} across {', '.join(fair['sensitive'])}")
    if (fair.get("mitigation") or {}).get("note"):
        out.append("fairness mitigation: " + fair["mitigation"]["note"])
    if profile.get("pii_in_features"):
        out.append(f"personal data in model inputs: {', '.join(profile['pii_in_features'])}")
    leak = (profile.get("leakage") or {}).get("held_out_rows", 0)
    if leak:
        out.append(f"{leak} held-out rows repeat training rows (test scores are optimistic)")
    return out
