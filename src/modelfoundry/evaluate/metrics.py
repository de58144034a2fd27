"""Metrics: classification from probabilities (scikit-learn's definitions, computed directly), regression from
predictions (scikit-learn)."""

from __future__ import annotations

import difflib

import numpy as np
from sklearn import metrics as skm

CLASSIFICATION = ["accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                  "precision_weighted", "recall_weighted", "f1_weighted", "roc_auc", "pr_auc", "log_loss"]
REGRESSION = ["mae", "rmse", "r2"]
ALIASES = {"f1": "f1_macro", "precision": "precision_macro", "recall": "recall_macro", "auc": "roc_auc"}


def available(task: str) -> list[str]:
    return CLASSIFICATION if task == "classification" else REGRESSION


def canonical(names: list[str] | None, task: str) -> list[str]:
    """Resolve aliases and check names against the task; unknown names raise with the allowed list."""
    if names is None:
        return available(task)
    out = []
    for n in names:
        n = ALIASES.get(n, n)
        if n not in available(task):
            raise ValueError(f"evaluate.metrics: '{n}' is not a {task} metric; choose from {', '.join(available(task))}")
        out.append(n)
    return out


def classification_metrics(y: np.ndarray, proba: np.ndarray, names: list[str] | None = None) -> dict[str, float]:
    """The same numbers as scikit-learn's accuracy_score, balanced_accuracy_score, precision/recall/f1_score
    (labels = every class, zero_division=0), roc_auc_score, average_precision_score and log_loss (a test checks
    them against it), from one confusion matrix and one sort per class. The validation split is scored after
    every epoch, and scikit-learn's per-call input checks cost ~40 ms per epoch there: half the wall time of a
    small model's training."""
    names = names or CLASSIFICATION
    y = np.asarray(y).astype(np.int64)
    k = proba.shape[1]
    pred = proba.argmax(1)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)
    tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    per_class = {"precision": precision, "recall": recall, "f1": f1}
    weights = support / max(1.0, support.sum())
    out: dict[str, float | None] = {}
    for n in names:
        if n == "accuracy":
            out[n] = tp.sum() / max(1, len(y))
        elif n == "balanced_accuracy":
            out[n] = recall[support > 0].mean() if (support > 0).any() else 0.0
        elif n.startswith(("precision", "recall", "f1")):
            fn, avg = n.split("_")
            out[n] = per_class[fn].mean() if avg == "macro" else (per_class[fn] * weights).sum()
        elif n in ("roc_auc", "pr_auc"):
            out[n] = _auc(n, y, proba)
        elif n == "log_loss":
            p = np.clip(proba, 1e-7, 1.0)
            p = p / p.sum(1, keepdims=True)
            out[n] = -np.log(p[np.arange(len(y)), y]).mean() if len(y) else None
    return {k_: (round(float(v), 6) if v is not None and np.isfinite(v) else None) for k_, v in out.items()}


def _binary_auc(name: str, positive: np.ndarray, score: np.ndarray) -> float:
    """roc_auc_score / average_precision_score of one binary problem (ties handled as scikit-learn does)."""
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], positive[order].astype(np.float64)
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last index of each run of equal scores
    tps = np.cumsum(t)[distinct]
    fps = (distinct + 1) - tps
    P, N = tps[-1], fps[-1]
    if name == "roc_auc":
        tpr, fpr = np.r_[0.0, tps / P], np.r_[0.0, fps / N]
        return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    precision = tps / (tps + fps)
    recall = np.r_[0.0, tps / P]
    return float(np.sum(np.diff(recall) * precision))


def _auc(name: str, y: np.ndarray, proba: np.ndarray) -> float | None:
    k = proba.shape[1]
    present = np.unique(y)
    if len(present) < 2:
        return None
    if k == 2:
        return _binary_auc(name, y == 1, proba[:, 1])
    return float(np.mean([_binary_auc(name, y == c, proba[:, c]) for c in present]))


def regression_metrics(y: np.ndarray, pred: np.ndarray, names: list[str] | None = None) -> dict[str, float]:
    names = names or REGRESSION
    out = {}
    for n in names:
        if n == "mae":
            out[n] = skm.mean_absolute_error(y, pred)
        elif n == "rmse":
            out[n] = float(np.sqrt(skm.mean_squared_error(y, pred)))
        elif n == "r2":
            out[n] = skm.r2_score(y, pred) if len(y) > 1 else None
    return {k: (round(float(v), 6) if v is not None else None) for k, v in out.items()}


def compute(task: str, y: np.ndarray, output: np.ndarray, names: list[str] | None = None) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(y, output, names)
    return regression_metrics(y, output, names)


# metric names whose lower values are better (a validation or training metric carries a val_/train_ prefix)
LOWER_IS_BETTER = ("loss", "log_loss", "mae", "rmse", "mse", "perplexity")


def reported_metric(name: str, prefixes: tuple[str, ...]) -> str:
    """A metric name as runs report it: `roc_auc` (no prefix) means `val_roc_auc`, aliases resolve (`val_f1` ->
    `val_f1_macro`); a name no run reports is refused with the list, before any training starts."""
    known = ["loss", *CLASSIFICATION, *REGRESSION, "perplexity"]
    prefix = next((p for p in prefixes if name.startswith(p)), "")
    base = ALIASES.get(name.removeprefix(prefix), name.removeprefix(prefix))
    if base in known and not (prefix == "cv_" and base in ("loss", "perplexity")):
        return (prefix or prefixes[0]) + base
    close = difflib.get_close_matches(base, known, n=1, cutoff=0.6)
    raise ValueError(f"'{name}' is not a metric runs report; use {' or '.join(p + '<metric>' for p in prefixes)} "
                     f"with one of: {', '.join(known)}" + (f" (did you mean '{prefixes[0]}{close[0]}'?)" if close else ""))


def metric_mode(metric: str) -> str:
    """"min" or "max": which way `metric` improves (early stopping, the best epoch, a study's direction)."""
    return "min" if metric.removeprefix("val_").removeprefix("train_") in LOWER_IS_BETTER else "max"
