"""Group fairness on the held-out split (fairlearn): each metric per group (MetricFrame), demographic parity and
equalized odds as differences and ratios, selection rates; and post-processing mitigation with fairlearn's
ThresholdOptimizer, saved as JSON (model/fairness.json) so that Predictor and serve apply the same per-group rule.

Groups come from the sensitive columns as the user sees them: values recoded by `groups`, numeric columns banded by
`bins` or by quantiles of the training rows (edges saved with the rule). Groups smaller than `min_group_size` are
listed but left out of the differences and ratios."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from .config import FairnessConfig

FAIRNESS_FILE = "fairness.json"
"""The mitigation rule in the run's model directory."""

SEP = " · "
"""Joins the labels of several sensitive columns into one group name ('female · 25-40')."""


def check_columns(cfg: FairnessConfig, columns: list[str], where: str) -> None:
    missing = [c for c in cfg.sensitive if c not in columns]
    if missing:
        raise ValueError(f"evaluate.fairness.sensitive: no column {', '.join(map(repr, missing))} in {where}; its "
                         f"columns are {', '.join(map(str, columns))}")


def band_edges(cfg: FairnessConfig, train: pd.DataFrame) -> dict[str, list[float]]:
    """Edges for each numeric sensitive column: the config's `bins`, else quantiles of the training rows. A numeric
    column with 10 or fewer distinct values (a 0/1 flag) keeps its values as groups."""
    edges = {}
    for col in cfg.sensitive:
        if col in cfg.bins:
            edges[col] = sorted(float(b) for b in cfg.bins[col])
            continue
        s = train[col]
        if col in cfg.groups or not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s) or s.nunique() <= 10:
            continue
        qs = np.quantile(s.dropna().astype(float), [i / cfg.quantiles for i in range(1, cfg.quantiles)])
        edges[col] = sorted({round(float(q), 6) for q in qs})
    return edges


def _band(v: Any, edges: list[float]) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "missing"
    v = float(v)
    if v < edges[0]:
        return f"<{edges[0]:g}"
    for lo, hi in zip(edges[:-1], edges[1:]):
        if v < hi:
            return f"{lo:g}-{hi:g}"
    return f">={edges[-1]:g}"


def group_labels(frame: pd.DataFrame, sensitive: list[str], groups: dict, edges: dict) -> pd.DataFrame:
    """One label per row and sensitive column, as strings."""
    out = {}
    for col in sensitive:
        s = frame[col]
        if col in edges:
            out[col] = [_band(v, edges[col]) for v in s]
        else:  # a value as the user writes it: 1.0 read from a CSV is "1", as in `groups: {sex: {"1": male}}`
            names = {_key(k): v for k, v in groups.get(col, {}).items()}
            out[col] = ["missing" if pd.isna(v) else names.get(_key(v), _key(v)) for v in s]
    return pd.DataFrame(out, index=frame.index)


def combined(labels: pd.DataFrame) -> pd.Series:
    return labels.astype(str).agg(SEP.join, axis=1) if labels.shape[1] > 1 else labels.iloc[:, 0].astype(str)


def _num(v: Any) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


def _rmse(y, p) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(p)) ** 2)))


