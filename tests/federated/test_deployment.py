"""engine deployment: Flower's SuperLink, SuperNodes and `flwr run` as separate processes on loopback; a site's own
data file checked against the config; `foundry federated join` against no SuperLink fails fast and says why."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from modelfoundry.api import train
from modelfoundry.config import load_config
from modelfoundry.data import DataError, prepare
from modelfoundry.federated.deploy import own_site
from modelfoundry.predictor import Predictor
from tests.conftest import tabular_frame, tiny_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path, federated: dict):
    path = tmp_path / "d.csv"
    tabular_frame(300).to_csv(path, index=False)
    raw = tiny_config(tmp_path, {"path": str(path), "target": "label"}, train={"epochs": 1})
    raw["federated"] = federated
    return load_config(raw)


@pytest.mark.slow
def test_a_loopback_deployment_completes_and_survives_a_failing_site(tmp_path, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    cfg = _config(tmp_path, {"clients": 2, "rounds": 2, "engine": "deployment",
                             "superlink": f"127.0.0.1:{_free_port()}", "fail": {"site": 1, "rounds": [2]}})
    run = train(cfg)
    m = json.loads((run.path / "metrics.json").read_text())
    assert run.status == "complete" and m["federated"]["engine"] == "deployment"
    history = run.history()
    assert [h["sites_trained"] for h in history] == [2, 1]  # the failing site's round completed with the other
    assert "failed in round 2" in history[1]["failed"][0]["reason"]
    assert history[0]["sent_bytes"] > 0 and m["test"]["accuracy"] > 0.6
    assert sorted(s["site"] for s in m["federated"]["sites"]) == ["site-0", "site-1"]
    assert len(Predictor.load(run.path).predict(tabular_frame(5, seed=3).drop(columns=["label"]))) == 5
    leftover = subprocess.run(["pgrep", "-f", f"--superlink {cfg.federated.superlink}"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""  # every SuperNode was stopped


def test_join_without_a_superlink_fails_fast_with_a_reason(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    data = tmp_path / "d.csv"
    tabular_frame(60).to_csv(data, index=False)
    import yaml

    cfg_path.write_text(yaml.safe_dump({**tiny_config(tmp_path, {"path": str(data), "target": "label"}),
                                        "federated": {"clients": 2, "superlink": f"127.0.0.1:{_free_port()}"}}))
    out = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "federated", "join", str(cfg_path), "--site", "0"],
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode != 0 and "no SuperLink answered" in out.stderr


def test_a_site_with_its_own_file_is_checked_against_the_config(tmp_path):
    cfg = _config(tmp_path, {"clients": 2})
    data = prepare(cfg)
    own = tmp_path / "mine.csv"
    tabular_frame(80, seed=5).to_csv(own, index=False)
    site = own_site(cfg, 1, data.preprocessor, str(own))
    assert site.profile["train_rows"] + site.profile["val_rows"] == 80
    assert np.isclose(sum(site.profile["label_mix"].values()), site.profile["train_rows"])
    tabular_frame(80, seed=5).drop(columns=["colour"]).to_csv(own, index=False)
    with pytest.raises(DataError, match="site 1's data has no column\\(s\\) colour"):
        own_site(cfg, 1, data.preprocessor, str(own))
