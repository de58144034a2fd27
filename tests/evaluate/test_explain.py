"""Explanations: permutation importance ranks the columns a model uses above noise; SHAP per column sums to the
prediction and is faithful (a deletion test: removing the top-attributed column moves the prediction more than a
random one); Integrated Gradients per token likewise for text, on our transformer and a Hugging Face BERT; foundry
explain and /v1/explain answer one explanation per row; an ONNX variant is refused with its source named."""

import json

import numpy as np
import pandas as pd
import pytest

from modelfoundry.api import compress, train
from modelfoundry.cli import main
from modelfoundry.compress.config import CompressConfig
from modelfoundry.config import load_config
from modelfoundry.evaluate.explain import (
    Scorer,
    column_deletion,
    deletion_test,
    integrated_gradients,
    ordinary,
    token_deletion,
)
from modelfoundry.predictor import Predictor

from ..conftest import SAMPLE, tabular_frame, tiny_config


def noisy_table(n: int = 600) -> pd.DataFrame:
    df = tabular_frame(n)
    df["noise"] = np.random.default_rng(1).normal(size=n).round(3)
    return df


pytestmark = pytest.mark.slow  # each test trains or explains for seconds; the fast tier leaves them out

@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("explain")
    noisy_table().to_csv(d / "t.csv", index=False)
    cfg = tiny_config(d, {"path": str(d / "t.csv"), "target": "label"}, train={"epochs": 20},
                      evaluate={"explain": {"shap_rows": 20, "background_rows": 50}})
    return d, train(load_config(cfg))


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("explain-text")
    cfg = tiny_config(d, {"path": str(SAMPLE), "target": "category"}, model={"type": "transformer"},
                      train={"epochs": 15, "lr": 3e-3})
    return d, train(load_config(cfg))


def test_run_metrics_rank_the_columns_the_model_uses(table_run):
    _, run = table_run
    ex = json.loads((run.path / "metrics.json").read_text())["explanations"]
    order = [r["column"] for r in ex["importance"]]
    assert order[0] == "x1" and order[-1] == "noise" and ex["importance_metric"] == "accuracy"
    assert list(ex["mean_abs_shap"])[0] == "x1" and list(ex["mean_abs_shap"])[-1] == "noise"
    assert len(json.loads((run.path / "explain_background.json").read_text())) == 50


def test_importance_sample_and_repeats_follow_the_config(table_run, tmp_path):
    from modelfoundry.data import prepare
    from modelfoundry.evaluate.config import ExplainConfig
    from modelfoundry.evaluate.explain import explain_run

    d, run = table_run
    cfg = load_config(tiny_config(d, {"path": str(d / "t.csv"), "target": "label"}))
    data = prepare(cfg)
    pred = Predictor.load(run.path)
    y = data.targets["test"].numpy()
    ex = explain_run(ExplainConfig(max_rows=10, repeats=1, background_rows=0), data, pred.model, "test", y, tmp_path, 0)
    assert ex["importance_rows"] == 10 and all(r["std"] == 0 for r in ex["importance"])  # one shuffle: no spread
    ex = explain_run(ExplainConfig(max_rows=10, repeats=4, background_rows=0), data, pred.model, "test", y, tmp_path, 0)
    assert any(r["std"] > 0 for r in ex["importance"])


def test_tabular_shap_adds_up_and_is_faithful(table_run):
    _, run = table_run
    pred = Predictor.load(run.path)
    rows = noisy_table(640).iloc[600:].drop(columns=["label"])
    items = pred.explain(rows)
    assert len(items) == len(rows) and set(items[0]["attributions"]) == {"x1", "x2", "colour", "noise"}
    for it in items:  # SHAP's efficiency: base value + attributions = the explained output
        assert it["base_value"] + sum(it["attributions"].values()) == pytest.approx(it["output"], abs=1e-5)
    assert [it["prediction"] for it in items] == list(pred.predict(rows)["prediction"])
    scorer = Scorer(pred.model, pred.preprocessor, pred.task)
    targets = [[str(c) for c in pred.classes].index(it["explained"]) for it in items]
    background = pd.DataFrame(json.loads((run.path / "explain_background.json").read_text()))
    attributions = [np.array(list(it["attributions"].values())) for it in items]
    result = deletion_test(column_deletion(scorer, rows, background, targets), attributions, k=1)
    assert result["drop_top_k"] > result["drop_random_k"] + 0.05, result


@pytest.mark.parametrize("model", ["ours", pytest.param("hf_bert", marks=pytest.mark.slow)])
def test_token_attributions_are_faithful(text_run, tiny_bert, tmp_path, model):
    if model == "ours":
        run = text_run[1]
        assert "importance" not in json.loads((run.path / "metrics.json").read_text())["explanations"]  # one input
    else:
        cfg = tiny_config(tmp_path, {"path": str(SAMPLE), "target": "category"}, train={"epochs": 8, "lr": 5e-3},
                          model={"type": "pretrained", "path": str(tiny_bert), "finetune": "full", "hidden": [16]})
        run = train(load_config(cfg))
    pred = Predictor.load(run.path)
    rows = pd.read_csv(SAMPLE).drop(columns=["category"]).iloc[:30]
    items = pred.explain(rows)
    assert len(items) == 30 and len(items[0]["tokens"]) == len(items[0]["attributions"])
    for it in items:  # special tokens ([CLS], [SEP]) stay in the reference: they carry no attribution
        assert all(a == 0 for a, sp in zip(it["attributions"], it["special"]) if sp)
    # Integrated Gradients' completeness: attributions sum to f(text) - f(reference)
    assert max(it["convergence_delta"] for it in items) <= 0.01
    scorer = Scorer(pred.model, pred.preprocessor, pred.task)
    targets = [[str(c) for c in pred.classes].index(it["explained"]) for it in items]
    raw = integrated_gradients(scorer, rows)
    result = deletion_test(token_deletion(scorer, rows, targets, raw), ordinary(raw), k=3)
    assert result["drop_top_k"] > result["drop_random_k"], result


