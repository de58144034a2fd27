"""Metrics, a registry: each is one `register_metric` line (its name, task and score). Classification metrics read
one shared confusion matrix computed from the probabilities (scikit-learn's definitions); regression uses
scikit-learn; anomaly detection ranks the anomaly scores against the evaluation labels (1 = anomaly). A name may
serve several tasks (roc_auc ranks classes' probabilities, or anomaly scores)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

ALIASES = {"f1": "f1_macro", "precision": "precision_macro", "recall": "recall_macro", "auc": "roc_auc"}


@dataclass(frozen=True)
class Metric:
    name: str
    task: str
    """classification (scored from class probabilities), regression (from predictions) or anomaly (from scores)."""
    score: Callable[[Any], float | None]
    """From the task's shared scores (Confusion or Residuals); None where it is undefined (AUC with one class)."""
    lower_is_better: bool = False


METRICS: dict[tuple[str, str], Metric] = {}
"""(task, name) -> Metric."""


def register_metric(name: str, task: str, score: Callable[[Any], float | None], lower_is_better: bool = False) -> None:
    """A metric: one registration line. Its name becomes valid in evaluate.metrics, early stopping and tune.metric."""
    if (task, name) in METRICS or name in ALIASES:
        raise ValueError(f"metric {name!r} is already registered for {task}")
    METRICS[(task, name)] = Metric(name, task, score, lower_is_better)


def names_for(task: str) -> list[str]:
    return [n for (t, n) in METRICS if t == task]


def lower_is_better(name: str) -> bool:
    return any(m.lower_is_better for (_, n), m in METRICS.items() if n == name)


class Confusion:
    """What every classification metric reads, computed once: the confusion matrix and per-class precision, recall
    and F1 (scikit-learn's definitions, labels = every class, zero_division=0). scikit-learn's own functions check
    their inputs on every call, which cost ~40 ms per validation epoch: half a small model's training time."""

    def __init__(self, y: np.ndarray, proba: np.ndarray):
        self.y, self.proba = np.asarray(y).astype(np.int64), proba
        k = proba.shape[1]
        cm = np.bincount(self.y * k + proba.argmax(1), minlength=k * k).reshape(k, k).astype(np.float64)
        self.tp, self.support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(predicted > 0, self.tp / predicted, 0.0)
            recall = np.where(self.support > 0, self.tp / self.support, 0.0)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        self.per_class = {"precision": precision, "recall": recall, "f1": f1}
        self.weights = self.support / max(1.0, self.support.sum())

    def averaged(self, name: str) -> float:
        fn, avg = name.split("_")
        return self.per_class[fn].mean() if avg == "macro" else (self.per_class[fn] * self.weights).sum()


class Residuals:
    def __init__(self, y: np.ndarray, pred: np.ndarray):
        self.y, self.pred = y, pred


def _log_loss(c: Confusion) -> float | None:
    p = np.clip(c.proba, 1e-7, 1.0)
    p = p / p.sum(1, keepdims=True)
    return -np.log(p[np.arange(len(c.y)), c.y]).mean() if len(c.y) else None


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


def classification_metrics(y: np.ndarray, proba: np.ndarray, names: list[str] | None = None) -> dict[str, float]:
    """The registered classification metrics (or `names`), equal to scikit-learn's (a test checks them)."""
    c = Confusion(y, proba)
    out = {n: METRICS[("classification", n)].score(c) for n in names or CLASSIFICATION}
    return {k: (round(float(v), 6) if v is not None and np.isfinite(v) else None) for k, v in out.items()}


def regression_metrics(y: np.ndarray, pred: np.ndarray, names: list[str] | None = None) -> dict[str, float]:
    r = Residuals(y, pred)
    out = {n: METRICS[("regression", n)].score(r) for n in names or REGRESSION}
    return {k: (round(float(v), 6) if v is not None else None) for k, v in out.items()}


class Scores:
    """Anomaly scores (higher = more anomalous) and the evaluation labels (1 = anomaly, 0 = normal; -1 = not labelled:
    left out)."""

    def __init__(self, y: np.ndarray, score: np.ndarray):
        y = np.asarray(y).astype(np.int64)
        self.y, self.score = y[y >= 0], np.asarray(score, dtype=np.float64)[y >= 0]

    def auc(self, name: str) -> float | None:
        return _binary_auc(name, self.y == 1, self.score) if len(np.unique(self.y)) == 2 else None


