"""Optuna studies over config fields: samplers, pruning, resume, workers, results, refit and bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from modelfoundry.config import ConfigError, load_config
from modelfoundry.tune import tune

from ..conftest import cli_env, tiny_config, write_yaml


def _cfg(tmp_path, table_csv, space=None, **tune_opts) -> dict:
    raw = tiny_config(tmp_path, {"path": str(table_csv), "target": "label", "split": {"val": 0.25, "test": 0.2}},
                      train={"epochs": 4, "early_stopping": None})
    raw["tune"] = {"sampler": "random", "trials": 4, "metric": "val_accuracy",
                   "space": space if space is not None else {"train.lr": {"log_uniform": [1e-3, 1e-1]}, "model.hidden": {"choice": [[8], [16, 8]]}},
                   **tune_opts}
    return raw


def _trials(sdir):
    return pd.read_csv(sdir / "leaderboard.csv")


@pytest.mark.slow
def test_random_search_writes_leaderboard_best_config_plots_and_refits(tmp_path, table_csv):
    sdir = tune(load_config(_cfg(tmp_path, table_csv)), refit=True)
    board = _trials(sdir)
    assert sorted(board["trial"]) == [0, 1, 2, 3] and set(board["state"]) == {"complete"}
    assert board["val_accuracy"].is_monotonic_decreasing  # best first
    assert {"train.lr", "model.hidden", "duration_s", "run"} <= set(board.columns)
    best = load_config(sdir / "best.yaml")  # a complete config, ready for `foundry train`
    summary = json.loads((sdir / "summary.json").read_text())
    assert best.train.lr == pytest.approx(summary["best_params"]["train.lr"])
    assert best.model.hidden == summary["best_params"]["model.hidden"] and best.tune is None
    assert summary["best_value"] == board["val_accuracy"].iloc[0]
    assert {"plots/optimization_history.png", "plots/slice.png", "plots/param_importances.png"} <= set(summary["plots"])
    refit = summary["refit"]
    assert refit["test"]["accuracy"] > 0.6
    profile = json.loads((tmp_path / refit["run"] / "data_profile.json").read_text())
    assert "val" not in profile["splits"] and refit["epochs"] == summary["best_epoch"]


@pytest.mark.slow
def test_grid_search_covers_the_grid_once_and_tpe_runs(tmp_path, table_csv):
    space = {"train.lr": {"choice": [0.01, 0.05]}, "train.batch_size": {"int": [16, 32], "step": 16}}
    sdir = tune(load_config(_cfg(tmp_path, table_csv, space, sampler="grid", trials=10)))
    board = _trials(sdir)
    assert len(board) == 4  # the grid has 4 points: the budget stops there
    assert len({(r["train.lr"], r["train.batch_size"]) for _, r in board.iterrows()}) == 4
    sdir = tune(load_config(_cfg(tmp_path, table_csv, sampler="tpe", trials=3, sampler_options={"n_startup_trials": 2})),
                study="tpe")
    assert len(_trials(sdir)) == 3


@pytest.mark.parametrize("sampler", ["cmaes", pytest.param("gp", marks=pytest.mark.slow),
                                     pytest.param("qmc", marks=pytest.mark.slow), pytest.param("bruteforce", marks=pytest.mark.slow)])
def test_the_other_optuna_samplers_and_an_explicit_direction(tmp_path, table_csv, sampler):
    space = {"train.lr": {"uniform": [0.01, 0.05], "step": 0.02}, "train.batch_size": {"int": [16, 32], "step": 16}}
    cfg = load_config(_cfg(tmp_path, table_csv, space, sampler=sampler, trials=3, metric="val_loss", direction="minimize"))
    board = _trials(tune(cfg))
    assert len(board) == 3 and "complete" in set(board["state"])
    done = board[board["state"] == "complete"]
    assert done["val_loss"].is_monotonic_increasing  # minimised: the lowest loss first


def test_timeout_stops_starting_trials(tmp_path, table_csv):
    board = _trials(tune(load_config(_cfg(tmp_path, table_csv, trials=50, timeout=0.5))))
    assert 1 <= len(board) < 50


def test_median_pruning_stops_bad_trials_from_epoch_metrics(tmp_path, table_csv):
    space = {"train.lr": {"choice": [0.05, 0.08, 1e-7, 2e-7]}}  # the tiny rates learn nothing; seed 5 tries them last
    raw = _cfg(tmp_path, table_csv, space, sampler="grid", trials=4, pruner="median", metric="val_loss", seed=5)
    raw["train"]["epochs"] = 6
    board = _trials(tune(load_config(raw)))
    states = dict(zip(board["train.lr"], board["state"]))
    assert states[0.05] == states[0.08] == "complete"
    assert "pruned" in {states[1e-7], states[2e-7]}, states
    for run in board["run"][board["state"] == "pruned"]:
        manifest = json.loads(open(os.path.join(run, "manifest.json")).read())
        assert manifest["status"] == "pruned" and "pruned at epoch" in manifest["error"]


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, table_csv):
    space = {"train.batch_size": {"choice": [16, 0]}}  # batch_size 0 is not a valid config
    sdir = tune(load_config(_cfg(tmp_path, table_csv, space, sampler="grid", trials=2)))
    states = dict(zip(_trials(sdir)["train.batch_size"], _trials(sdir)["state"]))
    assert states == {16: "complete", 0: "fail"}


@pytest.mark.slow
def test_two_workers_share_one_study_and_a_grid_is_covered_once(tmp_path, table_csv):
    # every worker must shuffle the grid alike: Optuna gives trial n the n-th point of its shuffled grid
    space = {"train.lr": {"choice": [0.01, 0.03, 0.1]}, "train.batch_size": {"choice": [16, 32]}}
    raw = _cfg(tmp_path, table_csv, space, sampler="grid", trials=6)
    raw["train"]["epochs"] = 40  # trials long enough that the second process joins before the first is done
    path = write_yaml(tmp_path / "tune.yaml", raw)
    journal = tmp_path / "elsewhere" / "shared-study.log"  # reaches the second worker by the environment, not argv
    journal.parent.mkdir()
    proc = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "tune", str(path), "--workers", "2",
                           "--storage", str(journal)], env=cli_env(), capture_output=True, text=True, cwd=tmp_path,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert journal.stat().st_size > 0
    board = _trials(tmp_path / proc.stdout.strip().splitlines()[-1])
    assert sorted(board["trial"]) == list(range(6)) and set(board["state"]) == {"complete"}
    assert board["pid"].nunique() == 2  # both workers ran trials
    assert board["run"].nunique() == 6
    assert len({(r["train.lr"], r["train.batch_size"]) for _, r in board.iterrows()}) == 6  # each point once


@pytest.mark.slow
def test_a_killed_study_resumes_and_reruns_the_lost_trial(tmp_path, table_csv):
    raw = _cfg(tmp_path, table_csv, trials=3)
    raw["train"]["epochs"] = 500
    path = write_yaml(tmp_path / "slow.yaml", raw)
    p = subprocess.Popen([sys.executable, "-m", "modelfoundry.cli", "tune", str(path)], env=cli_env(), cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = tmp_path / "runs" / "t" / "study-t" / "trials" / "0000" / "history.jsonl"
    deadline = time.time() + 120
    while not history.exists() and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)  # no chance to clean up: trial 0 stays 'running' in the journal
    p.wait()
    raw["train"]["epochs"] = 2
    proc = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "tune", str(write_yaml(path, raw))],
                          env=cli_env(), capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "1 trial(s) whose process died are marked failed" in proc.stderr
    board = _trials(tmp_path / "runs" / "t" / "study-t")
    assert dict(zip(board["trial"], board["state"])) == {0: "fail", 1: "complete", 2: "complete", 3: "complete"}


def test_bad_tune_input(tmp_path, table_csv):
    with pytest.raises(ConfigError, match="space is empty"):
        load_config(_cfg(tmp_path, table_csv, space={}))
    with pytest.raises(ConfigError, match="'train.lrr' is not a field of this config; did you mean 'train.lr'"):
        load_config(_cfg(tmp_path, table_csv, space={"train.lrr": {"uniform": [0.1, 0.2]}}))
    with pytest.raises(ConfigError, match="low 0.5 > high 0.1"):
        load_config(_cfg(tmp_path, table_csv, space={"train.lr": {"uniform": [0.5, 0.1]}}))
    with pytest.raises(ConfigError, match="log_uniform: bounds must be > 0"):
        load_config(_cfg(tmp_path, table_csv, space={"train.lr": {"log_uniform": [0, 0.1]}}))
    with pytest.raises(ConfigError, match="grid search needs choice or stepped ranges"):
        load_config(_cfg(tmp_path, table_csv, space={"train.lr": {"uniform": [0.01, 0.1]}}, sampler="grid"))
    with pytest.raises(ConfigError, match="tune.metric: 'val_f3' is not a metric runs report"):
        load_config(_cfg(tmp_path, table_csv, metric="val_f3", trials=1))
    with pytest.raises(ValueError, match="'val_rmse' is not reported by this run; it reports: .*val_accuracy"):
        tune(load_config(_cfg(tmp_path, table_csv, metric="val_rmse", trials=1)))
    with pytest.raises(ValueError, match=r"cannot open the study storage") as err:
        tune(load_config(_cfg(tmp_path, table_csv, trials=1)), storage="postgresql://me:s3cret@127.0.0.1:1/nodb")
    assert "s3cret" not in str(err.value) and "***" in str(err.value)
    tune(load_config(_cfg(tmp_path, table_csv, trials=1)), study="same")
    with pytest.raises(ValueError, match="was created with a different search"):
        tune(load_config(_cfg(tmp_path, table_csv, space={"train.lr": {"uniform": [0.01, 0.1]}}, trials=1)), study="same")


def test_trials_share_one_text_encoding_cache(tmp_path):
    from ..conftest import tabular_frame

    path = tmp_path / "notes.csv"
    tabular_frame(text=True).to_csv(path, index=False)
    raw = _cfg(tmp_path, path, space={"train.lr": {"choice": [0.01, 0.02]}}, sampler="grid", trials=2)
    raw["data"].update(text={"vocab_size": 60, "min_frequency": 1}, types={"note": "text"})
    sdir = tune(load_config(raw))
    assert len(list((sdir / "cache").glob("tokens-*.safetensors"))) == 3  # train, val, test: encoded once for both
    assert len(list((sdir / "trials").iterdir())) == 2
    assert not any((t / "cache").exists() for t in (sdir / "trials").iterdir())