def test_foundry_explain_writes_one_row_per_input(table_run, text_run, tmp_path):
    d, run = table_run
    rows = noisy_table(610).iloc[600:].drop(columns=["label"])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    assert main(["explain", str(run.path), str(tmp_path / "rows.csv"), "-o", str(tmp_path / "tab")]) == 0
    table = pd.read_csv(tmp_path / "tab" / "explanations.csv")
    assert len(table) == 10 and {"prediction", "base_value", "shap_x1", "shap_noise"} <= set(table.columns)
    texts = pd.read_csv(SAMPLE).drop(columns=["category"]).iloc[:4]
    texts.to_csv(tmp_path / "texts.csv", index=False)
    assert main(["explain", str(text_run[1].path), str(tmp_path / "texts.csv"), "-o", str(tmp_path / "txt")]) == 0
    lines = (tmp_path / "txt" / "explanations.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and "tokens" in json.loads(lines[0])
    assert "rgba(" in (tmp_path / "txt" / "explanations.html").read_text(encoding="utf-8")


def test_serve_explains_behind_the_same_key(table_run):
    from fastapi.testclient import TestClient

    from modelfoundry.serve import ServeSettings, create_app, load_models

    _, run = table_run
    rows = noisy_table(603).iloc[600:].drop(columns=["label"]).to_dict("records")
    app = create_app(load_models([run.path]), ServeSettings(api_keys={"k" * 24}, max_explain_rows=3))
    with TestClient(app) as client:
        assert client.post("/v1/explain", json=rows).status_code == 401
        r = client.post("/v1/explain", json=rows, headers={"X-API-Key": "k" * 24})
        assert r.status_code == 200 and len(r.json()["explanations"]) == 3
        assert set(r.json()["explanations"][0]["attributions"]) == {"x1", "x2", "colour", "noise"}
        r = client.post("/v1/explain", json=rows + rows[:1], headers={"X-API-Key": "k" * 24})
        assert r.status_code == 413


def test_bad_explain_requests_are_refused_clearly(table_run, tmp_path):
    d, run = table_run
    variant = compress(run.path, CompressConfig(quantize="int8", parity_rows=20))
    with pytest.raises(ValueError, match=f"this is an ONNX model. Explain its source run: `foundry explain {run.path}"):
        Predictor.load(variant.path).explain(noisy_table(5).drop(columns=["label"]))
    noisy_table().to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(tmp_path, {"path": str(tmp_path / "t.csv"), "target": "label"},
                      evaluate={"explain": {"background_rows": 0, "importance": False}})
    bare = train(load_config(cfg))
    assert not (bare.path / "explain_background.json").exists()
    assert "explanations" not in json.loads((bare.path / "metrics.json").read_text())
    rows = noisy_table(5).drop(columns=["label"])
    with pytest.raises(ValueError, match="keeps no background rows"):
        Predictor.load(bare.path).explain(rows)
    assert len(Predictor.load(bare.path).explain(rows, background=noisy_table(100))) == 5


def test_pixel_attributions_are_faithful_and_written_as_heat_maps(tmp_path):
    from sklearn.datasets import load_digits

    from modelfoundry.data import from_arrays
    from modelfoundry.evaluate.explain import pixel_attributions, pixel_deletion

    d = load_digits()
    cfg = tiny_config(tmp_path, {"target": "label", "image": {"size": [8, 8], "channels": 1}},
                      model={"type": "cnn", "channels": [16, 32], "hidden": [32]},
                      train={"epochs": 20, "early_stopping": None})
    run = train(load_config(cfg), frame=from_arrays(d.images[:400], d.target[:400]))
    pred = Predictor.load(run.path)
    rows = from_arrays(d.images[400:440])
    items = pred.explain(rows)
    assert len(items) == 40 and np.asarray(items[0]["attributions"]).shape == (8, 8)
    assert [it["prediction"] for it in items] == list(pred.predict(rows)["prediction"])
    assert max(it["convergence_delta"] for it in items) <= 0.01
    scorer = Scorer(pred.model, pred.preprocessor, pred.task)
    raw = pixel_attributions(scorer, rows)
    targets = [it["target"] for it in raw]
    result = deletion_test(pixel_deletion(scorer, rows, targets), [np.asarray(it["attributions"]).ravel() for it in raw],
                           k=8)
    assert result["drop_top_k"] > result["drop_random_k"], result
    rows.iloc[:3].to_json(tmp_path / "imgs.jsonl", orient="records", lines=True)
    assert main(["explain", str(run.path), str(tmp_path / "imgs.jsonl"), "-o", str(tmp_path / "px")]) == 0
    assert len((tmp_path / "px" / "explanations.jsonl").read_text().splitlines()) == 3
    assert (tmp_path / "px" / "explanations.html").read_text().count("data:image/png;base64") == 3
