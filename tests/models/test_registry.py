"""Conformance: every registered model family builds on every input kind it declares, learns (the loss
falls on a tiny batch), round-trips through safetensors, and refuses inputs it cannot take."""

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from modelfoundry.core.spec import InputSpec
from modelfoundry.models import REGISTRY, build_model, load_model, register, save_model
from modelfoundry.models.mlp import MLPConfig


def spec(**kinds) -> InputSpec:
    base = {"task": "classification", "n_outputs": 3, "n_numeric": 0, "categorical": [], "text": {},
            "max_length": 34, "image": None, "sequence": None}
    return InputSpec.from_json({**base, **kinds})


INPUTS = {
    "numeric": (dict(n_numeric=4), lambda n: {"numeric": torch.randn(n, 4)}),
    "categorical": (dict(categorical=[5, 3]), lambda n: {"categorical": torch.randint(0, 3, (n, 2))}),
    "text": (dict(text={"t": 30}), lambda n: {"text:t": torch.randint(1, 30, (n, 7)), "len:t": torch.randint(1, 8, (n,))}),
    "image": (dict(image=[1, 8, 8]), lambda n: {"image": torch.randn(n, 1, 8, 8)}),
    "sequence": (dict(sequence=[6, 2]), lambda n: {"sequence": torch.randn(n, 6, 2)}),
    "audio": (dict(audio=[8, 12]), lambda n: {"audio": torch.randn(n, 1, 8, 12)}),
}
SMALL = {"mlp": {"hidden": [8]}, "cnn": {"channels": [4, 8], "hidden": [8]}, "rnn": {"hidden_size": 8, "embedding_dim": 8},
         "transformer": {"hidden_size": 8, "num_heads": 2, "intermediate_size": 16, "num_layers": 1},
         "pretrained": {"finetune": "full"}}
NEEDS_TEXT = {"pretrained"}  # families built around one text encoder: other inputs come beside it
# the predictive families (a head on their inputs); the language models (gpt, bert) have tests/models/test_lm.py
CASES = [(name, kind) for name, reg in REGISTRY.items() if "classification" in reg.tasks for kind in sorted(reg.inputs)]


@pytest.mark.parametrize("name,kind", CASES)
def test_family_learns_each_input_kind(name, kind, tmp_path, tiny_bert):
    reg = REGISTRY[name]
    extra = {"path": str(tiny_bert)} if name == "pretrained" else {}
    cfg = reg.config_cls(type=name, dropout=0.0, **SMALL[name], **extra)
    kinds, make = INPUTS[kind]
    s = spec(**kinds, **({} if kind == "numeric" else {"n_numeric": 1}))
    batch = {**make(16), "numeric": torch.randn(16, s.n_numeric)} if s.n_numeric else make(16)
    if name in NEEDS_TEXT and kind != "text":
        vocab = json.loads((tiny_bert / "config.json").read_text())["vocab_size"]
        s = replace(s, text={"t": vocab})
        batch.update({"text:t": torch.randint(5, vocab, (16, 7)), "len:t": torch.randint(1, 8, (16,))})
    elif name in NEEDS_TEXT:
        s = replace(s, text={"t": 30})
    model = build_model(cfg, s)
    y = torch.randint(0, 3, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = F.cross_entropy(model(batch), y)
        first = first if first is not None else float(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first
    model.eval()
    save_model(model, cfg, s, tmp_path)
    again, _, _ = load_model(tmp_path)
    assert torch.allclose(model(batch), again(batch), atol=1e-5)


def test_unsupported_inputs_are_refused_with_alternatives():
    with pytest.raises(ValueError, match="'rnn' cannot take image inputs; use one of: cnn, mlp|mlp, cnn"):
        build_model(REGISTRY["rnn"].config_cls(), spec(image=[1, 8, 8]))


def test_names_are_unique():
    with pytest.raises(ValueError, match="already registered"):
        register("mlp", MLPConfig, {"numeric"})(lambda cfg, s: None)


@pytest.mark.parametrize("name,options,kind", [
    ("mlp", {"activation": "gelu", "text_embedding_dim": 4}, "text"),
    ("mlp", {"activation": "silu"}, "numeric"),
    ("cnn", {"kernel_size": 5, "channels": [4]}, "image"),
    ("rnn", {"cell": "gru", "bidirectional": True, "num_layers": 2, "hidden_size": 4, "embedding_dim": 4}, "text"),
    ("rnn", {"cell": "lstm", "bidirectional": True, "hidden_size": 4}, "sequence"),
    ("transformer", {"pooling": "cls", "hidden_size": 8, "num_heads": 2, "intermediate_size": 8, "num_layers": 1}, "text"),
    ("transformer", {"pooling": "mean", "hidden_size": 8, "num_heads": 2, "intermediate_size": 8, "num_layers": 1, "hidden": [4]}, "sequence"),
])
def test_family_options_change_the_model(name, options, kind):
    kinds, make = INPUTS[kind]
    s = spec(**kinds)
    x = make(4)
    torch.manual_seed(0)
    default = build_model(REGISTRY[name].config_cls(**{k: v for k, v in options.items() if k in ("hidden_size", "num_heads", "intermediate_size", "num_layers")}), s).eval()
    torch.manual_seed(0)
    model = build_model(REGISTRY[name].config_cls(**options), s)
    out = model(x)
    out.sum().backward()
    assert out.shape == (4, 3)
    model.eval()
    assert repr(model) != repr(default) or not torch.allclose(model(x), default(x))


ANOMALY_CASES = [(name, kind) for name, reg in REGISTRY.items() if "anomaly" in reg.tasks for kind in sorted(reg.inputs)]
SMALL_ANOMALY = {"autoencoder": {"hidden": [8], "code": 2}, "deep_svdd": {"hidden": [8], "code": 4}}


@pytest.mark.parametrize("name,kind", ANOMALY_CASES)
def test_anomaly_family_learns_each_input_kind(name, kind, tmp_path):
    """An anomaly family returns one score per row, which training lowers (it is the loss), and reloads exactly
    (deep SVDD's centre is saved with its weights)."""
    reg = REGISTRY[name]
    cfg = reg.config_cls(type=name, **SMALL_ANOMALY[name])
    kinds, make = INPUTS[kind]
    s = replace(spec(**kinds, **({} if kind == "numeric" else {"n_numeric": 1})), task="anomaly", n_outputs=1)
    batch = {**make(32), "numeric": torch.randn(32, s.n_numeric)} if s.n_numeric else make(32)
    model = build_model(cfg, s)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        score = model(batch)
        assert score.shape == (32, 1)
        loss = score.mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    model.eval()
    save_model(model, cfg, s, tmp_path)
    again, _, _ = load_model(tmp_path)
    assert torch.allclose(model(batch), again(batch), atol=1e-5)


def test_task_and_family_must_match():
    with pytest.raises(ValueError, match="'autoencoder' does not train for data.task classification"):
        build_model(REGISTRY["autoencoder"].config_cls(), spec(n_numeric=3))
    with pytest.raises(ValueError, match="'cnn' does not train for data.task anomaly.*autoencoder, deep_svdd"):
        build_model(REGISTRY["cnn"].config_cls(), replace(spec(n_numeric=3), task="anomaly", n_outputs=1))