def group_metrics(task: str, y: np.ndarray, out: np.ndarray, groups: pd.Series, positive: int | None,
                  min_size: int) -> dict:
    """MetricFrame by group, and the parity differences and ratios over the groups with at least `min_size` rows."""
    from fairlearn import metrics as fm
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, precision_score, recall_score

    groups = pd.Series(np.asarray(groups), name="group")
    if task == "regression":
        metrics = {"count": fm.count, "mae": mean_absolute_error, "rmse": _rmse, "mean_prediction": fm.mean_prediction}
        y_true, y_pred = y, out
    elif positive is not None:  # binary: the positive (favourable) class is 1
        metrics = {"count": fm.count, "accuracy": accuracy_score, "selection_rate": fm.selection_rate,
                   "true_positive_rate": fm.true_positive_rate, "false_positive_rate": fm.false_positive_rate,
                   "precision": lambda a, b: precision_score(a, b, zero_division=0),
                   "recall": lambda a, b: recall_score(a, b, zero_division=0)}
        y_true, y_pred = (y == positive).astype(int), (out.argmax(1) == positive).astype(int)
    else:
        metrics = {"count": fm.count, "accuracy": accuracy_score,
                   "f1_macro": lambda a, b: f1_score(a, b, average="macro", zero_division=0)}
        y_true, y_pred = y, out.argmax(1)
    frame = fm.MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    table = frame.by_group.reset_index()
    rows = [{"group": str(r["group"]), **{k: (int(r[k]) if k == "count" else _num(r[k])) for k in metrics}}
            for _, r in table.iterrows()]
    small = [r["group"] for r in rows if r["count"] < min_size]
    big = ~groups.isin(small).to_numpy()
    result: dict[str, Any] = {"groups": rows, "small_groups": small}
    kept = len(rows) - len(small)
    if kept < 2:
        result["note"] = (f"fewer than two groups have {min_size} or more held-out rows (evaluate.fairness."
                          "min_group_size): no differences or ratios")
        return result
    sub = frame if not small else fm.MetricFrame(metrics=metrics, y_true=np.asarray(y_true)[big],
                                                 y_pred=np.asarray(y_pred)[big], sensitive_features=groups[big])
    for k in metrics:
        if k != "count":
            result[f"{k}_difference"] = _num(sub.difference()[k])
    if positive is not None:
        yt, yp, g = np.asarray(y_true)[big], np.asarray(y_pred)[big], groups[big]
        for name in ("demographic_parity_difference", "demographic_parity_ratio",
                     "equalized_odds_difference", "equalized_odds_ratio"):
            result[name] = _num(getattr(fm, name)(yt, yp, sensitive_features=g))
    elif task != "regression":
        result["note"] = "demographic parity and equalized odds need a binary target: per-group scores only"
    return result


# ThresholdOptimizer, fitted on the model's scores, and its rule as JSON


def _score_estimator():
    """A fitted 'estimator' whose prediction is the score it is given (column 0): ThresholdOptimizer thresholds it."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Score(ClassifierMixin, BaseEstimator):
        def fit(self, X, y=None):
            self.classes_ = np.array([0, 1])
            return self

        def predict(self, X):
            return np.asarray(X, dtype=float)[:, 0]

    return Score().fit(None)


def fit_thresholds(score: np.ndarray, y01: np.ndarray, groups: pd.Series, cfg: FairnessConfig, seed: int) -> dict:
    """fairlearn's ThresholdOptimizer on (score, label, group); its interpolation rule per group, as plain numbers."""
    from fairlearn.postprocessing import ThresholdOptimizer

    opt = ThresholdOptimizer(estimator=_score_estimator(), constraints=cfg.constraint, objective=cfg.objective, prefit=True,
                             predict_method="predict")
    opt.fit(score.reshape(-1, 1), y01, sensitive_features=np.asarray(groups))
    rules = {}
    for g, it in opt.interpolated_thresholder_.interpolation_dict.items():
        rules[str(g)] = {"p_ignore": float(it.get("p_ignore", 0.0)),
                         "prediction_constant": float(it.get("prediction_constant", 0.0)),
                         "p0": float(it["p0"]), "operator0": it["operation0"]._operator,
                         "threshold0": float(it["operation0"]._threshold),
                         "p1": float(it["p1"]), "operator1": it["operation1"]._operator,
                         "threshold1": float(it["operation1"]._threshold)}
    return rules


def _op(operator: str, x: np.ndarray, t: float) -> np.ndarray:
    return (x > t if operator == ">" else x < t).astype(float)


def positive_probability(rules: dict, score: np.ndarray, groups: pd.Series) -> np.ndarray:
    """The probability of the positive decision per row under the rule (fairlearn's _pmf_predict); NaN for a group
    the rule has not seen."""
    prob = np.full(len(score), np.nan)
    g = np.asarray(groups)
    for name, r in rules.items():
        m = g == name
        p = r["p0"] * _op(r["operator0"], score[m], r["threshold0"]) + r["p1"] * _op(r["operator1"], score[m], r["threshold1"])
        prob[m] = r["p_ignore"] * r["prediction_constant"] + (1 - r["p_ignore"]) * p
    return prob


