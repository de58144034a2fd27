"""ONNX export conformance: every registered family on every input kind it takes exports with variable batch
(and text-length) axes and matches torch on a batch of another size and width; recurrent encoders' export
path gives the packed path's states exactly; a file that is not ONNX is refused."""

from dataclasses import replace

import pytest
import torch

from modelfoundry.compress.onnx import export_onnx
from modelfoundry.core.onnxrt import OnnxModel, check_axes
from modelfoundry.models import REGISTRY, build_model
from modelfoundry.models.rnn import RecurrentEncoder, RNNConfig

from ..models.test_registry import CASES, INPUTS, NEEDS_TEXT, SMALL, spec


def _batch(s, kind: str, n: int, width: int, vocab: int) -> dict:
    _, make = INPUTS[kind]
    batch = make(n)
    if s.n_numeric and "numeric" not in batch:
        batch["numeric"] = torch.randn(n, s.n_numeric)
    if s.text:
        col = next(iter(s.text))
        batch[f"text:{col}"] = torch.randint(5, vocab, (n, width))
        batch[f"len:{col}"] = torch.randint(1, width + 1, (n,))
        batch[f"len:{col}"][0] = width
    return batch


def build_case(name: str, kind: str, tiny_bert):
    import json

    reg = REGISTRY[name]
    extra = {"path": str(tiny_bert)} if name == "pretrained" else {}
    cfg = reg.config_cls(type=name, dropout=0.0, **SMALL[name], **extra)
    kinds, _ = INPUTS[kind]
    s = spec(**kinds, **({} if kind == "numeric" else {"n_numeric": 1}))
    vocab = 30
    if name in NEEDS_TEXT:
        vocab = json.loads((tiny_bert / "config.json").read_text())["vocab_size"] if kind != "text" else 30
        s = replace(s, text={"t": vocab})
    return build_model(cfg, s).eval(), s, vocab


# the pretrained family's exports take seconds each: the full suite runs them, the fast tier the rest
# the fast tier exports each family on its text input (the variable-length axes) or, without one, on numeric; the full
# suite on every kind it takes
@pytest.mark.parametrize("name,kind", [(n, k) if n != "pretrained" and k == ("text" if "text" in REGISTRY[n].inputs else "numeric")
                                       else pytest.param(n, k, marks=pytest.mark.slow) for n, k in CASES])
def test_every_family_exports_with_variable_axes(name, kind, tmp_path, tiny_bert):
    model, s, vocab = build_case(name, kind, tiny_bert)
    export_onnx(model, _batch(s, kind, 4, 7, vocab), tmp_path / "m.onnx")
    onnx_model = OnnxModel(tmp_path / "m.onnx")
    assert check_axes(onnx_model, onnx_model.inputs) == []
    other = _batch(s, kind, 5, 11, vocab)  # another batch size and text width than the export's
    with torch.no_grad():
        want = model(other)
    assert torch.allclose(onnx_model(other), want, atol=1e-4), (onnx_model(other) - want).abs().max()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional,layers", [(False, 1), (False, 2), (True, 1), (True, 2)])
def test_recurrent_export_path_equals_packed(cell, bidirectional, layers):
    enc = RecurrentEncoder(RNNConfig(cell=cell, bidirectional=bidirectional, num_layers=layers, hidden_size=6,
                                     embedding_dim=5, dropout=0.0), 0, 20).eval()
    ids = torch.randint(1, 20, (6, 9))
    lengths = torch.tensor([9, 4, 1, 6, 2, 8])
    with torch.no_grad():
        packed = enc(ids, lengths)
        unpacked = enc.unpacked(enc.emb(ids).float(), lengths)
    assert packed.shape == unpacked.shape
    assert torch.allclose(packed, unpacked, atol=1e-6)


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x80\x04\x95 not a protobuf")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        OnnxModel(bad)


@pytest.mark.slow
def test_last_token_pooling_exports_with_variable_axes(tmp_path, tiny_bert):
    import json

    from modelfoundry.models.pretrained import PretrainedConfig

    vocab = json.loads((tiny_bert / "config.json").read_text())["vocab_size"]
    s = replace(spec(), text={"t": vocab})
    model = build_model(PretrainedConfig(type="pretrained", path=str(tiny_bert), pooling="last", dropout=0.0), s).eval()
    export_onnx(model, _batch(s, "text", 4, 7, vocab), tmp_path / "m.onnx")
    other = _batch(s, "text", 5, 11, vocab)  # the last real token sits elsewhere in each row
    with torch.no_grad():
        want = model(other)
    assert torch.allclose(OnnxModel(tmp_path / "m.onnx")(other), want, atol=1e-4)
