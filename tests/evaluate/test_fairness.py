"""Fairness: per-group metrics and parity numbers equal fairlearn's own; numeric columns banded; small groups listed
and left out; ThresholdOptimizer's rule saved as JSON equals fairlearn's decision function, narrows the parity gap,
and Predictor and serve apply it; bad input is refused before training with the columns named."""

import json

import numpy as np
import pandas as pd
import pytest

from modelfoundry.api import train
from modelfoundry.config import load_config
from modelfoundry.core.schema import ConfigError
from modelfoundry.data import DataError
from modelfoundry.evaluate.config import FairnessConfig
from modelfoundry.evaluate.fairness import (
    _score_estimator,
    band_edges,
    combined,
    fit_thresholds,
    group_labels,
    group_metrics,
    positive_probability,
)
from modelfoundry.predictor import Predictor

from ..conftest import regression_frame, tiny_config


def biased_frame(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Loan decisions where group B is approved less often at the same merit, and age matters a little."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["A", "B"], size=n, p=[0.6, 0.4])
    age = rng.integers(18, 70, size=n)
    merit = rng.normal(size=n)
    logit = 1.5 * merit + np.where(group == "A", 0.8, -0.8) + 0.01 * (age - 40)
    return pd.DataFrame({"merit": merit.round(4), "income": (merit + rng.normal(size=n)).round(4), "group": group,
                         "age": age, "approved": np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")})


def test_group_metrics_equal_fairlearn():
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_ratio

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    out = rng.dirichlet([1, 1], 300)
    g = pd.Series(rng.choice(["a", "b", "c"], 300))
    m = group_metrics("classification", y, out, g, positive=1, min_size=1)
    pred = out.argmax(1)
    assert m["demographic_parity_difference"] == round(demographic_parity_difference(y, pred, sensitive_features=g), 4)
    assert m["equalized_odds_ratio"] == round(equalized_odds_ratio(y, pred, sensitive_features=g), 4)
    rates = {r["group"]: r["selection_rate"] for r in m["groups"]}
    assert rates["a"] == round(pred[g == "a"].mean(), 4)
    # a group below min_group_size is listed, and the differences are over the others
    g2 = g.where(g != "c", "c").copy()
    g2.iloc[:5] = "tiny"
    m2 = group_metrics("classification", y, out, g2, positive=1, min_size=10)
    assert m2["small_groups"] == ["tiny"] and "tiny" in {r["group"] for r in m2["groups"]}
    keep = (g2 != "tiny").to_numpy()
    assert m2["demographic_parity_difference"] == round(
        demographic_parity_difference(y[keep], pred[keep], sensitive_features=g2[keep]), 4)
    assert "note" in group_metrics("classification", y, out, g2, positive=1, min_size=200)  # < 2 groups left


def test_bands_and_recoding():
    cfg = FairnessConfig(sensitive=["age", "status", "flag"], bins={"age": [25, 60]}, groups={"status": {"A92": "female"}})
    df = pd.DataFrame({"age": [19, 25, 40, 61, np.nan], "status": ["A92", "A93", "A92", None, "A93"], "flag": [0, 1, 0, 1, 0]})
    edges = band_edges(cfg, df)
    assert edges == {"age": [25.0, 60.0]}  # flag: few values, kept as groups
    labels = group_labels(df, cfg.sensitive, cfg.groups, edges)
    assert list(labels["age"]) == ["<25", "25-60", "25-60", ">=60", "missing"]
    assert list(labels["status"]) == ["female", "A93", "female", "missing", "A93"]
    assert combined(labels).iloc[0] == "<25 · female · 0"
    # a 0/1 column read as floats (1.0) is grouped as the config writes it
    floats = pd.DataFrame({"sex": [1.0, 0.0, 1.0, np.nan]})
    assert list(group_labels(floats, ["sex"], {"sex": {"0": "female", "1": "male"}}, {})["sex"]) == \
        ["male", "female", "male", "missing"]
    assert list(group_labels(floats, ["sex"], {}, {})["sex"]) == ["1", "0", "1", "missing"]
    q = band_edges(FairnessConfig(sensitive=["x"], quantiles=4), pd.DataFrame({"x": np.arange(100.0)}))
    assert q["x"] == pytest.approx([24.75, 49.5, 74.25])


@pytest.mark.parametrize("objective", ["accuracy_score", "balanced_accuracy_score"])
def test_saved_rule_equals_fairlearn_decisions(objective):
    from fairlearn.postprocessing import ThresholdOptimizer

    rng = np.random.default_rng(0)
    g = rng.choice(["a", "b"], 600)
    y = (rng.random(600) < np.where(g == "a", 0.6, 0.3)).astype(int)
    score = np.clip(0.3 * y + 0.7 * rng.random(600) + 0.1 * (g == "a"), 0, 1)
    cfg = FairnessConfig(sensitive=["g"], mitigate="threshold_optimizer", objective=objective)
    rules = fit_thresholds(score, y, pd.Series(g), cfg, seed=0)
    ref = ThresholdOptimizer(estimator=_score_estimator(), constraints="equalized_odds", prefit=True, objective=objective,
                             predict_method="predict").fit(score.reshape(-1, 1), y, sensitive_features=g)
    want = ref._pmf_predict(score.reshape(-1, 1), sensitive_features=g)[:, 1]
    assert positive_probability(json.loads(json.dumps(rules)), score, pd.Series(g)) == pytest.approx(want)


@pytest.fixture(scope="module")
def mitigated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fair")
    biased_frame().to_csv(tmp / "loans.csv", index=False)
    cfg = tiny_config(tmp, {"path": str(tmp / "loans.csv"), "target": "approved",
                            "split": {"test": 0.3, "val": 0.3}}, train={"epochs": 15})
    cfg["evaluate"]["fairness"] = {"sensitive": ["group", "age"], "quantiles": 2, "positive": "yes",
                                   "mitigate": "threshold_optimizer", "constraint": "demographic_parity",
                                   "min_group_size": 30}
    return train(load_config(cfg)), tmp


def test_mitigation_narrows_the_gap_and_is_applied_by_the_predictor(mitigated):
    run, tmp = mitigated
    f = json.loads((run.path / "metrics.json").read_text())["fairness"]
    assert f["positive"] == "yes" and f["bands"]["age"] and {"group", "age"} == set(f["columns"])
    assert {r["group"] for r in f["groups"]} >= {"A · <43", "B · >=43"} or len(f["groups"]) == 4
    table = {r["metric"]: r for r in f["mitigation"]["table"]}
    dp = table["demographic_parity_difference"]
    assert dp["before"] > 0.25 and dp["after"] < dp["before"] / 2, table
    assert f["mitigation"]["fit_on"] == "val"
    rule = json.loads((run.path / "model" / "fairness.json").read_text())
    assert rule["constraint"] == "demographic_parity" and set(rule["rules"]) == {r["group"] for r in f["groups"]}
    rows = biased_frame(200, seed=5).drop(columns=["approved"])
    pred = Predictor.load(run.path)
    out = pred.predict(rows)
    assert {"prediction", "model_prediction", "fair_positive_probability"} <= set(out.columns)
    assert (out["prediction"] != out["model_prediction"]).any()
    # group B is approved more often under the rule than by the model alone
    b = rows["group"] == "B"
    assert (out.loc[b, "prediction"] == "yes").mean() > (out.loc[b, "model_prediction"] == "yes").mean()
    # the same row gets the same decision in any batch and any order, records or frame
    again = pred.predict(rows.iloc[::-1].to_dict("records"))
    assert list(again["prediction"])[::-1] == list(out["prediction"])
    with pytest.raises(DataError, match=r"missing column\(s\) the model needs: group"):
        pred.predict(rows.drop(columns=["group"]))


def test_serve_answers_with_the_fair_label(mitigated):
    from fastapi.testclient import TestClient

    from modelfoundry.serve import create_app, load_models

    run, _ = mitigated
    rows = biased_frame(20, seed=6).drop(columns=["approved"]).to_dict("records")
    with TestClient(create_app(load_models([run.path]))) as client:
        answers = client.post("/v1/predict", json=rows).json()["predictions"]
    want = Predictor.load(run.path).predict(rows)
    assert [a["label"] for a in answers] == list(want["prediction"])
    assert [a["model_label"] for a in answers] == list(want["model_prediction"])


def test_audit_only_columns_are_not_model_inputs(tmp_path):
    biased_frame(400).to_csv(tmp_path / "loans.csv", index=False)
    cfg = tiny_config(tmp_path, {"path": str(tmp_path / "loans.csv"), "target": "approved"})
    cfg["evaluate"]["fairness"] = {"sensitive": ["group"], "use_as_feature": False, "mitigate": "threshold_optimizer"}
    run = train(load_config(cfg))
    pre = json.loads((run.path / "model" / "preprocessor.json").read_text())
    assert pre["schema"]["group"] == "ignore" and pre["schema"]["merit"] == "numeric"
    f = json.loads((run.path / "metrics.json").read_text())["fairness"]
    assert {r["group"] for r in f["groups"]} == {"A", "B"}
    rows = biased_frame(10, seed=3).drop(columns=["approved"])
    assert Predictor.load(run.path).predict(rows)["prediction"].notna().all()
    with pytest.raises(DataError, match="every row needs group; missing group"):  # not an input, but the rule needs it
        Predictor.load(run.path).predict(rows.drop(columns=["group"]))
    cfg["data"]["types"] = {"group": "categorical"}
    with pytest.raises(ConfigError, match="use_as_feature is false but data.types makes group an input"):
        load_config(cfg)


def test_regression_gets_the_metrics_that_apply(tmp_path):
    df = regression_frame(300)
    df["region"] = np.where(df["a"] > 0, "north", "south")
    df.to_csv(tmp_path / "r.csv", index=False)
    cfg = tiny_config(tmp_path, {"path": str(tmp_path / "r.csv"), "target": "y"})
    cfg["evaluate"]["fairness"] = {"sensitive": ["region"], "min_group_size": 5}
    f = json.loads((train(load_config(cfg)).path / "metrics.json").read_text())["fairness"]
    assert {"mae", "rmse", "mean_prediction"} <= set(f["groups"][0]) and "mae_difference" in f
    assert "demographic_parity_difference" not in f
    cfg["evaluate"]["fairness"]["mitigate"] = "threshold_optimizer"
    with pytest.raises(ValueError, match="needs a binary classification target; this one is a regression target"):
        train(load_config(cfg))


def test_bad_fairness_input_is_refused_before_training(tmp_path):
    biased_frame(100).to_csv(tmp_path / "loans.csv", index=False)
    cfg = tiny_config(tmp_path, {"path": str(tmp_path / "loans.csv"), "target": "approved"})
    cfg["evaluate"]["fairness"] = {"sensitive": ["sex", "group"]}
    with pytest.raises(ValueError, match=r"no column 'sex' in .*loans.csv; its columns are merit, income, group, age"):
        train(load_config(cfg))
    assert not list((tmp_path / "runs").rglob("weights.safetensors"))  # refused before any training
    cfg["evaluate"]["fairness"] = {"sensitive": ["group"], "positive": "maybe"}
    with pytest.raises(ValueError, match="'maybe' is not a class of this target; the classes are no, yes"):
        train(load_config(cfg))
    for bad, msg in (({"sensitive": ["approved"]}, "is the target"),
                     ({"sensitive": ["group"], "bins": {"age": [30]}}, "bins/groups name age, not in sensitive")):
        cfg["evaluate"]["fairness"] = bad
        with pytest.raises(ConfigError, match=msg):
            load_config(cfg)


def test_a_compressed_variant_keeps_the_rule(mitigated):
    from modelfoundry.api import compress
    from modelfoundry.compress.config import CompressConfig

    run, _ = mitigated
    variant = compress(run.path, CompressConfig(quantize="none", parity_rows=20))
    assert (variant.path / "model" / "fairness.json").read_text() == (run.path / "model" / "fairness.json").read_text()
    rows = biased_frame(100, seed=7).drop(columns=["approved"])
    got, want = Predictor.load(variant.path).predict(rows), Predictor.load(run.path).predict(rows)
    assert "model_prediction" in got.columns
    assert (got["prediction"] == want["prediction"]).mean() >= 0.95  # ONNX scores agree to ~1e-6


@pytest.mark.slow
def test_reweighing_weights_the_loss_and_narrows_the_gap(tmp_path):
    from modelfoundry.evaluate.fairness import reweighing

    frame = pd.DataFrame({"g": ["a"] * 6 + ["b"] * 4})
    y = np.array([1, 1, 1, 1, 0, 0, 1, 0, 0, 0])
    w, table = reweighing(FairnessConfig(sensitive=["g"]), frame, y)
    # P(a) P(1) / P(a, 1) = 0.6 * 0.5 / 0.4
    assert w[0] == pytest.approx(0.75) and {r["group"] for r in table} == {"a", "b"}
    assert (w * (frame["g"] == "a")).sum() / 6 == pytest.approx(1.0)  # each group keeps its total weight
    biased_frame(1000).to_csv(tmp_path / "loans.csv", index=False)
    cfg = tiny_config(tmp_path, {"path": str(tmp_path / "loans.csv"), "target": "approved",
                                 "split": {"test": 0.3}}, train={"epochs": 15})
    gaps = {}
    for how in ("none", "reweigh"):
        cfg["evaluate"]["fairness"] = {"sensitive": ["group"], "positive": "yes", "mitigate": how}
        f = json.loads((train(load_config(cfg)).path / "metrics.json").read_text())["fairness"]
        gaps[how] = f["demographic_parity_difference"]
    assert f["mitigation"]["method"] == "reweigh" and len(f["mitigation"]["weights"]) == 4
    assert gaps["reweigh"] < gaps["none"] - 0.05, gaps
    cfg["data"]["augment"] = {"oversample": "smote"}
    with pytest.raises(ConfigError, match="reweigh weights the training rows; data.augment.oversample"):
        load_config(cfg)
