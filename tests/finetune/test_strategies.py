"""Every registered fine-tuning strategy, picked up from the registry: a new PEFT method's one registration line is
enough for it to be trained, saved, reloaded and (where it merges) merged here."""

import json

import numpy as np
import pytest
import torch

from modelfoundry.config import load_config
from modelfoundry.finetune import STRATEGIES, merge_adapters, register
from modelfoundry.predictor import Predictor
from modelfoundry.train import train

from ..conftest import SAMPLE, tiny_config

TEXTS = ["where is my card?", "I was charged twice", "how do I top up", "my transfer failed"]


def _run(tmp_path, bert, finetune: str):
    data = {"path": str(SAMPLE), "target": "category"}
    lr = 5e-3 if STRATEGIES[finetune].peft_config is None else 2e-2
    return train(load_config(tiny_config(tmp_path, data, model={"type": "pretrained", "path": str(bert), "finetune": finetune},
                                         train={"epochs": 3, "lr": lr, "early_stopping": None})))


def _proba(pred, texts):
    out = pred.predict(texts)
    proba = out[[c for c in out.columns if c.startswith("prob_")]].to_numpy(float)
    assert proba.shape == (len(texts), 4)  # four intents
    return proba


# the fast tier trains the methods no other test trains; tests/models/test_pretrained.py has the rest in it too
COVERED = {"full", "linear_probe", "lora", "ia3", "adalora", "prefix", "prompt"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in COVERED else n for n in STRATEGIES])
def test_every_registered_strategy_trains_saves_and_reloads(tmp_path, tiny_bert, name):
    s = STRATEGIES[name]
    run = _run(tmp_path, tiny_bert, name)
    manifest = json.loads((run.path / "manifest.json").read_text())
    trainable, total = manifest["trainable_parameters"], manifest["parameters"]
    if name == "full":
        assert trainable == total
    else:  # the pretrained weights stay frozen: an adapter, virtual tokens or nothing train beside the head
        assert 0 < trainable < total / 2, (trainable, total)
    if s.peft_config is not None:  # only the adapter and the head are stored; the base reloads from its directory
        assert manifest["saved_model"]["tensors_from_base"] > 0
    again = _proba(Predictor.load(run.path, merge=False), TEXTS)
    merged = Predictor.load(run.path)  # merged for inference where the strategy merges
    assert np.allclose(_proba(merged, TEXTS), again, atol=1e-4)
    assert any(p.requires_grad for p in merged.model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, s in STRATEGIES.items() if s.mergeable])
def test_mergeable_adapters_fold_into_the_base(tmp_path, tiny_bert, name):
    run = _run(tmp_path, tiny_bert, name)
    pred = Predictor.load(run.path, merge=False)
    enc = next(iter(pred.model.encoders.values()))
    assert hasattr(enc.model, "peft_config")
    assert merge_adapters(pred.model) == 1
    assert not hasattr(enc.model, "peft_config") and enc.finetune == "full"


def test_names_are_unique_and_the_config_offers_exactly_the_registered_ones():
    with pytest.raises(ValueError, match="already registered"):
        register("lora", "LoraConfig")
    from modelfoundry.models.pretrained import PretrainedConfig

    assert set(PretrainedConfig.model_fields["finetune"].annotation.__args__) == set(STRATEGIES)
    with pytest.raises(ValueError, match="adapter` options apply to the PEFT methods"):
        PretrainedConfig(finetune="full", adapter={"r": 4})
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("name", ["lora", "ia3"])
def test_a_gpt2_decoder_is_adapted_without_peft_correcting_us(tiny_gpt2, name):
    import warnings

    from transformers import AutoModel

    from modelfoundry.finetune.adapt import adapt

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = adapt(AutoModel.from_pretrained(tiny_gpt2), name, {}, None, "FEATURE_EXTRACTION")
    assert not [w for w in caught if "fan_in_fan_out" in str(w.message)]  # GPT-2's Conv1D layers: set, not corrected
    assert model.peft_config["default"].fan_in_fan_out
