"""`import modelfoundry` gives the public API: the functions the foundry verbs call."""

import subprocess
import sys

import pytest

import modelfoundry as mf

from .conftest import cli_env, tabular_frame, tiny_config


def test_the_public_api_trains_predicts_compresses_and_refuses_a_finished_resume(tmp_path):
    tabular_frame().to_csv(tmp_path / "t.csv", index=False)
    cfg = mf.load_config(tiny_config(tmp_path, {"path": str(tmp_path / "t.csv"), "target": "label"}),
                         ["train.epochs=2"])
    assert isinstance(cfg, mf.Config) and mf.__version__
    run = mf.train(cfg)  # the function, though modelfoundry.train is also a package
    assert run.status == "complete" and mf.run_config(run).to_dict() == cfg.to_dict()
    out = mf.Predictor.load(run.path).predict([{"x1": 0.5, "x2": -1.0, "colour": "red"}])
    assert len(out) == 1 and out["prediction"][0] in set(tabular_frame()["label"])
    small = mf.compress(run.path, mf.CompressConfig(quantize="int8", latency_calls=2))
    assert small.status == "complete" and (small.path / "model" / "model.onnx").is_file()
    try:
        mf.resume(run.path)
        raise AssertionError("resumed a complete run")
    except ValueError as exc:
        assert "already complete" in str(exc)


@pytest.mark.slow
def test_train_and_tune_stay_callable_when_their_package_was_imported_first():
    code = ("from modelfoundry.train.loop import fit; from modelfoundry.tune.study import work; import modelfoundry as mf;"
            "import modelfoundry.train, modelfoundry.tune;"
            "assert callable(mf.train) and callable(mf.tune) and callable(modelfoundry.train);"
            "assert modelfoundry.train.loop.fit is fit; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env())
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]
