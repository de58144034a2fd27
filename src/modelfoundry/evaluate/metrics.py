"""Metrics on scikit-learn: classification from probabilities, regression from predictions."""

from __future__ import annotations

import warnings

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
    names = names or CLASSIFICATION
    k = proba.shape[1]
    pred = proba.argmax(1)
    out: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in names:
            if n == "accuracy":
                out[n] = skm.accuracy_score(y, pred)
            elif n == "balanced_accuracy":
                out[n] = skm.balanced_accuracy_score(y, pred)
            elif n.startswith(("precision", "recall", "f1")):
                fn, avg = n.split("_")
                f = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}[fn]
                out[n] = f(y, pred, average=avg, labels=np.arange(k), zero_division=0)
            elif n in ("roc_auc", "pr_auc"):
                out[n] = _auc(n, y, proba)
            elif n == "log_loss":
                out[n] = skm.log_loss(y, np.clip(proba, 1e-7, 1), labels=np.arange(k))
    return {k_: (round(float(v), 6) if v is not None and np.isfinite(v) else None) for k_, v in out.items()}


def _auc(name: str, y: np.ndarray, proba: np.ndarray) -> float | None:
    k = proba.shape[1]
    present = np.unique(y)
    if len(present) < 2:
        return None
    if k == 2:
        score = proba[:, 1]
        return skm.roc_auc_score(y, score) if name == "roc_auc" else skm.average_precision_score(y, score)
    onehot = np.eye(k)[y][:, present]
    p = proba[:, present]
    if name == "roc_auc":
        return skm.roc_auc_score(onehot, p, average="macro")
    return skm.average_precision_score(onehot, p, average="macro")


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
