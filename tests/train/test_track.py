"""MLflow tracking (track: mlflow) into a local SQLite store: a training run, and a study's nested trials."""

import pytest

from modelfoundry.config import ConfigError, load_config
from modelfoundry.train import train
from modelfoundry.tune import tune

from ..conftest import tiny_config

mlflow = pytest.importorskip("mlflow")  # the `mlflow` extra; installed with the dev extra, so CI runs these


def _client(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    return mlflow.MlflowClient()


@pytest.mark.slow
def test_a_run_logs_params_epochs_test_metrics_report_and_registers_its_model(tmp_path, table_csv):
    raw = tiny_config(tmp_path, {"path": str(table_csv), "target": "label"}, train={"epochs": 3, "early_stopping": None},
                      evaluate={"report": True})
    raw["track"] = {"backend": "mlflow", "registry_name": "churn-model"}
    run = train(load_config(raw))
    client = _client(tmp_path)
    exp = client.get_experiment_by_name("t")
    (r,) = client.search_runs([exp.experiment_id])
    assert r.info.status == "FINISHED" and r.data.tags["foundry.run_dir"] == str(run.path)
    assert r.data.params["train.lr"] == "0.01" and r.data.params["model.type"] == "mlp"
    assert not [k for k in r.data.params if k.startswith(("track.", "tune."))]  # a tracking URL may hold a password
    assert [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")] == [1, 2, 3]
    assert 0 <= r.data.metrics["test_accuracy"] <= 1
    names = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"report.html", "metrics.json", "model", "plots"} <= names
    assert {a.path for a in client.list_artifacts(r.info.run_id, "model")} >= {"model/weights.safetensors"}
    (version,) = client.search_model_versions("name='churn-model'")
    assert version.run_id == r.info.run_id and version.tags["foundry.run_dir"] == str(run.path)


@pytest.mark.slow
def test_a_study_nests_its_trials_under_one_parent_and_registers_the_refit_model(tmp_path, table_csv):
    raw = tiny_config(tmp_path, {"path": str(table_csv), "target": "label", "split": {"val": 0.25}},
                      train={"epochs": 2, "early_stopping": None})
    raw["track"] = "mlflow"  # the shorthand
    raw["tune"] = {"sampler": "random", "trials": 3, "metric": "val_accuracy", "space": {"train.lr": {"log_uniform": [1e-3, 1e-1]}}}
    assert load_config(raw).track.backend == "mlflow"
    raw["track"] = {"backend": "mlflow", "registry_name": "tuned"}
    tune(load_config(raw), refit=True)
    client = _client(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("foundry.study") == "t"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4  # three trials and the refit
    assert sum(r.data.tags.get("foundry.best") == "true" for r in children) == 1
    assert "best_val_accuracy" in parent.data.metrics
    (version,) = client.search_model_versions("name='tuned'")
    refit = client.get_run(version.run_id)
    assert "-refit" in refit.data.tags["foundry.run_dir"]


@pytest.mark.slow
def test_any_tracking_uri_and_experiment_name(tmp_path, table_csv):
    raw = tiny_config(tmp_path, {"path": str(table_csv), "target": "label"}, train={"epochs": 1})
    store = tmp_path / "elsewhere.db"
    raw["track"] = {"backend": "mlflow", "uri": f"sqlite:///{store}", "experiment": "credit-risk"}
    run = train(load_config(raw))
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    client = mlflow.MlflowClient()
    (r,) = client.search_runs([client.get_experiment_by_name("credit-risk").experiment_id])
    assert r.data.tags["foundry.run_dir"] == str(run.path)
    assert not (tmp_path / "runs" / "mlflow.db").exists() and (tmp_path / "mlflow-artifacts").is_dir()


def test_bad_track_config(tmp_path):
    with pytest.raises(ConfigError, match="track.backend: must be one of 'none' or 'mlflow', got \"wandb\""):
        load_config({"name": "x", "data": {}, "track": "wandb"})