def anomaly_metrics(y: np.ndarray, score: np.ndarray, names: list[str] | None = None) -> dict[str, float]:
    s = Scores(y, score)
    out = {n: METRICS[("anomaly", n)].score(s) for n in names or ANOMALY}
    return {k: (round(float(v), 6) if v is not None else None) for k, v in out.items()}


def compute(task: str, y: np.ndarray, output: np.ndarray, names: list[str] | None = None) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(y, output, names)
    if task == "anomaly":
        return anomaly_metrics(y, output, names)
    if task == "forecast":  # on relative values ((y - y_origin) / the in-sample seasonal-naive error): MASE directly
        r = Residuals(y, output)
        return {n: round(float(METRICS[("forecast", n)].score(r)), 6) for n in names or names_for("forecast")}
    return regression_metrics(y, output, names)


# the metrics, one line each
register_metric("accuracy", "classification", lambda c: c.tp.sum() / max(1, len(c.y)))
register_metric("balanced_accuracy", "classification",
                lambda c: c.per_class["recall"][c.support > 0].mean() if (c.support > 0).any() else 0.0)
for _name in ("precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted", "f1_weighted"):
    register_metric(_name, "classification", lambda c, n=_name: c.averaged(n))
register_metric("roc_auc", "classification", lambda c: _auc("roc_auc", c.y, c.proba))
register_metric("pr_auc", "classification", lambda c: _auc("pr_auc", c.y, c.proba))
register_metric("log_loss", "classification", _log_loss, lower_is_better=True)
register_metric("mae", "regression", lambda r: skm.mean_absolute_error(r.y, r.pred), lower_is_better=True)
register_metric("rmse", "regression", lambda r: float(np.sqrt(skm.mean_squared_error(r.y, r.pred))), lower_is_better=True)
register_metric("r2", "regression", lambda r: skm.r2_score(r.y, r.pred) if len(r.y) > 1 else None)


def _qwk(r: Residuals) -> float | None:
    """Quadratic weighted kappa (Cohen 1968), the agreement measure of graded scores (essay and short-answer grading,
    ASAP): predictions rounded to the nearest grade within the true grades' range. None unless the targets are whole
    grades (in user units: validation epochs see standardised targets, so the test split reports it)."""
    y = np.asarray(r.y, dtype=float)
    if len(y) < 2 or not np.allclose(y, np.round(y), atol=1e-3):
        return None
    truth = np.round(y).astype(int)
    pred = np.clip(np.round(np.asarray(r.pred, dtype=float)), truth.min(), truth.max()).astype(int)
    if len(np.unique(np.r_[truth, pred])) < 2:
        return None
    return float(skm.cohen_kappa_score(truth, pred, weights="quadratic"))


register_metric("qwk", "regression", _qwk)
register_metric("mase", "forecast", lambda r: float(np.abs(r.pred - r.y).mean()), lower_is_better=True)
register_metric("pr_auc", "anomaly", lambda s: s.auc("pr_auc"))  # average precision: what fraud teams read
register_metric("roc_auc", "anomaly", lambda s: s.auc("roc_auc"))

CLASSIFICATION = names_for("classification")
REGRESSION = names_for("regression")
ANOMALY = names_for("anomaly")


HEADLINE = {"classification": "f1_macro", "regression": "rmse", "anomaly": "pr_auc", "forecast": "mase",
            "recommend": "ndcg@10", "knowledge_tracing": "roc_auc"}
"""The one metric a run is summarised by (the report's baseline chart, the comparison, the cost verdict, `foundry runs`)."""


def headline(task: str, scores: dict | None = None) -> str:
    """The task's headline metric; when `scores` lacks it (evaluate.metrics left it out), their first one."""
    name = HEADLINE.get(task, "loss")
    return name if scores is None or name in scores else next(iter(scores), name)


def available(task: str) -> list[str]:
    return names_for(task)


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


# metric names whose lower values are better (a validation or training metric carries a val_/train_ prefix): the
# registered ones that say so, and the losses every run reports
LOWER_IS_BETTER = ("loss", "perplexity", *(n for (_, n), m in METRICS.items() if m.lower_is_better))


def reported_metric(name: str, prefixes: tuple[str, ...]) -> str:
    """A metric name as runs report it: `roc_auc` (no prefix) means `val_roc_auc`, aliases resolve (`val_f1` ->
    `val_f1_macro`); a name no run reports is refused with the list, before any training starts."""
    known = ["loss", *CLASSIFICATION, *REGRESSION, *(n for n in ANOMALY if n not in CLASSIFICATION), "mase", "perplexity",
             "ndcg@10", "recall@10", "hit_rate@10"]  # the last three: recommend runs' validation ranking
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
