"""Tiny end-to-end runs of the whole train stage: the files it writes, the numbers in them, exact resume."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelfoundry.api import resume
from modelfoundry.config import load_config, run_config
from modelfoundry.core.runs import Run
from modelfoundry.predictor import Predictor
from modelfoundry.train import train

from ..conftest import SAMPLE, cli_env, regression_frame, tabular_frame, tiny_config, write_yaml


def test_run_directory_layout_and_numbers(tmp_path, table_csv):
    cfg = load_config(tiny_config(tmp_path, {"path": str(table_csv)}, train={"epochs": 15},
                                  evaluate={"baselines": True, "report": True}))
    run = train(cfg)
    for name in ("config.yaml", "manifest.json", "data_profile.json", "metrics.json", "history.jsonl", "report.html",
                 "model/weights.safetensors", "model/architecture.json", "model/preprocessor.json",
                 "checkpoints/last.json", "checkpoints/best.json", "plots/confusion_matrix.png", "plots/roc_pr.png"):
        assert (run.path / name).exists(), name
    assert list((run.path / "tensorboard").iterdir())
    m = run.manifest()
    assert m["status"] == "complete" and m["seed"] == 42 and len(m["data"]["train"]["sha256"]) == 64
    assert 0 < m["timings"]["loop_s"] <= m["timings"]["fit_s"] <= m["timings"]["total_s"]
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8
    assert set(metrics["baselines"]) == {"majority", "logistic_regression", "hist_gradient_boosting"}
    assert metrics["baselines"]["majority"]["accuracy"] < metrics["test"]["accuracy"]
    assert len(run.history()) == m["epochs_run"]
    assert not list(run.path.rglob("*.tmp"))
    # the saved model reproduces the evaluation exactly
    pred = Predictor.load(run.path)
    df = pd.read_csv(table_csv)
    out = pred.predict(df)
    assert set(out.columns) == {"prediction", "prob_no", "prob_yes"}
    assert (out["prediction"] == df["label"]).mean() > 0.8


@pytest.mark.slow
def test_mixed_numeric_categorical_text_and_regression(tmp_path):
    run = train(load_config(tiny_config(tmp_path, {"target": "label", "types": {"note": "text"}}, train={"epochs": 10})),
                frame=tabular_frame(200, text=True))
    spec = json.loads((run.path / "model" / "architecture.json").read_text())["spec"]
    assert spec["n_numeric"] == 2 and spec["categorical"] == [4] and list(spec["text"]) == ["note"]
    assert json.loads((run.path / "metrics.json").read_text())["test"]["accuracy"] > 0.9
    run = train(load_config(tiny_config(tmp_path, {"target": "y"}, train={"epochs": 30}, evaluate={"baselines": True})),
                frame=regression_frame())
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["test"]["r2"] > 0.8 and set(metrics["baselines"]) >= {"mean", "linear_regression"}


def test_kfold_cross_validation(tmp_path, table_csv):
    cfg = load_config(tiny_config(tmp_path, {"path": str(table_csv)}, evaluate={"cv": {"folds": 3}}))
    run = train(cfg)
    cv = json.loads((run.path / "cv.json").read_text())
    assert cv["folds"] == 3 and len(cv["per_fold"]) == 3
    assert sum(f["rows"] for f in cv["per_fold"]) == 240 - json.loads((run.path / "metrics.json").read_text())["rows"]
    assert set(cv["summary"]["accuracy"]) == {"mean", "std"}


def _start(cfg_path: Path, *extra: str) -> subprocess.Popen:
    # a shell's background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: restore it
    return subprocess.Popen([sys.executable, "-m", "modelfoundry.cli", "train", str(cfg_path), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_epoch(runs: Path, epoch: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pointer in runs.glob("*/*/checkpoints/last.json"):
            if json.loads(pointer.read_text())["epoch"] >= epoch:
                return pointer.parents[1]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise TimeoutError


def _resume_config(tmp_path: Path) -> Path:
    frame = tabular_frame(2000, seed=3)
    frame.to_csv(tmp_path / "big.csv", index=False)
    cfg = tiny_config(tmp_path, {"path": str(tmp_path / "big.csv"), "augment": {"tabular_noise": 0.1}},
                      model={"type": "mlp", "hidden": [32, 32], "dropout": 0.3},
                      train={"epochs": 6, "batch_size": 8, "lr": 1e-3, "early_stopping": None})
    return write_yaml(tmp_path / "cfg.yaml", cfg)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, dict]:
    tmp_path = tmp_path_factory.mktemp("resume")
    cfg_path = _resume_config(tmp_path)
    ref = _start(cfg_path, "--set", f"output_dir={tmp_path / 'ref'}")
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    return cfg_path, json.loads((Path(out.strip().splitlines()[-1]) / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_resume_after_a_kill_reaches_the_same_metrics(tmp_path, how, uninterrupted):
    cfg_path, ref_metrics = uninterrupted

    proc = _start(cfg_path, "--set", f"output_dir={tmp_path / 'cut'}")
    run_dir = _wait_for_epoch(tmp_path / "cut", 2, proc)
    if how == "kill -9":
        proc.kill()
        proc.wait()
        assert Run.open(run_dir).status == "running"
    else:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "foundry train --resume" in err
        assert Run.open(run_dir).status == "interrupted"
    with pytest.raises(ValueError, match="not 'complete'"):
        Predictor.load(run_dir)  # a half-trained model never loads as a finished one
    res = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "train", "--resume", str(run_dir)],
                         capture_output=True, text=True, env=cli_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    resumed = Run.open(run_dir)
    assert resumed.status == "complete" and resumed.manifest()["resumed"] == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"] == ref_metrics["test"]
    assert [h["epoch"] for h in resumed.history()] == list(range(1, 7))


def test_a_resumed_text_run_matches_an_uninterrupted_one_and_reuses_its_encodings(tmp_path):
    """The resumed run refits its preprocessor: that must give the same vocabulary and ids (a trained WordPiece
    did not, so the checkpoint's embeddings met other ids), and the encodings come from the run's cache."""
    def cfg(out):
        return load_config(tiny_config(tmp_path, {"path": str(SAMPLE), "target": "category",
                                                  "text": {"vocab_size": 300, "min_frequency": 1}},
                                       train={"epochs": 4, "lr": 5e-3, "early_stopping": None},
                                       name="intents") | {"output_dir": str(tmp_path / out)})

    ref = json.loads((train(cfg("ref")).path / "metrics.json").read_text())

    def stop_at_2(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg("cut"), on_epoch=stop_at_2)
    run_dir = next((tmp_path / "cut" / "intents").iterdir())
    cached = sorted((run_dir / "cache").glob("tokens-*.safetensors"))
    assert Run.open(run_dir).status == "interrupted" and len(cached) == 3  # train, val and test
    mtimes = [p.stat().st_mtime_ns for p in cached]
    resumed = resume(run_dir)
    assert json.loads((resumed.path / "metrics.json").read_text())["test"] == ref["test"]
    assert [p.stat().st_mtime_ns for p in sorted((run_dir / "cache").glob("tokens-*.safetensors"))] == mtimes


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_doubled_batch(tmp_path):
    df = tabular_frame(384, seed=5)
    df["split"] = ["train"] * 256 + ["val"] * 64 + ["test"] * 64
    df.to_csv(tmp_path / "d.csv", index=False)
    cfg = tiny_config(tmp_path, {"path": str(tmp_path / "d.csv"), "split": {"column": "split"}},
                      model={"type": "mlp", "hidden": [32], "dropout": 0.0},
                      train={"epochs": 4, "batch_size": 16, "lr": 0.01, "early_stopping": None, "grad_clip": None})
    cfg_path = write_yaml(tmp_path / "cfg.yaml", cfg)
    two = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "train", str(cfg_path), "--nproc", "2"],
                         capture_output=True, text=True, env=cli_env(), timeout=400)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "train", str(cfg_path), "--set", "train.batch_size=32"],
                         capture_output=True, text=True, env=cli_env(), timeout=400)
    assert one.returncode == 0, one.stderr
    runs = [Path(p.stdout.strip().splitlines()[-1]) for p in (two, one)]
    assert Run.open(runs[0]).manifest()["processes"] == 2
    h2, h1 = (Run.open(r).history() for r in runs)
    assert len(h2) == len(h1) == 4
    for a, b in zip(h2, h1):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-3)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-3)
    m2, m1 = (json.loads((r / "metrics.json").read_text())["test"] for r in runs)
    assert np.isclose(m2["log_loss"], m1["log_loss"], atol=1e-3)


def test_bf16_training_is_evaluated_like_the_saved_model(tmp_path, table_csv):
    """Accelerate wraps forward in bf16 autocast when training in bf16; the returned model must not keep that
    wrapper, or metrics.json (scored in training) and a reloaded Predictor disagree."""
    from modelfoundry.data import prepare
    from modelfoundry.evaluate import M, evaluate_data
    from modelfoundry.predictor import Predictor

    from ..conftest import tiny_config

    run = train(load_config(tiny_config(tmp_path, {"path": str(table_csv), "target": "label"}, train={"precision": "bf16"})))
    written = json.loads((run.path / "metrics.json").read_text())["test"]
    again, _, _ = evaluate_data(Predictor.load(run.path).model, prepare(run_config(run)), M.canonical(None, "classification"),
                                "test", False)
    assert written["log_loss"] == again["test"]["log_loss"]


def test_resume_refuses_data_that_changed_and_the_run_stays_resumable(tmp_path):
    path = tmp_path / "t.csv"
    tabular_frame(120).to_csv(path, index=False)
    original = path.read_bytes()
    cfg = load_config(tiny_config(tmp_path, {"path": str(path)}, train={"epochs": 3, "early_stopping": None}))

    def stop(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_epoch=stop)
    run_dir = next((tmp_path / "runs" / "t").iterdir())
    path.write_bytes(original + b"0.1,0.2,red,yes\n")
    with pytest.raises(ValueError, match=r"cannot resume: the train data .*t\.csv changed since the run started"):
        resume(run_dir)
    assert Run.open(run_dir).status == "interrupted"
    path.write_bytes(original)
    assert resume(run_dir).status == "complete"


@pytest.mark.slow
def test_a_run_being_trained_cannot_be_resumed_by_a_second_process(tmp_path, table_config):
    import subprocess
    import sys
    import time

    from modelfoundry.core.runs import Run

    from ..conftest import cli_env

    p = subprocess.Popen([sys.executable, "-m", "modelfoundry.cli", "train", str(table_config), "--set",
                          "train.epochs=400", "--set", "train.early_stopping=null"], env=cli_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        manifests = []
        while time.time() < deadline and not manifests:
            manifests = [m for m in (tmp_path / "runs").glob("*/*/manifest.json")]
            time.sleep(0.2)
        assert manifests, "the training process never started its run"
        run = Run.open(manifests[0].parent)
        with pytest.raises(ValueError, match=f"another process \\(PID {p.pid}\\) is writing this run"):
            resume(run.path)
        assert p.poll() is None  # the first process is untouched and still training
    finally:
        p.kill()
        p.wait(timeout=60)
    assert Run.open(run.path).status == "running"  # killed mid-run: the OS dropped its lock
    resumed = resume(run.path)
    assert resumed.status == "complete"


def test_a_run_reads_each_data_file_once(tmp_path):
    """prepare reads the table and the test file; the data audit (evaluate.report) and k-fold (evaluate.cv) reuse what
    it read instead of reading the files again. Counted with an audit hook on open(), not by mocking our reader."""
    tabular_frame().iloc[:150].to_csv(tmp_path / "t.csv", index=False)
    tabular_frame(seed=1).iloc[:60].to_csv(tmp_path / "test.csv", index=False)
    opens: list[str] = []
    watched = {str(tmp_path / "t.csv"), str(tmp_path / "test.csv")}

    def hook(event, args):
        if event == "open" and isinstance(args[0], str) and str(Path(args[0]).resolve()) in watched:
            opens.append(Path(args[0]).name)

    from modelfoundry.data import read_frame

    cfg = load_config(tiny_config(tmp_path, {"path": str(tmp_path / "t.csv"), "target": "label",
                                             "test_path": str(tmp_path / "test.csv")},
                                  train={"epochs": 1}, evaluate={"report": True, "cv": {"folds": 2}}))
    sys.addaudithook(hook)  # (hooks cannot be removed: it only records opens of this test's two files)
    read_frame(cfg, cfg.data.path)
    per_read = opens.count("t.csv")
    opens.clear()
    run = train(cfg)
    assert run.status == "complete" and (run.path / "cv.json").exists() and (run.path / "data_report.html").exists()
    # one read by the reader, and one by the sha256 fingerprint the manifest records (resume and compress check it)
    assert opens.count("t.csv") == per_read + 1 and opens.count("test.csv") == per_read + 1, opens


def test_max_steps_stops_mid_epoch_and_ends_the_schedule_there(tmp_path):
    df = tabular_frame(200)
    cfg = load_config(tiny_config(tmp_path, {"path": None},
                                  train={"epochs": 10, "batch_size": 32, "max_steps": 7, "schedule": "linear",
                                         "early_stopping": None}))
    run = train(cfg, frame=df)
    history = Run.open(run.path).history()
    steps_per_epoch = -(-int(len(df) * 0.7) // 32)  # the default 70/15/15 split
    assert len(history) == -(-7 // steps_per_epoch)  # the last epoch was cut short
    assert history[-1]["lr"] == 0.0  # the linear schedule reached its end at step 7, not at epoch 10


def test_early_stopping_on_a_missing_validation_split_is_refused_before_the_first_epoch(tmp_path, table_csv):
    cfg = load_config(tiny_config(tmp_path, {"path": str(table_csv), "target": "label", "split": {"val": 0.0}},
                                  train={"early_stopping": {"metric": "val_loss"}}))
    with pytest.raises(ValueError, match="early_stopping.metric val_loss reads the validation split, and this data has "
                                         "none"):
        train(cfg)
    run = next((tmp_path / "runs" / "t").iterdir())
    assert not (run / "history.jsonl").exists() or not (run / "history.jsonl").read_text().strip()
