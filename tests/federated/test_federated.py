"""The federated stage on the local engine: a complete Run from Flower's rounds, robust aggregation against a
poisoned site, a site that fails, local DP, FedProx, and the errors a user meets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modelfoundry.api import train
from modelfoundry.config import ConfigError, load_config
from modelfoundry.predictor import Predictor
from tests.conftest import tabular_frame, tiny_config


@pytest.fixture()
def table(tmp_path):
    path = tmp_path / "d.csv"
    frame = tabular_frame(600)
    frame["branch"] = np.where(np.arange(600) % 3 == 0, "north", np.where(np.arange(600) % 3 == 1, "south", "east"))
    frame.to_csv(path, index=False)
    return path


def _config(tmp_path, table, federated: dict, **evaluate):
    raw = tiny_config(tmp_path, {"path": str(table), "target": "label"}, train={"epochs": 1}, evaluate=evaluate)
    raw["federated"] = federated
    return load_config(raw)


def _metrics(run) -> dict:
    return json.loads((run.path / "metrics.json").read_text())


def test_a_federation_is_a_complete_run(tmp_path, table):
    run = train(_config(tmp_path, table, {"clients": 3, "rounds": 3, "local_epochs": 2}, report=True))
    m = _metrics(run)
    assert run.status == "complete"
    assert m["test"]["accuracy"] > 0.8
    fed = m["federated"]
    assert fed["rounds"] == 3 and len(fed["sites"]) == 3
    profile = json.loads((run.path / "data_profile.json").read_text())
    assert sum(s["train_rows"] for s in fed["sites"]) == profile["splits"]["train"]  # every training row, once
    assert fed["start"]["val_accuracy"] < m["test"]["accuracy"]  # the rounds taught the global model
    history = run.history()
    assert [h["round"] for h in history] == [1, 2, 3]
    assert all(h["sites_trained"] == 3 and set(h["sites"]) == {"site-0", "site-1", "site-2"} for h in history)
    assert all("val_accuracy" in s for s in history[-1]["sites"].values())
    assert history[-1]["sent_bytes"] == 3 * fed["payload"]["per_site_round_bytes"] > 0
    assert "Federation" in (run.path / "report.html").read_text() and (run.path / "plots" / "federated_rounds.png").exists()
    cost = json.loads((run.path / "manifest.json").read_text())["cost"]  # every round's site training, counted
    assert cost["train_examples"] == 3 * 2 * profile["splits"]["train"]
    assert "## Cost" in (run.path / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert not (run.path / "explain_background.json").exists()  # the server keeps no site's rows
    pred = Predictor.load(run.path)  # the global model loads like any run's
    out = pred.predict(tabular_frame(50, seed=1).drop(columns=["label"]).assign(branch="north"))
    assert len(out) == 50


def test_partition_by_column_makes_one_site_per_value_and_leaves_it_out_of_the_inputs(tmp_path, table):
    run = train(_config(tmp_path, table, {"rounds": 1, "partition": {"method": "column", "column": "branch"}}))
    assert [s["site"] for s in _metrics(run)["federated"]["sites"]] == ["east", "north", "south"]
    assert json.loads((run.path / "model" / "preprocessor.json").read_text())["schema"]["branch"] == "ignore"


@pytest.mark.slow
def test_robust_aggregation_resists_a_poisoned_site(tmp_path, table):
    poison = {"sites": [0], "method": "scale", "factor": -10}
    acc = {s: _metrics(train(_config(tmp_path, table, {"clients": 5, "rounds": 3, "strategy": s, "poison": poison,
                                                       **({"options": {"num_malicious_nodes": 1}} if s == "krum"
                                                          else {})})))["test"]["accuracy"]
           for s in ("fedavg", "fedmedian", "krum")}
    assert acc["fedavg"] < 0.6 < 0.8 < min(acc["fedmedian"], acc["krum"])


def test_a_site_that_fails_leaves_the_round_to_the_others(tmp_path, table):
    run = train(_config(tmp_path, table, {"clients": 3, "rounds": 3, "fail": {"site": 1, "rounds": [2]}}))
    h = run.history()
    assert [x["sites_trained"] for x in h] == [3, 2, 3]
    assert h[1]["failed"] and "failed in round 2" in h[1]["failed"][0]["reason"]
    assert h[1]["sites_sampled"] == 3 and h[1]["sent_bytes"] == h[0]["sent_bytes"]  # it was sent the weights
    assert _metrics(run)["federated"]["failed"][0]["round"] == 2 and run.status == "complete"


def test_local_differential_privacy_adds_noise_and_reports_the_budget(tmp_path, table):
    base = {"clients": 3, "rounds": 2}
    plain = _metrics(train(_config(tmp_path, table, base)))
    noisy_run = train(_config(tmp_path, table, {**base, "privacy": {"clip": 0.5, "epsilon": 0.05, "delta": 1e-5}}))
    noisy = _metrics(noisy_run)
    assert noisy["federated"]["privacy"]["epsilon"] == pytest.approx(0.1)
    assert [h["epsilon"] for h in noisy_run.history()] == pytest.approx([0.05, 0.1])
    assert noisy["test"]["accuracy"] < plain["test"]["accuracy"] - 0.1  # that much noise costs accuracy


def test_fedprox_keeps_a_site_close_to_the_global_model(tmp_path, table):
    from modelfoundry.data import prepare
    from modelfoundry.federated.site import build_sites, global_state

    cfg = _config(tmp_path, table, {"clients": 2, "rounds": 1, "local_epochs": 3})
    data = prepare(cfg)
    site = build_sites(cfg, data)[0]
    model, names = global_state(cfg, data)
    start = {k: v for k, v in model.state_dict().items() if k in names}

    def moved(mu: float) -> float:
        sent, _ = site.fit(start, mu)
        return float(sum(((sent[k] - start[k]) ** 2).sum() for k in start))
    assert moved(10.0) < 0.5 * moved(0.0)


def test_strategy_options_flower_rejects_come_back_with_our_path(tmp_path, table):
    with pytest.raises(ValueError, match="federated.options: Flower's FedProx rejected .*unexpected keyword argument 'mu'"):
        train(_config(tmp_path, table, {"clients": 2, "rounds": 1, "strategy": "fedprox", "options": {"mu": 1}}))


def test_config_errors_are_named(tmp_path, table):
    raw = tiny_config(tmp_path, {"path": str(table), "target": "label"})
    with pytest.raises(ConfigError, match="federated.partition"):
        load_config({**raw, "federated": {"partition": {"method": "column"}}})
    with pytest.raises(ConfigError, match="evaluate.cv does not apply"):
        load_config({**raw, "evaluate": {"cv": {"folds": 3}}, "federated": {}})
    with pytest.raises(ValueError, match="poison.sites: \\[7\\]"):
        train(_config(tmp_path, table, {"clients": 2, "rounds": 1, "poison": {"sites": [7]}}))


def test_only_trained_tensors_travel(tmp_path, table):
    from modelfoundry.federated.site import travel_names

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    names = travel_names(model)
    assert "0.weight" not in names and "1.num_batches_tracked" not in names
    assert {"0.bias", "1.weight", "1.running_mean", "2.weight"} <= set(names)


@pytest.mark.slow
def test_lora_rounds_send_only_the_adapter_and_the_head(tmp_path):
    from modelfoundry.data import prepare
    from modelfoundry.federated.site import global_state

    path = tmp_path / "t.csv"
    tabular_frame(160, text=True)[["note", "label"]].to_csv(path, index=False)
    raw = tiny_config(tmp_path, {"path": str(path), "target": "label", "types": {"note": "text"},
                                 "text": {"max_length": 24}},
                      model={"type": "pretrained", "path": "minilm", "finetune": "lora", "adapter": {"r": 4}},
                      train={"epochs": 1, "lr": 2e-3, "batch_size": 16})
    raw["federated"] = {"clients": 2, "rounds": 2}
    cfg = load_config(raw)
    _, names = global_state(cfg, prepare(cfg))
    assert names and all("lora_" in n or n.startswith("out.") for n in names), names[:5]  # out: the head
    run = train(cfg)
    payload = _metrics(run)["federated"]["payload"]
    assert payload["share_of_full"] < 0.01 and payload["full_model_bytes"] > 80e6
    assert run.history()[0]["received_bytes"] == 2 * payload["per_site_round_bytes"]


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox", "fedadam", "fedyogi", "fedmedian", "krum", "trimmed_mean"])
def test_every_strategy_runs_a_round_and_moves_the_model(tmp_path, table, strategy):
    from modelfoundry.federated.strategies import CLASSES

    options = {"fedprox": {"proximal_mu": 0.1}, "krum": {"num_malicious_nodes": 1}, "trimmed_mean": {"beta": 0.2}}
    run = train(_config(tmp_path, table, {"clients": 4, "rounds": 2, "strategy": strategy,
                                          "options": options.get(strategy, {})}))
    m = _metrics(run)
    assert m["federated"]["strategy"] == strategy and CLASSES[strategy]
    assert run.history()[-1]["val_loss"] < m["federated"]["start"]["val_loss"]  # the aggregate is a better model


def test_fraction_samples_that_share_of_the_sites_each_round(tmp_path, table):
    run = train(_config(tmp_path, table, {"clients": 4, "rounds": 3, "fraction": 0.5}))
    assert [h["sites_trained"] for h in run.history()] == [2, 2, 2]
    assert len({tuple(sorted(h["sites"])) for h in run.history()}) > 1  # not always the same two


def test_a_flipping_site_trains_on_wrong_labels_only_there(tmp_path, table):
    from modelfoundry.data import prepare
    from modelfoundry.federated.site import build_sites

    cfg = _config(tmp_path, table, {"clients": 2})
    data = prepare(cfg)
    clean = build_sites(cfg, data)
    honest, flipped = build_sites(cfg.override({"federated.poison": {"sites": [1], "method": "flip"}}), data)
    assert torch.equal(honest.data.targets["train"], clean[0].data.targets["train"])
    assert torch.equal(flipped.data.targets["train"], (clean[1].data.targets["train"] + 1) % 2)  # every label wrong
    assert flipped.profile["poisoned"] == "flip" and "poisoned" not in honest.profile


def _weights(run) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run.path / "model" / "weights.safetensors"))


def test_secure_aggregation_gives_the_average_without_showing_the_server_one_site_and_survives_a_dropout(tmp_path,
                                                                                                         table):
    base = {"clients": 3, "rounds": 2, "fail": {"site": 2, "rounds": [2]}}  # site 2 dies after sharing its keys
    plain = train(_config(tmp_path, table, base))
    secure = train(_config(tmp_path, table, {**base, "secure_aggregation": {}}))
    summary = _metrics(secure)["federated"]["secure_aggregation"]
    assert summary["rounds_completed"] == 2 and summary["site_weights_seen_by_server"] == 0
    assert summary["max_weight"] == json.loads((secure.path / "data_profile.json").read_text())["splits"]["train"]
    h = secure.history()
    assert [x["secure_aggregation"] for x in h] == ["completed", "completed"] and [x["sites_trained"] for x in h] == [3, 2]
    assert [x["site_weights_seen"] for x in plain.history()] == [3, 2]  # the plain server holds every site's weights
    assert h[0]["received_bytes"] > plain.history()[0]["received_bytes"]  # masked vectors, keys and shares
    a, b = _weights(plain), _weights(secure)
    for k in a:  # the same FedAvg, up to SecAgg+'s quantization (steps of ~4e-6), with site 2 recovered from shares
        assert torch.allclose(a[k], b[k], atol=1e-4), k
    assert any(not torch.equal(a[k], b[k]) for k in a)  # it did go through the quantized, masked sum


def test_secure_aggregation_refuses_what_it_would_get_wrong(tmp_path, table):
    raw = tiny_config(tmp_path, {"path": str(table), "target": "label"})
    with pytest.raises(ConfigError, match="strategy krum needs every site's update"):
        load_config({**raw, "federated": {"strategy": "krum", "secure_aggregation": {}}})
    with pytest.raises(ValueError, match="needs at least 2 sites in a round"):
        train(_config(tmp_path, table, {"clients": 3, "rounds": 1, "fraction": 0.3, "secure_aggregation": {}}))
    with pytest.raises(ValueError, match="SecAggPlusWorkflow rejected .*reconstruction_threshold"):
        train(_config(tmp_path, table, {"clients": 3, "rounds": 1,
                                        "secure_aggregation": {"num_shares": 3, "reconstruction_threshold": 5}}))
    # weights SecAgg+ would clip (silently, in Flower) and a site heavier than max_weight are refused by the site
    for sa, reason in (({"clipping_range": 0.001}, "outside federated.secure_aggregation.clipping_range 0.001"),
                       ({"max_weight": 10}, "more than federated.secure_aggregation.max_weight 10")):
        with pytest.raises(RuntimeError, match="no round produced a global model") as err:
            train(_config(tmp_path, table, {"clients": 2, "rounds": 1, "secure_aggregation": sa}))
        runs = sorted((tmp_path / "runs").glob("*/*/history.jsonl"), key=lambda p: p.stat().st_mtime)
        assert reason in runs[-1].read_text(), err


def test_secure_aggregation_with_privacy_and_a_server_optimizer(tmp_path, table):
    run = train(_config(tmp_path, table, {"clients": 3, "rounds": 2, "strategy": "fedadam",
                                          "options": {"eta": 0.01}, "secure_aggregation": {"num_shares": 3,
                                                                                           "reconstruction_threshold": 2},
                                          "privacy": {"clip": 1.0, "epsilon": 10.0}}))
    m = _metrics(run)
    assert m["federated"]["secure_aggregation"]["rounds_completed"] == 2 and m["federated"]["privacy"]["epsilon"] == 20
    assert run.history()[-1]["val_loss"] < m["federated"]["start"]["val_loss"]


def test_a_secure_round_with_too_few_sites_left_keeps_the_global_model(tmp_path, table):
    run = train(_config(tmp_path, table, {"clients": 2, "rounds": 3, "fail": {"site": 1, "rounds": [2]},
                                          "secure_aggregation": {}}))  # 2 sites: no share of one can be rebuilt
    h = run.history()
    assert [x["secure_aggregation"] for x in h] == ["completed", "halted", "completed"]
    assert "fewer sites answered than reconstruction_threshold" in h[1]["failed"][-1]["reason"]
    assert h[1]["val_loss"] == h[0]["val_loss"]  # round 2 changed nothing
    assert _metrics(run)["federated"]["secure_aggregation"]["rounds_completed"] == 2


def test_secure_aggregation_quantizes_with_the_configured_ranges(tmp_path, table):
    """quantization_range and modulus_range reach SecAgg+: 256 levels over +-8 (steps of 1/16) move the aggregate far
    more than the default 2^22 levels do."""
    base = {"clients": 3, "rounds": 1}
    plain = _weights(train(_config(tmp_path, table, base)))
    fine = _weights(train(_config(tmp_path, table, {**base, "secure_aggregation": {}})))
    coarse = _weights(train(_config(tmp_path, table, {**base, "secure_aggregation": {"quantization_range": 256,
                                                                                     "modulus_range": 2 ** 20}})))

    def gap(w):
        return max(float((w[k] - plain[k]).abs().max()) for k in plain)
    assert gap(fine) < 1e-4 < 1e-2 < gap(coarse)
