"""Experiment tracking in MLflow (`track: mlflow`): one MLflow run per training run, with its parameters
(the flattened config), per-epoch metrics, test metrics, report, plots and model directory; a study's
trials nested under one parent run; a model registered by name. Off by default; the Run directory and
TensorBoard logs are always written."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.schema import flatten

PARENT_ENV = "FOUNDRY_MLFLOW_PARENT_RUN"


def _mlflow(cfg):
    try:
        import mlflow
    except ImportError:
        raise ValueError("track: mlflow needs the mlflow extra: pip install 'modelfoundry[mlflow]'") from None
    out = Path(cfg.output_dir).resolve()
    uri = cfg.track.uri or f"sqlite:///{out / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    name = cfg.track.experiment or cfg.name
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        artifacts = None  # a tracking server keeps its own artifact store
        if uri.startswith("sqlite:///"):  # a local store: artifacts beside its database, not in ./mlruns
            artifacts = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlflow-artifacts").as_uri()
        try:
            client.create_experiment(name, artifact_location=artifacts)
        except mlflow.exceptions.MlflowException:  # another worker created it first
            pass
    mlflow.set_experiment(name)
    return mlflow


class Tracker:
    """Logs one training run; every method is a no-op when tracking is off."""

    def __init__(self, cfg, run_dir: Path, tags: dict[str, str] | None = None):
        self.cfg, self.active = cfg, cfg.track.backend == "mlflow"
        self.mlflow = self.run = None
        if not self.active:
            return
        self.mlflow = _mlflow(cfg)
        tags = {"foundry.run_dir": str(run_dir), **(tags or {})}
        if os.environ.get(PARENT_ENV):
            tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
        self.run = self.mlflow.start_run(run_name=run_dir.name, tags=tags)
        # tracking and study settings (a server URL with its password) never become params: by prefix, since flatten's
        # keys are dotted (`track.uri`), which a plain `not in ("tune", "track")` never matched
        params = {k: str(v)[:500] for k, v in flatten(cfg.to_dict()).items()
                  if k.split(".")[0] not in ("tune", "track")}
        items = list(params.items())
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            self.mlflow.log_params(dict(items[i: i + 100]))

    def epoch(self, record: dict) -> None:
        if self.active:
            self.mlflow.log_metrics({k: float(v) for k, v in record.items() if k != "epoch" and isinstance(v, (int, float))},
                                    step=int(record["epoch"]))

    def finish(self, run, status: str) -> None:
        if not self.active:
            return
        import json

        metrics_file = run.path / "metrics.json"
        if metrics_file.exists():
            test = json.loads(metrics_file.read_text()).get("test") or {}
            self.mlflow.log_metrics({f"test_{k}": float(v) for k, v in test.items() if isinstance(v, (int, float))})
        for name in ("report.html", "metrics.json", "data_profile.json", "manifest.json"):
            if (run.path / name).exists():
                self.mlflow.log_artifact(str(run.path / name))
        if (run.path / "plots").is_dir():
            self.mlflow.log_artifacts(str(run.path / "plots"), "plots")
        if status == "complete" and run.model_dir.is_dir():
            self.mlflow.log_artifacts(str(run.model_dir), "model")
            if self.cfg.track.registry_name:
                register(self.mlflow, self.cfg.track.registry_name, self.run)
        self.mlflow.end_run(status="FINISHED" if status == "complete" else "FAILED" if status == "failed" else "KILLED")


def register(mlflow, name: str, run) -> int:
    """A model version for the run's `model/` artifacts (MLflow 3's register_model wants a LoggedModel; the
    client API takes any artifact directory)."""
    client = mlflow.MlflowClient()
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass  # exists
    mv = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_model_version_tag(name, mv.version, "foundry.run_dir", run.data.tags.get("foundry.run_dir", ""))
    return int(mv.version)


def study_parent(cfg, study_name: str):
    """The parent MLflow run of a study (created once, found again on resume); its id goes to the workers."""
    if cfg.track.backend != "mlflow":
        return None
    mlflow = _mlflow(cfg)
    found = mlflow.search_runs(filter_string=f"tags.`foundry.study` = '{study_name}'", output_format="list")
    if found:
        return found[0].info.run_id
    run = mlflow.start_run(run_name=f"study-{study_name}", tags={"foundry.study": study_name})
    mlflow.end_run()
    return run.info.run_id