def _key(v: Any) -> str:
    """A value as a person writes it: 67, 67.0, "67.0" and numpy's int64(67) alike; missing is empty."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
        return f"{float(v):.10g}"
    try:  # a numeric string from a config key
        return f"{float(v):.10g}" if isinstance(v, str) and v.strip() and v.strip() == v else str(v)
    except ValueError:
        return str(v)


def row_uniforms(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A number in [0, 1) per row from a hash of its input values: the randomised decision of a threshold rule is
    the same for the same row, in evaluation and in serving, whichever batch it comes in."""
    out = np.empty(len(frame))
    cols = [c for c in columns if c in frame.columns]
    for i, rec in enumerate(frame[cols].itertuples(index=False, name=None)):
        h = hashlib.sha256("\x1f".join(_key(v) for v in rec).encode("utf-8")).hexdigest()
        out[i] = int(h[:13], 16) / 16 ** 13
    return out


def decide(rule: dict, frame: pd.DataFrame, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positive probability under the rule, decision 1/0; -1 where the row's group is unknown to the rule: the
    model's own decision stands there)."""
    groups = combined(group_labels(frame, rule["sensitive"], rule["groups"], rule["edges"]))
    prob = positive_probability(rule["rules"], proba[:, rule["positive_code"]], groups)
    u = row_uniforms(frame, rule["hash_columns"])
    return prob, np.where(np.isnan(prob), -1, (u < np.nan_to_num(prob)).astype(int))


def positive_code(cfg: FairnessConfig, classes: list) -> int | None:
    """The code of the favourable class of a binary target; None for other targets."""
    if len(classes) != 2:
        return None
    if cfg.positive is None:
        return 1
    names = [str(c) for c in classes]
    if cfg.positive not in names:
        raise ValueError(f"evaluate.fairness.positive: '{cfg.positive}' is not a class of this target; the classes "
                         f"are {', '.join(names)}")
    return names.index(cfg.positive)


def reweighing(cfg: FairnessConfig, frame: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """Kamiran & Calders' reweighing on the training rows: weight(g, y) = P(g) P(y) / P(g, y) over the groups of the
    sensitive columns (banded as for the metrics). Returns (a weight per row, the table of weights)."""
    edges = band_edges(cfg, frame)
    groups = combined(group_labels(frame, cfg.sensitive, cfg.groups, edges)).to_numpy()
    y = np.asarray(y)
    n = len(y)
    weights = np.ones(n)
    table = []
    for g in np.unique(groups):
        in_g = groups == g
        for label in np.unique(y):
            cell = in_g & (y == label)
            if cell.any():
                w = (in_g.sum() / n) * ((y == label).sum() / n) / (cell.sum() / n)
                weights[cell] = w
                table.append({"group": str(g), "label": int(label), "rows": int(cell.sum()), "weight": round(float(w), 4)})
    return weights, table


def evaluate_fairness(cfg: FairnessConfig, data, model, split: str, y: np.ndarray, out: np.ndarray, seed: int,
                      model_dir) -> dict:
    """metrics.json `fairness`: per group over all sensitive columns together and over each alone; with
    mitigate, the rule fitted on the validation split (training rows when there is none), saved to model_dir, and
    the held-out scores before and after it."""
    from ..core.runs import write_json
    from .predict_split import outputs

    frame = data.frames[split].iloc[data.encoded[split].rows]
    check_columns(cfg, list(frame.columns), f"the {split} split")
    classes = getattr(data.preprocessor, "classes_", None)
    task = data.task
    pos = positive_code(cfg, list(classes)) if task == "classification" else None
    if cfg.mitigate == "threshold_optimizer" and pos is None:
        raise ValueError(f"evaluate.fairness.mitigate: {cfg.mitigate} needs a binary classification target; this one "
                         + (f"has {len(classes)} classes" if task == "classification" else "is a regression target"))
    edges = band_edges(cfg, data.frames["train"])
    labels = group_labels(frame, cfg.sensitive, cfg.groups, edges)
    result: dict[str, Any] = {"split": split, "sensitive": cfg.sensitive, "min_group_size": cfg.min_group_size,
                              "bands": edges, **({"positive": str(classes[pos])} if pos is not None else {})}
    result.update(group_metrics(task, y, out, combined(labels), pos, cfg.min_group_size))
    if len(cfg.sensitive) > 1:
        result["columns"] = {c: group_metrics(task, y, out, labels[c], pos, cfg.min_group_size) for c in cfg.sensitive}
    if cfg.mitigate == "reweigh":  # applied in training: these scores are the reweighed model's
        result["mitigation"] = {"method": "reweigh", "applied": "training loss weights, P(g) P(y) / P(g, y)",
                                "weights": data.profile.get("reweighing", [])}
        return result
    if cfg.mitigate == "none":
        return result
    fit_split = "val" if len(data.encoded.get("val", [])) else "train"
    fit_frame = data.frames[fit_split].iloc[data.encoded[fit_split].rows]
    y_fit, out_fit = outputs(model, data, fit_split)
    fit_groups = combined(group_labels(fit_frame, cfg.sensitive, cfg.groups, edges))
    rule = {"method": cfg.mitigate, "constraint": cfg.constraint, "objective": cfg.objective, "fit_on": fit_split,
            "sensitive": cfg.sensitive, "groups": cfg.groups, "edges": edges, "positive": str(classes[pos]),
            "positive_code": pos, "classes": [str(c) for c in classes],
            "hash_columns": list(dict.fromkeys([c for c, k in data.preprocessor.schema.items()
                                                if k != "ignore" and c != data.preprocessor.target] + cfg.sensitive)),
            "rules": fit_thresholds(out_fit[:, pos], (y_fit == pos).astype(int), fit_groups, cfg, seed)}
    write_json(model_dir / FAIRNESS_FILE, rule)
    prob, decision = decide(rule, frame.reset_index(drop=True), out)
    model_decision = (out.argmax(1) == pos).astype(int)
    decision = np.where(decision < 0, model_decision, decision)
    after = np.zeros_like(out)
    after[np.arange(len(out)), np.where(decision == 1, pos, 1 - pos)] = 1.0
    groups = combined(labels)
    before_m = group_metrics(task, y, out, groups, pos, cfg.min_group_size)
    after_m = group_metrics(task, y, after, groups, pos, cfg.min_group_size)
    keys = ["accuracy", "selection_rate_difference", "demographic_parity_difference", "demographic_parity_ratio",
            "equalized_odds_difference", "equalized_odds_ratio", "true_positive_rate_difference",
            "false_positive_rate_difference"]
    acc = {"before": round(float((out.argmax(1) == y).mean()), 4), "after": round(float((after.argmax(1) == y).mean()), 4)}
    result["mitigation"] = {
        "method": cfg.mitigate, "constraint": cfg.constraint, "objective": cfg.objective, "fit_on": fit_split,
        "unknown_group_rows": int(np.isnan(prob).sum()),
        "table": [{"metric": "accuracy", **acc}] + [{"metric": k, "before": before_m.get(k), "after": after_m.get(k)}
                                                   for k in keys[1:]],
        "after_groups": after_m["groups"]}
    rates = {g["selection_rate"] for g in after_m["groups"]}
    if rates <= {0.0} or rates <= {1.0}:
        result["mitigation"]["note"] = (
            f"the rule gives every held-out row the same decision ({'positive' if rates == {1.0} else 'negative'}): "
            f"{cfg.constraint} is met trivially, because on the {fit_split} split's groups the constrained optimum of "
            f"{cfg.objective} is a constant. More validation rows per group, fewer or coarser groups, or another "
            "constraint or objective may do better")
    return result
