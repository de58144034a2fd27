"""model.backend: keras through the whole recipe: a config trains, evaluates and predicts as a torch run does, resumes
exactly, maps the train options (schedule, class weights, max_steps, accumulation), and refuses what it cannot do."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from modelfoundry import resume
from modelfoundry.config import load_config
from modelfoundry.core.runs import Run
from modelfoundry.models.keras_zoo import keras_runtime
from modelfoundry.predictor import Predictor
from modelfoundry.train import train
from modelfoundry.train.optim import build_schedule

from ..conftest import SAMPLE, cli_env, regression_frame, tabular_frame, tiny_config, write_yaml

KERAS_MLP = {"type": "mlp", "backend": "keras", "hidden": [16], "dropout": 0.1}


def _table(tmp_path, n=240):
    tabular_frame(n).to_csv(tmp_path / "t.csv", index=False)
    return {"path": str(tmp_path / "t.csv"), "target": "label"}


def test_a_keras_run_trains_evaluates_predicts_like_a_torch_run(tmp_path):
    data = _table(tmp_path)
    run = train(load_config(tiny_config(tmp_path, data, KERAS_MLP, train={"epochs": 6}, name="keras")))
    model_dir = run.path / "model"
    assert (model_dir / "model.keras").is_file() and not (model_dir / "weights.safetensors").exists()
    arch = json.loads((model_dir / "architecture.json").read_text())
    assert arch["keras"]["backend"] == "tensorflow" and arch["keras"]["inputs"] == {"numeric": "numeric",
                                                                                  "categorical": "categorical"}
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.75  # the label depends on x1, x2, colour: it learned
    history = [json.loads(line) for line in (run.path / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1)) and "val_f1_macro" in history[0]
    manifest = run.manifest()
    assert manifest["status"] == "complete" and manifest["parameters"] > 0
    card = yaml.safe_load((run.path / "MODEL_CARD.md").read_text().split("---")[1])
    assert card["tags"][-2:] == ["keras", "tensorflow"] and "pytorch" not in card["tags"]
    assert metrics["cost"]["inference_flops_per_example"] > 0 and "TensorFlow's profiler" in metrics["cost"]["basis"]
    pred = Predictor.load(run.path)
    rows = tabular_frame(20, seed=3).drop(columns="label")
    out = pred.predict(rows)
    assert len(out) == 20 and set(out["prediction"]) <= {"yes", "no"}
    assert np.allclose(out[["prob_no", "prob_yes"]].sum(axis=1), 1, atol=1e-5)
    # the loaded model is the trained one: same outputs as a reload in a fresh Predictor
    again = Predictor.load(run.path).predict(rows)
    assert np.allclose(out["prob_yes"], again["prob_yes"], atol=1e-6)


@pytest.mark.slow
def test_a_keras_text_cnn_and_a_regression_rnn_train(tmp_path):
    text = train(load_config(tiny_config(tmp_path, {"path": str(SAMPLE), "target": "category",
                                                    "text": {"vocab_size": 300, "min_frequency": 1}},
                                         {"type": "cnn", "backend": "keras", "channels": [16], "hidden": [16]},
                                         train={"epochs": 4, "lr": 5e-3}, name="intents")))
    assert json.loads((text.path / "metrics.json").read_text())["test"]["accuracy"] > 0.5  # 10 classes
    regression_frame().to_csv(tmp_path / "r.csv", index=False)
    reg = train(load_config(tiny_config(tmp_path, {"path": str(tmp_path / "r.csv"), "target": "y"},
                                        {"type": "transformer", "backend": "keras", "hidden_size": 16, "num_heads": 2,
                                         "intermediate_size": 32, "num_layers": 1}, train={"epochs": 8}, name="reg")))
    m = json.loads((reg.path / "metrics.json").read_text())["test"]
    assert m["r2"] > 0.5
    out = Predictor.load(reg.path).predict(regression_frame(5, seed=9).drop(columns="y"))
    assert out["prediction"].dtype.kind == "f"


@pytest.mark.slow
def test_a_resumed_keras_run_matches_an_uninterrupted_one(tmp_path):
    data = _table(tmp_path)

    def cfg(out):
        return load_config(tiny_config(tmp_path, data, KERAS_MLP, name="k",
                                       train={"epochs": 5, "early_stopping": None, "schedule": "cosine",
                                              "warmup_ratio": 0.2})
                           | {"output_dir": str(tmp_path / out)})

    ref = train(cfg("ref"))

    def stop_at_2(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg("cut"), on_epoch=stop_at_2)
    run_dir = next((tmp_path / "cut" / "k").iterdir())
    assert Run.open(run_dir).status == "interrupted"
    assert (run_dir / "checkpoints" / "last.json").is_file()
    resumed = resume(run_dir)
    a = json.loads((ref.path / "metrics.json").read_text())["test"]
    b = json.loads((resumed.path / "metrics.json").read_text())["test"]
    assert a == pytest.approx(b, abs=1e-6)
    ha = [json.loads(x) for x in (ref.path / "history.jsonl").read_text().splitlines()]
    hb = [json.loads(x) for x in (resumed.path / "history.jsonl").read_text().splitlines()]
    assert [h["train_loss"] for h in ha] == pytest.approx([h["train_loss"] for h in hb], abs=1e-6)


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_the_keras_schedule_is_the_torch_loops_schedule(kind):
    keras = keras_runtime("tensorflow")
    from modelfoundry.config import load_config as lc

    cfg = lc({"name": "s", "data": {"path": "x.csv", "target": "y"},
              "train": {"lr": 0.01, "schedule": kind, "warmup_ratio": 0.25}}).train
    total = 40
    torch_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_schedule(torch_opt, cfg, total)
    want = []
    for _ in range(total):
        want.append(torch_opt.param_groups[0]["lr"])
        torch_opt.step()
        sched.step()
    ours = keras.saving.get_registered_object("modelfoundry>StepSchedule")(cfg.lr, int(0.25 * total), total, kind)
    got = [float(keras.ops.convert_to_numpy(ours(step))) for step in range(total)]
    assert got == pytest.approx(want, rel=1e-5, abs=1e-9)


@pytest.mark.slow
def test_train_options_reach_keras(tmp_path):
    """class_weights, max_steps, grad_accum, plateau and sgd each change what Keras does (each compared with a run
    without it)."""
    data = _table(tmp_path, n=200)
    base = {"epochs": 3, "early_stopping": None, "batch_size": 16}

    def run(name, **train_opts):
        r = train(load_config(tiny_config(tmp_path, data, {**KERAS_MLP, "dropout": 0.0}, name=name,
                                          train={**base, **train_opts})))
        return r, [json.loads(x) for x in (r.path / "history.jsonl").read_text().splitlines()]

    _, plain = run("plain")
    _, balanced = run("balanced", class_weights="balanced")
    assert balanced[0]["train_loss"] != pytest.approx(plain[0]["train_loss"], abs=1e-4)
    capped, hist = run("capped", max_steps=5)
    assert len(hist) == 1 and capped.manifest()["epochs_run"] == 1  # 5 steps end the first epoch's training
    _, accum = run("accum", grad_accum=4, schedule="linear")
    # the linear schedule counts optimizer steps (4 batches each): about a third of the way down after one of three
    # epochs (counting batches instead, it would be at 0 already)
    assert 0.005 < accum[0]["lr"] < 0.0095
    assert accum[0]["train_loss"] != pytest.approx(plain[0]["train_loss"], abs=1e-4)  # 4x fewer updates
    _, plateau = run("plateau", schedule="plateau", plateau_patience=1, plateau_factor=0.5, epochs=6,
                     early_stopping={"metric": "train_loss", "patience": 100}, lr=1.0)
    assert min(h["lr"] for h in plateau) < 1.0  # a rate this high stalls, and the plateau rule cuts it
    _, sgd = run("sgd", optimizer="sgd")
    assert sgd[0]["train_loss"] != pytest.approx(plain[0]["train_loss"], abs=1e-4)


def test_keras_refuses_what_it_cannot_do(tmp_path):
    data = _table(tmp_path, n=120)
    with pytest.raises(ValueError, match="data.augment.mixup: not on model.backend: keras"):
        train(load_config(tiny_config(tmp_path, data, KERAS_MLP) | {"data": {**data, "augment": {"mixup": 0.2}}}))
    with pytest.raises(ValueError, match="train.precision: bf16 is the torch loop's autocast; the keras backend"):
        train(load_config(tiny_config(tmp_path, data, KERAS_MLP, train={"precision": "bf16"})))
    with pytest.raises(ValueError, match="train.compile: torch.compile is the torch loop's"):
        train(load_config(tiny_config(tmp_path, data, KERAS_MLP, train={"compile": True})))
    from modelfoundry.compress.config import CompressConfig

    with pytest.raises(ValueError, match="student.backend: keras; distillation trains a torch student"):
        CompressConfig(distill={"student": {"type": "mlp", "backend": "keras"}})
    with pytest.raises(ValueError, match="model.backend: keras is not federated here"):
        load_config(tiny_config(tmp_path, data, KERAS_MLP) | {"federated": {"clients": 2, "rounds": 1}})


@pytest.mark.slow
def test_keras_k_fold_and_fairness_reweighing(tmp_path):
    """k-fold re-trains the keras family per fold; reweighing's per-row weights reach Keras' loss."""
    df = tabular_frame(200)
    df["group"] = np.where(np.arange(200) % 3 == 0, "a", "b")
    df.to_csv(tmp_path / "g.csv", index=False)
    data = {"path": str(tmp_path / "g.csv"), "target": "label"}
    run = train(load_config(tiny_config(tmp_path, data, {**KERAS_MLP, "dropout": 0.0}, train={"epochs": 2},
                                        evaluate={"cv": {"folds": 2}}, name="cv")))
    cv = json.loads((run.path / "cv.json").read_text())
    assert cv["folds"] == 2 and len(cv["per_fold"]) == 2 and cv["summary"]["accuracy"]["mean"] > 0.6
    opts = {"epochs": 1, "early_stopping": None}
    plain = train(load_config(tiny_config(tmp_path, data, {**KERAS_MLP, "dropout": 0.0}, train=opts, name="p")))
    fair = train(load_config(tiny_config(tmp_path, data, {**KERAS_MLP, "dropout": 0.0}, train=opts, name="f",
                                         evaluate={"fairness": {"sensitive": ["group"], "mitigate": "reweigh"}})))
    loss = [json.loads((r.path / "history.jsonl").read_text().splitlines()[0])["train_loss"] for r in (plain, fair)]
    assert loss[0] != pytest.approx(loss[1], abs=1e-5)


@pytest.mark.slow
def test_an_augmentation_runs_in_keras_training(tmp_path):
    data = _table(tmp_path, n=200)
    opts = {"epochs": 2, "early_stopping": None}
    plain = train(load_config(tiny_config(tmp_path, data, {**KERAS_MLP, "dropout": 0.0}, train=opts, name="a")))
    noisy = train(load_config(tiny_config(tmp_path, {**data, "augment": {"tabular_noise": 0.5}},
                                          {**KERAS_MLP, "dropout": 0.0}, train=opts, name="b")))
    loss = [json.loads((r.path / "history.jsonl").read_text().splitlines()[0])["train_loss"] for r in (plain, noisy)]
    assert loss[0] != pytest.approx(loss[1], abs=1e-4)


@pytest.mark.slow
def test_saved_model_is_written_and_answers_as_the_keras_model(tmp_path):
    import tensorflow as tf

    data = _table(tmp_path, n=120)
    run = train(load_config(tiny_config(tmp_path, data, {**KERAS_MLP, "saved_model": True}, train={"epochs": 2})))
    sm = tf.saved_model.load(str(run.path / "model" / "saved_model"))
    pred = Predictor.load(run.path)
    df = tabular_frame(8, seed=4).drop(columns="label")
    batch = pred.preprocessor.transform(df).features
    feeds = pred.model.feeds(batch)
    served = sm.serve([tf.constant(feeds[k]) for k in pred.model.inputs]).numpy()
    np.testing.assert_allclose(served, pred.model(batch).numpy(), atol=1e-5)


@pytest.mark.slow
def test_serving_a_keras_run(tmp_path):
    from fastapi.testclient import TestClient

    from modelfoundry.serve import ServeSettings, create_app, load_models

    run = train(load_config(tiny_config(tmp_path, _table(tmp_path, n=120), KERAS_MLP, train={"epochs": 2},
                                        name="churn")))
    with TestClient(create_app(load_models([run.path]), ServeSettings())) as c:
        row = {"x1": 0.5, "x2": -1.0, "colour": "red"}
        r = c.post("/v1/predict", json=[row])
        assert r.status_code == 200, r.text
        local = Predictor.load(run.path).predict([row])
        assert r.json()["predictions"][0]["probabilities"]["yes"] == pytest.approx(float(local["prob_yes"][0]), abs=1e-6)


@pytest.mark.slow
def test_compress_a_keras_run_to_int8_onnx_and_serve_it(tmp_path):
    from modelfoundry.api import compress
    from modelfoundry.compress.config import CompressConfig

    data = _table(tmp_path)
    run = train(load_config(tiny_config(tmp_path, data, KERAS_MLP, train={"epochs": 4})))
    variant = compress(run.path, CompressConfig(quantize="int8"))
    summary = json.loads((variant.path / "compression.json").read_text())
    assert summary["onnx"]["parity_max_abs_diff"] <= 1e-4 and summary["onnx"]["exporter"].startswith("tf2onnx")
    assert [s["stage"] for s in summary["stages"]] == ["source", "onnx fp32", "int8"]
    rows = tabular_frame(30, seed=7).drop(columns="label")
    a = Predictor.load(run.path).predict(rows)
    b = Predictor.load(variant.path).predict(rows)
    assert Predictor.load(variant.path).backend == "onnx"
    assert (a["prediction"] == b["prediction"]).mean() >= 0.9  # int8
    with pytest.raises(ValueError, match="compresses by ONNX export .* not prune"):
        compress(run.path, CompressConfig(prune={"amount": 0.3}, onnx=False))


@pytest.mark.slow
@pytest.mark.parametrize("other", ["torch", "jax"])
def test_keras_on_another_backend_trains_in_its_own_process_and_loads_on_tensorflow(tmp_path, other):
    """Keras chooses its backend once per process: a keras_backend torch (jax) run trains in a subprocess, and its
    model.keras is read here, on TensorFlow, with the same predictions as `foundry predict` gave there."""
    data = _table(tmp_path, n=160)
    cfg = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path, data, {**KERAS_MLP, "keras_backend": other},
                                                      train={"epochs": 3}, name="kt"))
    env = {**cli_env(), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "train", str(cfg)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = next((tmp_path / "runs" / "kt").iterdir())
    assert json.loads((run_dir / "model" / "architecture.json").read_text())["keras"]["backend"] == other
    basis = json.loads((run_dir / "metrics.json").read_text())["cost"]["basis"]
    assert {"torch": "torch's flop counter", "jax": "XLA's cost analysis"}[other] in basis
    tabular_frame(25, seed=8).drop(columns="label").to_csv(tmp_path / "rows.csv", index=False)
    out = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "predict", str(run_dir), str(tmp_path / "rows.csv"),
                          "-o", str(tmp_path / "p.csv")], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    there = pd.read_csv(tmp_path / "p.csv")
    here = Predictor.load(run_dir).predict(pd.read_csv(tmp_path / "rows.csv"))
    np.testing.assert_allclose(here["prob_yes"].to_numpy(), there["prob_yes"].to_numpy(), atol=1e-5)


@pytest.mark.slow
def test_tuning_a_keras_config_prunes_through_keras_fit(tmp_path, table_csv):
    """foundry tune re-runs train with overrides; its pruner raises from the epoch callback, inside Keras' fit."""
    from modelfoundry.tune import tune

    raw = tiny_config(tmp_path, {"path": str(table_csv), "target": "label", "split": {"val": 0.25, "test": 0.2}},
                      {**KERAS_MLP, "dropout": 0.0}, train={"epochs": 6, "early_stopping": None})
    raw["tune"] = {"sampler": "grid", "trials": 4, "pruner": "median", "metric": "val_loss", "seed": 5,
                   "space": {"train.lr": {"choice": [0.05, 0.08, 1e-7, 2e-7]}}}
    board = pd.read_csv(tune(load_config(raw)) / "leaderboard.csv")
    states = dict(zip(board["train.lr"], board["state"]))
    assert states[0.05] == states[0.08] == "complete"
    assert "pruned" in {states[1e-7], states[2e-7]}, states
