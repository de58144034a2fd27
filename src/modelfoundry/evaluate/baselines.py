"""Baselines trained beside every model (scikit-learn): majority / mean, logistic / linear regression and
HistGradientBoosting, on the same splits, so a team sees at once whether the neural model earns its cost; for anomaly
detection, Isolation Forest and the Local Outlier Factor.
Text columns enter as TF-IDF of character 1-3-grams (works for Chinese, which has no spaces)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor, IsolationForest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import OneHotEncoder

from ..data import Prepared
from .metrics import compute


def _design(data: Prepared, split: str, fitted: dict, fit: bool):
    enc = data.encoded[split]
    f = enc.features
    dense = []
    if "numeric" in f:
        dense.append(f["numeric"].numpy())
    for key in ("image", "audio", "sequence"):
        if key in f:
            dense.append(f[key].flatten(1).numpy())
    blocks = [sp.csr_matrix(np.concatenate(dense, 1))] if dense else []
    hgb = np.concatenate(dense + ([f["categorical"].numpy()] if "categorical" in f else []), 1) if dense or "categorical" in f else None
    if "categorical" in f:
        if fit:
            fitted["onehot"] = OneHotEncoder(handle_unknown="ignore").fit(f["categorical"].numpy())
        blocks.append(fitted["onehot"].transform(f["categorical"].numpy()))
    text_cols = list(data.preprocessor.tokenizers_)
    if text_cols:
        frame = data.frames[split].iloc[enc.rows]
        for col in text_cols:
            texts = frame[col].fillna("").astype(str)
            if fit:
                fitted[col] = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), min_df=2, max_features=50_000,
                                              sublinear_tf=True).fit(texts)
            blocks.append(fitted[col].transform(texts))
    return sp.hstack(blocks).tocsr(), hgb


def run_baselines(data: Prepared, split: str, metrics: list[str], outputs: dict | None = None,
                  train_outputs: dict | None = None) -> dict[str, dict]:
    """Fit each baseline on the training split and score it on `split`. Returns name -> metrics (+ fit_s and
    predict_s_per_1000); `outputs`, when given, receives each baseline's outputs on `split` (probabilities, or
    predictions in the target's units), for paired comparisons with the model; `train_outputs` (anomaly detection) the
    baselines' scores on the training rows, where their alert thresholds come from."""
    task = data.task
    fitted: dict = {}
    x_tr, h_tr = _design(data, "train", fitted, True)
    x_te, h_te = _design(data, split, fitted, False)
    y_tr, y_te = data.targets["train"].numpy(), data.targets[split].numpy()
    if task == "anomaly":
        return _anomaly_baselines(x_tr, x_te, y_te, metrics, outputs, train_outputs)
    clf = task == "classification"
    candidates = {"majority" if clf else "mean": (DummyClassifier(strategy="prior") if clf else DummyRegressor(), "sparse"),
                  "logistic_regression" if clf else "linear_regression":
                      (LogisticRegression(max_iter=2000, C=1.0) if clf else Ridge(alpha=1.0), "sparse")}
    if h_tr is not None and not data.preprocessor.tokenizers_:
        cat = list(range(h_tr.shape[1] - data.encoded["train"].features["categorical"].shape[1], h_tr.shape[1])) \
            if "categorical" in data.encoded["train"].features else None
        kw = {"categorical_features": cat} if cat else {}
        candidates["hist_gradient_boosting"] = (
            (HistGradientBoostingClassifier(random_state=0, **kw) if clf else HistGradientBoostingRegressor(random_state=0, **kw)), "dense")
    out = {}
    for name, (est, kind) in candidates.items():
        t = time.perf_counter()
        xa, xb = (x_tr, x_te) if kind == "sparse" else (h_tr, h_te)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(xa, y_tr)
            fit_s = time.perf_counter() - t
            t = time.perf_counter()
            raw = est.predict_proba(xb) if clf else est.predict(xb)
            predict_s = time.perf_counter() - t  # the fitted estimator on features ready; as the model is timed
            if clf:
                proba = np.zeros((xb.shape[0], len(data.preprocessor.classes_)))
                proba[:, est.classes_.astype(int)] = raw
                result = compute(task, y_te, proba, metrics)
                kept = proba
            else:
                pre = data.preprocessor
                kept = pre.decode_regression(raw)
                result = compute(task, pre.decode_regression(y_te), kept, metrics)
        if outputs is not None:
            outputs[name] = kept
        out[name] = {**result, "fit_s": round(fit_s, 3),
                     "predict_s_per_1000": round(predict_s / max(xb.shape[0], 1) * 1000, 6)}
    return out



def _anomaly_baselines(x_tr, x_te, y_te, metrics: list[str], outputs: dict | None, train_outputs: dict | None
                       ) -> dict[str, dict]:
    """The classic unsupervised detectors on the same inputs, fitted on the training rows without labels (as the model
    is): Isolation Forest and the Local Outlier Factor (novelty mode: it scores rows it was not fitted on). Their
    anomaly score is the negated `score_samples` (higher = stranger)."""
    n = x_tr.shape[0]
    candidates = {"isolation_forest": IsolationForest(n_estimators=200, random_state=0),
                  "local_outlier_factor": LocalOutlierFactor(n_neighbors=min(20, max(1, n - 1)), novelty=True)}
    out = {}
    for name, est in candidates.items():
        t = time.perf_counter()
        est.fit(x_tr)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        score = -est.score_samples(x_te)
        predict_s = time.perf_counter() - t
        if outputs is not None:
            outputs[name] = score
        if train_outputs is not None:
            train_outputs[name] = -est.score_samples(x_tr)
        out[name] = {**compute("anomaly", y_te, score, metrics), "fit_s": round(fit_s, 3),
                     "predict_s_per_1000": round(predict_s / max(x_te.shape[0], 1) * 1000, 6)}
    return out
