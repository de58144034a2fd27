"""The evaluate stage: test metrics, baselines beside the model, k-fold CV, and the HTML report."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from ..core.runs import Run, Timer, write_json
from ..core.spec import CORPUS_TASKS
from ..data import Prepared
from . import metrics as M
from .anomaly import evaluate_alerts
from .baselines import run_baselines
from .cost import Usage, cost_report
from .explain import explain_run
from .fairness import evaluate_fairness
from .forecast import evaluate_forecast
from .lm import evaluate_lm
from .predict_split import outputs
from .pretrain import evaluate_corpus
from .recommend import evaluate_recommend
from .report import write_report
from .summary import compare_to_best_baseline
from .tracing import evaluate_tracing

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config

__all__ = ["evaluate_run", "evaluate_data", "M"]


def per_class(y: np.ndarray, proba: np.ndarray, classes: list) -> list[dict]:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(y, proba.argmax(1), labels=np.arange(len(classes)), zero_division=0)
    return [{"class": str(c), "precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
             "f1": round(float(f[i]), 4), "support": int(s[i])} for i, c in enumerate(classes)]


def evaluate_data(model, data: Prepared, names: list[str], split: str, baselines: bool,
                  baseline_outputs: dict | None = None, baseline_train: dict | None = None) -> dict:
    t = time.perf_counter()
    y, out = outputs(model, data, split)
    predict_s = time.perf_counter() - t  # the model's own pass over the split: what the cost report prices
    result = {"split": split, "rows": int(len(y)), split: M.compute(data.task, y, out, names),
              "predict_s_per_1000": round(predict_s / max(len(y), 1) * 1000, 6)}
    result["test"] = result[split]
    if data.task == "classification":
        result["per_class"] = per_class(y, out, data.preprocessor.classes_)
    if baselines:
        result["baselines"] = run_baselines(data, split, names, baseline_outputs, baseline_train)
    return result, y, out


OWN_EVALUATION = {"knowledge_tracing": evaluate_tracing, "recommend": evaluate_recommend, "forecast": evaluate_forecast,
                  "causal_lm": evaluate_lm, **{t: evaluate_corpus for t in CORPUS_TASKS}}
"""data.task -> its evaluation (run, cfg, data, model) -> metrics; every other task: per-row metrics below."""


def evaluate_run(run: Run, cfg: Config, data: Prepared, model, cv: dict | None = None, extra_html: str = "",
                 usage: Usage | None = None, keep_training_rows: bool = True) -> dict:
    """Write metrics.json (and report.html with plots/) into the run; `cv`, the k-fold result training computed
    (train/cv.py: cross-validation trains models, so it sits above evaluation), goes to cv.json and the report;
    `extra_html`, a section a stage above adds to the report (the federation's rounds and sites); `usage`, what
    training did (rows, epochs, seconds), for the cost section (metrics.json `cost`); keep_training_rows=False: no
    training rows are written into the run (a federation's server never holds the sites' rows)."""
    timer = Timer()
    own = OWN_EVALUATION.get(data.task)
    if own is not None:  # tasks that score in their own way (whole catalogues, histories, corpora, backtests)
        result = own(run, cfg, data, model)
        result["evaluate_s"] = timer()
        write_json(run.path / "metrics.json", result)
        return result
    names = M.canonical(cfg.evaluate.metrics, data.task)
    split = "test" if "test" in data.encoded else "val"
    baseline_outputs: dict = {}
    baseline_train: dict = {}
    result, y, out = evaluate_data(model, data, names, split, cfg.evaluate.baselines, baseline_outputs, baseline_train)
    if data.task == "anomaly":
        result["alerts"] = evaluate_alerts(data, model, split, y, out, cfg.evaluate.alert_budget, run.model_dir,
                                           baseline_outputs, baseline_train)
    if baseline_outputs:
        result["comparison"] = compare_to_best_baseline(data.task, y, out, baseline_outputs, result, cfg.train.seed)
    truncated = {s: c for s, c in data.profile.get("truncated_texts", {}).items() if any(c.values())}
    if truncated:  # texts longer than data.text.max_length tokens lost their tail: say how often
        result["truncated_texts"] = {"max_length": cfg.data.text.max_length, "rows": data.profile["splits"], **truncated}
    if cfg.evaluate.explain.importance or cfg.evaluate.explain.shap_rows or cfg.evaluate.explain.background_rows:
        result["explanations"] = explain_run(cfg.evaluate.explain, data, model, split, y, run.path, cfg.train.seed,
                                             keep_training_rows)
    if cfg.evaluate.fairness is not None:
        result["fairness"] = evaluate_fairness(cfg.evaluate.fairness, data, model, split, y, out, cfg.train.seed,
                                               run.model_dir)
    if usage is not None:
        result["cost"] = cost_report(model, data, result, usage, cfg.cost, split)
    write_json(run.path / "metrics.json", result)
    if cv is not None:
        write_json(run.path / "cv.json", cv)
        result["cv"] = cv["summary"]
    if cfg.evaluate.report:
        write_report(run, data, result, y, out, extra_html)
    result["evaluate_s"] = timer()
    write_json(run.path / "metrics.json", result)
    return result
