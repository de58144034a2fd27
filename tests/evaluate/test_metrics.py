import numpy as np
import pytest
from sklearn import metrics as skm

from modelfoundry.evaluate import metrics as M


def test_binary_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(y * 0.6 + rng.random(200) * 0.5, 0, 1)
    proba = np.c_[1 - p1, p1]
    m = M.classification_metrics(y, proba)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p1 > 0.5), abs=1e-6)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1), abs=1e-6)
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, p1), abs=1e-6)
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, p1 > 0.5, average="macro"), abs=1e-6)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba), abs=1e-5)
    assert set(m) == set(M.CLASSIFICATION)


def test_multiclass_with_a_class_absent_from_the_split():
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    m = M.classification_metrics(y, proba)
    assert m["accuracy"] == 1.0 and m["roc_auc"] == 1.0


def test_regression_metrics():
    y = np.array([1.0, 2.0, 3.0])
    m = M.regression_metrics(y, np.array([1.0, 2.0, 4.0]))
    assert m == {"mae": pytest.approx(1 / 3, abs=1e-6), "rmse": pytest.approx(np.sqrt(1 / 3), abs=1e-6),
                 "r2": pytest.approx(0.5, abs=1e-6), "qwk": 1.0}  # graded: 4 is clipped to the top grade, 3


def test_metric_names_and_aliases():
    assert M.canonical(["f1", "auc", "accuracy"], "classification") == ["f1_macro", "roc_auc", "accuracy"]
    with pytest.raises(ValueError, match="'rmse' is not a classification metric"):
        M.canonical(["rmse"], "classification")


@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize("seed", range(6))
def test_every_classification_metric_equals_scikit_learn(k, seed):
    """Our direct computation against scikit-learn's own functions: random labels (some classes missing),
    random probabilities with ties (rounded), confident and useless models."""
    from sklearn import metrics as skm

    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.integers(0, k, n)
    if k > 2 and seed % 2:
        y[y == k - 1] = 0  # a class absent from the split
    logits = rng.normal(size=(n, k)) + (3 * np.eye(k)[y] if seed % 3 else 0)
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    proba = np.round(proba, 2 if seed < 3 else 6)  # ties
    proba = proba / proba.sum(1, keepdims=True)
    ours = M.classification_metrics(y, proba)
    pred = proba.argmax(1)
    labels = np.arange(k)
    ref = {"accuracy": skm.accuracy_score(y, pred), "log_loss": skm.log_loss(y, np.clip(proba, 1e-7, 1), labels=labels)}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref["balanced_accuracy"] = skm.balanced_accuracy_score(y, pred)
    for fn, f in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        for avg in ("macro", "weighted"):
            ref[f"{fn}_{avg}"] = f(y, pred, average=avg, labels=labels, zero_division=0)
    present = np.unique(y)
    if len(present) >= 2:
        if k == 2:
            ref["roc_auc"], ref["pr_auc"] = skm.roc_auc_score(y, proba[:, 1]), skm.average_precision_score(y, proba[:, 1])
        else:
            onehot = np.eye(k)[y][:, present]
            ref["roc_auc"] = skm.roc_auc_score(onehot, proba[:, present], average="macro")
            ref["pr_auc"] = skm.average_precision_score(onehot, proba[:, present], average="macro")
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, abs=2e-6), name


def test_metrics_are_a_registry_that_config_validation_reads():
    """Each metric is one register_metric line: its name is valid for evaluate.metrics and early stopping, and
    which way it improves comes from its registration."""
    from modelfoundry.evaluate.metrics import METRICS, metric_mode, register_metric, reported_metric
    from modelfoundry.evaluate.recommend import KS

    ranking = {("recommend", f"{m}@{k}") for m in ("ndcg", "recall", "hit_rate") for k in KS} | {("recommend", "rmse")}
    assert {("classification", n) for n in M.CLASSIFICATION} | {("regression", n) for n in M.REGRESSION} | \
        {("anomaly", n) for n in M.ANOMALY} | {("forecast", "mase")} | ranking == set(METRICS)
    assert reported_metric("ndcg@10", ("val_",)) == "val_ndcg@10"  # validation ranks the catalogue at K = 10
    with pytest.raises(ValueError, match="not a metric runs report"):  # other cut-offs: at evaluation only
        reported_metric("val_ndcg@5", ("val_",))
    for (task, name), m in METRICS.items():
        if task == "recommend":
            continue
        assert reported_metric(name, ("val_",)) == f"val_{name}"
        assert metric_mode(f"val_{name}") == ("min" if m.lower_is_better else "max")
    assert metric_mode("val_log_loss") == "min" and metric_mode("val_rmse") == "min" and metric_mode("val_r2") == "max"
    with pytest.raises(ValueError, match="already registered"):
        register_metric("accuracy", "classification", lambda c: 0.0)


def test_quadratic_weighted_kappa_scores_whole_grades_only():
    from modelfoundry.evaluate.metrics import METRICS, Residuals

    qwk = METRICS[("regression", "qwk")].score
    grades = np.array([0, 5, 10, 12, 15, 20, 8, 11], dtype=float)
    assert qwk(Residuals(grades, grades + 0.3)) == pytest.approx(1.0)  # rounds to the same grades
    near, far = qwk(Residuals(grades, grades + 1.0)), qwk(Residuals(grades, 20 - grades))
    assert 0.8 < near < 1.0 and far < 0  # one grade off agrees; reversed disagrees
    assert qwk(Residuals(grades + 0.37, grades)) is None  # not whole grades (a standardised validation target)
