"""Anomaly detection's alerts: the threshold that flags a fixed share of rows (the alert budget a review team can
handle), fitted on the training rows' scores, what it catches on the held-out split (recall, precision at the budget),
the score histogram with the threshold drawn, and model/anomaly.json, which predict and serve read to flag new rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.runs import atomic_write_text
from ..data import Prepared
from .predict_split import outputs

ANOMALY_FILE = "anomaly.json"


def alert_threshold(train_scores: np.ndarray, budget: float) -> float:
    """The training scores' (1 - budget) quantile: on data like the training rows, `budget` of rows score above it."""
    return float(np.quantile(train_scores, 1.0 - budget))


def at_budget(y: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """Flagged share, and recall / precision of the flags among the labelled rows (None without both labels)."""
    flagged = score > threshold
    labelled = y >= 0
    hit = flagged & (y == 1)
    positives, flags = int((y[labelled] == 1).sum()), int(flagged[labelled].sum())
    return {"flagged": int(flagged.sum()), "flagged_share": round(float(flagged.mean()) if len(y) else 0.0, 6),
            "recall_at_budget": round(int(hit.sum()) / positives, 6) if positives and (y[labelled] == 0).any() else None,
            "precision_at_budget": round(int(hit.sum()) / flags, 6) if flags and positives else None,
            "labelled": int(labelled.sum()), "anomalies": positives}


def evaluate_alerts(data: Prepared, model, split: str, y: np.ndarray, score: np.ndarray, budget: float,
                    model_dir: Path, baseline_outputs: dict | None = None, baseline_train: dict | None = None) -> dict:
    """metrics.json `alerts`: the threshold at `budget` (from the training scores), what it flags on `split`; the same
    for each baseline (its own training scores' quantile). Writes model/anomaly.json for predict and serve."""
    _, train_scores = outputs(model, data, "train")
    threshold = alert_threshold(train_scores, budget)
    result = {"alert_budget": budget, "threshold": round(threshold, 8), split: at_budget(y, score, threshold)}
    if baseline_outputs and baseline_train:
        result["baselines"] = {name: at_budget(y, baseline_outputs[name], alert_threshold(baseline_train[name], budget))
                               for name in baseline_outputs if name in baseline_train}
    atomic_write_text(model_dir / ANOMALY_FILE, json.dumps(
        {"threshold": threshold, "alert_budget": budget, "anomaly_label": data.preprocessor.anomaly_label_}, indent=2))
    return result


def score_histogram(plt, y: np.ndarray, score: np.ndarray, threshold: float, budget: float):
    """Scores of normal and anomalous held-out rows (unlabelled ones apart), the alert threshold as a line."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    wide = score.min() > 0 and score.max() / score.min() > 100  # heavy-tailed scores read better on a log axis
    bins = np.geomspace(score.min(), score.max(), 51) if wide else np.histogram_bin_edges(score, bins=50)
    for mask, name, colour in ((y == 0, "normal", "tab:blue"), (y == 1, "anomaly", "tab:red"), (y < 0, "unlabelled", "tab:grey")):
        if mask.any():
            ax.hist(score[mask], bins=bins, alpha=0.6, label=f"{name} ({int(mask.sum())})", color=colour)
    ax.axvline(threshold, color="black", linestyle="--", label=f"alert threshold ({budget:.1%} of training rows)")
    ax.set(xlabel="anomaly score", ylabel="rows", title="Anomaly scores on the held-out rows")
    ax.set_yscale("log")
    if wide:
        ax.set_xscale("log")
    ax.legend(fontsize=8)
    return fig
