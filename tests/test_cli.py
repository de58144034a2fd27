"""The `foundry` verbs, run as a user runs them (in-process through main(), and one real subprocess)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from modelfoundry.cli import main
from modelfoundry.config import run_config
from modelfoundry.core.runs import Run
from modelfoundry.predictor import Predictor

from .conftest import cli_env, tabular_frame, tiny_config, write_yaml


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_prints_the_run_directory_last_then_predict_evaluate_list(tmp_path, table_config, table_csv, capsys):
    code, out, err = run_cli(capsys, "train", table_config, "--set", "train.epochs=2", "--set", "model.hidden=[8,4]")
    assert code == 0, err
    run = Path(out.strip().splitlines()[-1])
    assert (run / "manifest.json").exists()
    assert json.loads((run / "model" / "architecture.json").read_text())["model"]["hidden"] == [8, 4]
    code, _, err = run_cli(capsys, "predict", run, table_csv, "-o", tmp_path / "p.csv")
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == 240 and {"prediction", "prob_yes", "prob_no"} <= set(pred.columns)
    assert np.allclose(pred["prob_yes"] + pred["prob_no"], 1, atol=1e-5)
    code, out, err = run_cli(capsys, "evaluate", run, table_csv)
    assert code == 0 and json.loads(out)["accuracy"] > 0.5
    assert (run / "evaluations" / "table.json").exists()
    code, out, _ = run_cli(capsys, "runs", "list", "--output-dir", tmp_path / "runs")
    assert code == 0 and "complete" in out and str(run) in out


def test_runs_compare_tables_and_overlays_two_runs(tmp_path, table_config, capsys):
    runs = []
    for lr in ("0.01", "0.05"):
        code, out, err = run_cli(capsys, "train", table_config, "--set", "train.epochs=3", "--set", f"train.lr={lr}")
        assert code == 0, err
        runs.append(out.strip().splitlines()[-1])
    code, out, err = run_cli(capsys, "runs", "compare", *runs, "--plot", tmp_path / "cmp.png")
    assert code == 0, err
    assert "test_accuracy" in out and "0.01" in out and "0.05" in out and all(r in out for r in runs)
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    code, _, err = run_cli(capsys, "runs", "compare", runs[0])
    assert code == 2 and "at least two run directories" in err


def test_predict_input_missing_a_column(tmp_path, table_config, capsys):
    code, out, _ = run_cli(capsys, "train", table_config, "--set", "train.epochs=1")
    run = out.strip().splitlines()[-1]
    tabular_frame(10).drop(columns=["colour"]).to_csv(tmp_path / "in.csv", index=False)
    code, _, err = run_cli(capsys, "predict", run, tmp_path / "in.csv")
    assert code == 2 and "missing column(s) the model needs: colour" in err


def test_config_verbs(tmp_path, table_config, capsys):
    assert run_cli(capsys, "config", "validate", table_config)[0] == 0
    code, out, _ = run_cli(capsys, "config", "show", table_config, "--set", "train.lr=3e-4")
    assert code == 0 and "lr: 0.0003" in out and "early_stopping:" in out  # every default filled in
    code, out, _ = run_cli(capsys, "config", "schema")
    assert json.loads(out)["properties"]["train"]
    write_yaml(tmp_path / "bad.yaml", {"name": "x", "data": {"path": "d.csv"}, "train": {"lr": 0, "batch_size": 0, "epohcs": 1}})
    code, _, err = run_cli(capsys, "config", "validate", tmp_path / "bad.yaml")
    assert code == 2
    assert "3 problem(s)" in err and "train.lr: must be > 0, got 0" in err and "did you mean 'epochs'" in err


@pytest.mark.parametrize("case,expect", [
    ("missing_file", "no such file"),
    ("empty", "the file is empty"),
    ("header_only", "but no data rows"),
    ("no_target", "target column 'label' not found.*did you mean 'labels'"),
    ("single_class", "single class"),
    ("nan_target", "missing \\(NaN\\) in 1 row"),
    ("text_as_numeric", "'x1' is declared numeric but row 0 holds 'abc'"),
])
def test_bad_input_exits_nonzero_with_a_clear_message_and_writes_no_model(tmp_path, capsys, case, expect):
    path = tmp_path / "d.csv"
    df = tabular_frame(40)
    if case == "empty":
        path.write_text("")
    elif case == "header_only":
        path.write_text("x1,x2,colour,label\n")
    elif case == "no_target":
        df.rename(columns={"label": "labels"}).to_csv(path, index=False)
    elif case == "single_class":
        df.assign(label="yes").to_csv(path, index=False)
    elif case == "nan_target":
        df.loc[3, "label"] = None
        df.to_csv(path, index=False)
    elif case == "text_as_numeric":
        df["x1"] = "abc"
        df.to_csv(path, index=False)
    elif case != "missing_file":
        df.to_csv(path, index=False)
    cfg = tiny_config(tmp_path, {"path": str(path), "types": {"x1": "numeric"} if case == "text_as_numeric" else {}})
    code, _, err = run_cli(capsys, "train", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 2
    assert pytest.importorskip("re").search(expect, err), err
    assert not list((tmp_path / "runs").rglob("weights.safetensors"))
    for manifest in (tmp_path / "runs").rglob("manifest.json"):
        assert json.loads(manifest.read_text())["status"] == "failed"


def _image_folder(root: Path, corrupt: bool) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            arr = (rng.random((8, 8)) * 60 + (150 if cls == "a" else 0)).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    if corrupt:
        (root / "a" / "broken.png").write_bytes(b"not a png")
    return root


def test_corrupt_image_is_skipped_and_reported_or_refused(tmp_path, capsys):
    folder = _image_folder(tmp_path / "imgs", corrupt=True)
    cfg = tiny_config(tmp_path, {"path": str(folder), "image": {"size": [8, 8], "channels": 1}},
                      model={"type": "cnn", "channels": [4], "hidden": [8]})
    code, out, err = run_cli(capsys, "train", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 0, err
    profile = json.loads((Path(out.strip().splitlines()[-1]) / "data_profile.json").read_text())
    bad = [b for split in profile["unreadable_images"].values() for b in split]
    assert len(bad) == 1 and bad[0]["image"].endswith("broken.png")
    code, _, err = run_cli(capsys, "train", write_yaml(tmp_path / "c.yaml", cfg), "--set", "data.bad_images=error")
    assert code == 2 and "unreadable image" in err and "broken.png" in err


def test_wrong_model_for_the_inputs(tmp_path, capsys):
    folder = _image_folder(tmp_path / "imgs", corrupt=False)
    cfg = tiny_config(tmp_path, {"path": str(folder), "image": {"size": [8, 8], "channels": 1}}, model={"type": "rnn"})
    code, _, err = run_cli(capsys, "train", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 2 and "'rnn' cannot take image inputs" in err


@pytest.mark.slow
def test_foundry_command_in_a_subprocess(tmp_path, table_config):
    res = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "config", "validate", str(table_config)],
                         capture_output=True, text=True, env=cli_env())
    assert res.returncode == 0 and "valid" in res.stdout


@pytest.mark.slow
def test_quick_exit_flushes_and_keeps_the_exit_code(tmp_path, table_config):
    """The console entry leaves through os._exit after main(): piped output must be complete, exit codes kept,
    and a train run's files whole (its manifest says complete and its weights load)."""
    out = tmp_path / "runs"
    env = {k: v for k, v in cli_env().items() if k != "PYTHONUNBUFFERED"}  # stdout block-buffered, as in a pipe
    res = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "train", str(table_config), "--set",
                          f"output_dir={out}"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    run = Run(Path(res.stdout.strip().splitlines()[-1]))
    assert run.manifest()["status"] == "complete" and (run.path / "metrics.json").stat().st_size > 0
    assert len(Predictor.load(run.path).predict(pd.read_csv(run_config(run).data.path).head(3))) == 3
    bad = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "train", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "missing.yaml" in bad.stderr
    foundry = shutil.which("foundry", path=str(Path(sys.executable).parent))
    if foundry:  # the installed console script points at the same entry
        res = subprocess.run([foundry, "config", "validate", str(table_config)], capture_output=True, text=True,
                             env=env)
        assert res.returncode == 0 and "valid" in res.stdout


def test_a_missing_extra_is_named_with_its_install_command(tmp_path, table_config, capsys, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_uvicorn(name, *a, **kw):
        if name.split(".")[0] == "uvicorn":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *a, **kw)

    code, out, err = run_cli(capsys, "train", table_config, "--set", "train.epochs=1")
    monkeypatch.setattr(builtins, "__import__", no_uvicorn)
    code, _, err = run_cli(capsys, "serve", out.strip().splitlines()[-1])
    assert code == 2 and "needs the serve extra (missing module 'uvicorn'): pip install 'modelfoundry[serve]'" in err
    import tomllib

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    from modelfoundry.cli import EXTRAS

    assert set(EXTRAS.values()) <= set(extras) and "all" in extras
