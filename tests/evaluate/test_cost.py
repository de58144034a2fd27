"""The cost report: FLOPs counted by torch agree with a hand count on an MLP and a BERT layer (within 5%); a run's
manifest and metrics carry time, memory, money and a verdict; prices must be positive."""

import json

import pytest
import torch

from modelfoundry.api import train
from modelfoundry.config import load_config
from modelfoundry.core.schema import ConfigError
from modelfoundry.evaluate.config import CostConfig
from modelfoundry.evaluate.cost import count_flops, verdict

from ..conftest import regression_frame, tabular_frame, tiny_config


class Wrap(torch.nn.Module):
    """Our models take a batch dict; these take the one tensor in it."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, batch: dict) -> torch.Tensor:
        out = self.inner(batch["x"])
        return out[0] if isinstance(out, tuple) else out


def test_mlp_flops_match_a_hand_count():
    mlp = Wrap(torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(20, 2)))
    batch = {"x": torch.randn(8, 10)}
    forward = 2 * (10 * 20 + 20 * 2)  # two flops per multiply-add
    # backward: both weight gradients, and the hidden layer's input gradient (the input needs none)
    backward = 2 * (10 * 20 + 20 * 2) + 2 * 20 * 2
    assert count_flops(mlp, batch, train=False) == pytest.approx(8 * forward, rel=0.05)
    assert count_flops(mlp, batch, train=True) == pytest.approx(8 * (forward + backward), rel=0.05)
    assert all(p.grad is None for p in mlp.parameters())  # counting leaves no gradients behind


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_bert_layer_flops_match_a_hand_count(attention):
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    h, i, length, n = 64, 128, 16, 2
    layer = Wrap(BertLayer(BertConfig(hidden_size=h, intermediate_size=i, num_attention_heads=4,
                                      attn_implementation=attention)))
    # per sequence: Q, K, V and output projections 4 x 2LH^2, the feed-forward 2 x 2LHI, scores and weighted sum 2 x 2L^2H
    hand = n * (8 * length * h * h + 4 * length * h * i + 4 * length * length * h)
    assert count_flops(layer, {"x": torch.randn(n, length, h)}, train=False) == pytest.approx(hand, rel=0.05)


def test_a_run_reports_its_cost_and_a_verdict(tmp_path):
    tabular_frame(400).to_csv(tmp_path / "d.csv", index=False)
    cfg = tiny_config(tmp_path, {"path": str(tmp_path / "d.csv"), "target": "label"}, evaluate={"baselines": True})
    cfg["cost"] = {"price_per_core_hour": 2.0, "watts_per_core": 20, "tolerance": 0.5}
    run = train(load_config(cfg))
    cost = json.loads((run.path / "manifest.json").read_text())["cost"]
    assert cost == json.loads((run.path / "metrics.json").read_text())["cost"]
    assert cost["inference_flops_per_example"] > 0 and cost["train_flops_per_example"] > 2 * cost["inference_flops_per_example"]
    assert cost["train_flops"] == cost["train_flops_per_example"] * cost["train_examples"]
    assert cost["train_examples"] == 3 * json.loads((run.path / "data_profile.json").read_text())["splits"]["train"]
    assert cost["usd_per_run"] == pytest.approx(cost["core_hours"] * 2.0, rel=0.01)
    assert cost["energy_kwh"] == pytest.approx(cost["core_hours"] * 20 / 1000, rel=0.01)
    assert cost["peak_rss_bytes"] > 10**7 and cost["parameters"] == cost["trainable_parameters"] > 0
    baselines = json.loads((run.path / "metrics.json").read_text())["baselines"]
    assert all(b["predict_s_per_1000"] > 0 and b["usd_per_1000_predictions"] > 0 for b in baselines.values())
    assert "verdict" in cost  # which baseline it names depends on timings: test_verdict holds the rule
    cfg["evaluate"]["baselines"] = False
    assert json.loads((train(load_config(cfg)).path / "manifest.json").read_text())["cost"]["verdict"] is None


def test_verdict_names_the_cheapest_baseline_within_tolerance():
    result = {"test": {"f1_macro": 0.784, "rmse": 10.0},
              "baselines": {"majority": {"f1_macro": 0.40, "predict_s_per_1000": 0.001},
                            "hist_gradient_boosting": {"f1_macro": 0.781, "predict_s_per_1000": 0.01},
                            "logistic_regression": {"f1_macro": 0.770, "predict_s_per_1000": 0.005}}}
    v = verdict(result, "f1_macro", True, model_s=0.004, cfg=CostConfig())  # 4 s per 1000 predictions
    assert v["baseline"] == "hist_gradient_boosting" and v["inference_cost_ratio"] == 400.0
    assert v["line"] == ("hist_gradient_boosting reaches: 0.781 vs 0.784 (f1_macro) at 1/400 of the inference cost: "
                         "consider it")
    assert verdict(result, "f1_macro", True, 0.004, CostConfig(tolerance=0.015))["baseline"] == "logistic_regression"
    assert verdict(result, "f1_macro", True, 0.004, CostConfig(tolerance=0.001)) is None  # none close enough
    assert verdict(result, "f1_macro", True, 0.000001, CostConfig()) is None  # the model predicts for less
    reg = {"test": {"rmse": 10.0}, "baselines": {"linear_regression": {"rmse": 10.05, "predict_s_per_1000": 0.001}}}
    assert verdict(reg, "rmse", False, 0.001, CostConfig())["baseline"] == "linear_regression"  # within 1% of 10.0
    assert verdict(reg, "rmse", False, 0.001, CostConfig(tolerance=0.001)) is None


def test_regression_runs_are_costed(tmp_path):
    regression_frame().to_csv(tmp_path / "r.csv", index=False)
    run = train(load_config(tiny_config(tmp_path, {"path": str(tmp_path / "r.csv"), "target": "y"})))
    cost = json.loads((run.path / "manifest.json").read_text())["cost"]
    assert cost["inference_flops_per_example"] == 2 * (3 * 16 + 16 * 1)  # the MLP [3 -> 16 -> 1], by hand


@pytest.mark.parametrize("field", ["price_per_core_hour", "watts_per_core"])
def test_prices_must_be_positive(tmp_path, field):
    cfg = tiny_config(tmp_path, {"path": "x.csv", "target": "y"})
    cfg["cost"] = {field: 0}
    with pytest.raises(ConfigError, match=f"cost.{field}: must be > 0, got 0"):
        load_config(cfg)
