"""Text end to end (English and Chinese), and Predictor on raw strings and records."""

import json

import pandas as pd
import pytest

from modelfoundry.config import load_config
from modelfoundry.predictor import Predictor
from modelfoundry.train import train

from .conftest import REPO, tiny_config

FIXTURES = REPO / "tests" / "fixtures"


@pytest.mark.parametrize("model", [
    {"type": "transformer", "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "num_layers": 1},
    {"type": "rnn", "cell": "gru", "hidden_size": 32, "embedding_dim": 32},
    {"type": "cnn", "channels": [32], "hidden": []},
    {"type": "mlp", "hidden": [32]},
], ids=lambda m: m["type"])
def test_chinese_text_classification(tmp_path, model):
    data = {"path": str(FIXTURES / "zh_medical_sample.csv"), "target": "department",
            "text": {"vocab_size": 800, "min_frequency": 1, "max_length": 32}, "split": {"test": 0.25, "val": 0.1}}
    run = train(load_config(tiny_config(tmp_path, data, model=model, train={"epochs": 12, "lr": 3e-3, "early_stopping": None})))
    metrics = json.loads((run.path / "metrics.json").read_text())["test"]
    assert metrics["accuracy"] > 0.6  # 3 departments: chance is 1/3
    pred = Predictor.load(run.path)
    out = pred.predict(["我想咨询肝硬化的前期症状是什么？", "癫痫发作怎么办"])
    assert list(out.columns[:1]) == ["prediction"] and len(out) == 2
    assert set(out["prediction"]) <= set(pred.classes)


def test_english_text_with_a_bpe_tokenizer_and_records(tmp_path):
    data = {"path": str(FIXTURES / "banking77_sample.csv"), "target": "category",
            "text": {"tokenizer": "bpe", "vocab_size": 600, "min_frequency": 1}}
    run = train(load_config(tiny_config(tmp_path, data, train={"epochs": 15, "lr": 5e-3, "early_stopping": None})))
    assert json.loads((run.path / "metrics.json").read_text())["test"]["accuracy"] > 0.7
    pred = Predictor.load(run.path)
    by_string = pred.predict(["my card has not arrived yet"])
    by_record = pred.predict([{"text": "my card has not arrived yet"}])
    pd.testing.assert_frame_equal(by_string, by_record)
