"""Pruning: structured pruning really removes units (fewer parameters, smaller tensors) in the head, CNN blocks
and BERT layers, keeps the model running, and round-trips through save/load; magnitude pruning reaches its
sparsity; distillation's loss is the Hinton mixture."""

import pytest
import torch
import torch.nn.functional as F

from modelfoundry.compress.prune import magnitude_prune, structured_prune
from modelfoundry.models import load_model, save_model
from modelfoundry.train.loop import distill_loss

from ..models.test_registry import CASES
from .test_onnx import _batch, build_case

# an RNN's (and a plain-input Transformer's) head here has no hidden layer, and no encoder units to remove
PRUNABLE = [(n, k) for n, k in CASES if n != "rnn" and not (n == "transformer" and k in ("numeric", "categorical"))]


@pytest.mark.parametrize("name,kind", PRUNABLE)
def test_structured_pruning_removes_units_and_round_trips(name, kind, tmp_path, tiny_bert):
    model, s, vocab = build_case(name, kind, tiny_bert)
    before = sum(p.numel() for p in model.parameters())
    report = structured_prune(model, 0.5)
    after = sum(p.numel() for p in model.parameters())
    assert after < before and report["parameters_after"] == after
    batch = _batch(s, kind, 5, 9, vocab)
    with torch.no_grad():
        out = model(batch)
    assert out.shape == (5, 3) and torch.isfinite(out).all()
    from modelfoundry.models import REGISTRY

    extra = {"path": str(tiny_bert)} if name == "pretrained" else {}
    from ..models.test_registry import SMALL

    cfg = REGISTRY[name].config_cls(type=name, dropout=0.0, **SMALL[name], **extra)
    save_model(model, cfg, s, tmp_path)
    again, _, _ = load_model(tmp_path)
    assert sum(p.numel() for p in again.parameters()) == after
    with torch.no_grad():
        assert torch.allclose(again(batch), out, atol=1e-5)


def test_bert_layers_lose_heads_and_ffn_units(tiny_bert):
    model, _, _ = build_case("pretrained", "text", tiny_bert)
    report = structured_prune(model, 0.5)
    layer = model.encoders["text__t"].model.encoder.layer[0]
    assert layer.attention.self.query.out_features == 16  # 2 heads of 16 -> 1
    assert layer.intermediate.dense.out_features == 32 and layer.output.dense.in_features == 32
    assert report["attention_heads_removed"] == 2 and report["ffn_units_removed"] == 64


def test_pruning_keeps_the_strongest_units():
    from modelfoundry.models import build_model
    from modelfoundry.models.mlp import MLPConfig

    from ..models.test_registry import spec

    model = build_model(MLPConfig(hidden=[4], dropout=0.0), spec(n_numeric=3))
    with torch.no_grad():
        model.trunk[0].weight.copy_(torch.tensor([[1.0] * 3, [0.01] * 3, [2.0] * 3, [0.02] * 3]))
    structured_prune(model, 0.5)
    assert torch.allclose(model.trunk[0].weight, torch.tensor([[1.0] * 3, [2.0] * 3]))


def test_magnitude_pruning_reaches_its_sparsity(tiny_bert):
    model, _, _ = build_case("transformer", "text", tiny_bert)
    report = magnitude_prune(model, 0.6)
    assert report["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert "do not get faster" in report["note"]


def test_a_model_without_prunable_units_is_refused(tiny_bert):
    model, _, _ = build_case("rnn", "text", tiny_bert)
    with pytest.raises(ValueError, match="nothing to prune structurally.*method: magnitude"):
        structured_prune(model, 0.5)


def test_distillation_loss_mixes_soft_and_hard_terms():
    logits = torch.randn(8, 4)
    y = torch.randint(0, 4, (8,))
    teacher = F.log_softmax(torch.randn(8, 4), -1)
    assert torch.allclose(distill_loss("classification", logits, y, teacher, 2.0, 0.0, None), F.cross_entropy(logits, y))
    same = distill_loss("classification", logits, y, F.log_softmax(logits, -1), 3.0, 1.0, None)
    assert float(same) == pytest.approx(0.0, abs=1e-5)
    soft = distill_loss("classification", logits, y, teacher, 2.0, 1.0, None)
    kl = F.kl_div(F.log_softmax(logits / 2, -1), F.log_softmax(teacher / 2, -1), log_target=True, reduction="batchmean")
    assert torch.allclose(soft, 4 * kl)
    reg = distill_loss("regression", logits[:, :1], y.float(), logits[:, 0], 2.0, 1.0, None)
    assert float(reg) == pytest.approx(0.0, abs=1e-6)


def test_model_layers_keeps_the_first_layers(tiny_bert):
    from modelfoundry.models.pretrained import PretrainedConfig, PretrainedEncoder

    enc = PretrainedEncoder(PretrainedConfig(path=str(tiny_bert), finetune="full", layers=1))
    assert len(enc.model.encoder.layer) == 1 and enc.model.config.num_hidden_layers == 1
    with pytest.raises(ValueError, match="has 2 layers, got 3"):
        PretrainedEncoder(PretrainedConfig(path=str(tiny_bert), finetune="full", layers=3))
