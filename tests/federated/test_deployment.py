"""engine deployment: Flower's SuperLink, SuperNodes and `flwr run` as separate processes on loopback; a site's own
data file checked against the config; `foundry federated join` against no SuperLink fails fast and says why."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from modelfoundry.config import load_config
from modelfoundry.core.runs import Run
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
def test_a_deployment_with_sites_that_join_one_with_its_own_file(tmp_path):
    """The server (`foundry train`, start_sites false) and two `foundry federated join` processes, one reading its own
    file; site 1 fails in round 2 and the round completes with site 0."""
    import yaml

    port = _free_port()
    data = tmp_path / "d.csv"
    tabular_frame(300).to_csv(data, index=False)
    own = tmp_path / "site1.csv"
    tabular_frame(120, seed=7).to_csv(own, index=False)
    raw = tiny_config(tmp_path, {"path": str(data), "target": "label"}, train={"epochs": 1})
    raw["federated"] = {"clients": 2, "rounds": 2, "engine": "deployment", "start_sites": False,
                        "superlink": f"127.0.0.1:{port}", "fail": {"site": 1, "rounds": [2]},
                        "options": {"fraction_evaluate": 0.0}}  # no site evaluation: half the ClientApp processes
    cfg_path = tmp_path / "fed.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cli = [sys.executable, "-m", "modelfoundry.cli"]
    server = subprocess.Popen([*cli, "train", str(cfg_path)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True,
                              text=True)
    joins = []
    try:
        for _ in range(150):  # the SuperLink listens within seconds
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        joins = [subprocess.Popen([*cli, "federated", "join", str(cfg_path), "--site", "0"], env=ENV, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                 subprocess.Popen([*cli, "federated", "join", str(cfg_path), "--site", "1", "--data", str(own)], env=ENV,
                                  start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        out, err = server.communicate(timeout=400)
    finally:
        for p in [server, *joins]:  # each with its children (a join's SuperNode, the server's SuperLink)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    assert server.returncode == 0, err[-3000:]
    assert "foundry federated join" in err  # the server printed each site's command
    run = Run.open(out.strip().splitlines()[-1])
    m = json.loads((run.path / "metrics.json").read_text())
    assert run.status == "complete" and m["federated"]["engine"] == "deployment"
    history = run.history()
    assert [h["sites_trained"] for h in history] == [2, 1]  # the failing site's round completed with the other
    assert "failed in round 2" in history[1]["failed"][0]["reason"]
    assert history[0]["sent_bytes"] > 0 and m["test"]["accuracy"] > 0.6
    sites = {s["site"]: s for s in m["federated"]["sites"]}
    assert sites["site-1"]["data"] == str(own) and sites["site-1"]["train_rows"] + sites["site-1"]["val_rows"] == 120
    assert len(Predictor.load(run.path).predict(tabular_frame(5, seed=3).drop(columns=["label"]))) == 5


@pytest.mark.slow
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
