"""ONNX export with dynamic batch and sequence axes, an ONNX Runtime model with the torch model's calling
convention (a batch dict in, logits out), and the parity check between the two."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.infer import predict_tensors
from ..core.onnxrt import VARIABLE_LENGTH, OnnxModel, check_axes
from ..core.runs import atomic_write_bytes


class _Positional(nn.Module):
    """The model called with its batch tensors as positional inputs, in a fixed key order (what ONNX needs)."""

    def __init__(self, model: nn.Module, keys: list[str]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.keys, tensors))).float()


def export_onnx(model: nn.Module, example: dict[str, torch.Tensor], path: Path) -> dict:
    """Write `model` as one self-contained ONNX file (torch.export-based exporter, opset 18+) with a symbolic
    batch axis on every input and a symbolic length axis on text inputs. Returns what was exported."""
    keys = sorted(example)
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=1)
    dims = tuple({0: batch, 1: length} if k.startswith(VARIABLE_LENGTH) else {0: batch} for k in keys)
    args = tuple(example[k] for k in keys)
    wrapper = _Positional(model.eval(), keys).eval()
    import logging

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = Path(tmp) / "model.onnx"
        try:
            if any(isinstance(m, nn.RNNBase) for m in model.modules()):
                # torch.export unrolls LSTM/GRU over the example's length and fixes that axis; the TorchScript
                # exporter keeps ONNX's own LSTM/GRU ops, whose length stays variable
                axes = {k: {0: "batch", 1: "length"} if k.startswith(VARIABLE_LENGTH) else {0: "batch"} for k in keys}
                torch.onnx.export(wrapper, args, str(out), input_names=keys, output_names=["logits"],
                                  dynamic_axes={**axes, "logits": {0: "batch"}}, dynamo=False, opset_version=17)
            else:
                torch.onnx.export(wrapper, args, str(out), input_names=keys, output_names=["logits"],
                                  dynamic_shapes=(dims,), dynamo=True, external_data=False, optimize=True,
                                  verbose=False)
        except Exception as exc:  # the exporter's own message says which operator or construct failed
            raise ValueError(f"ONNX export failed for this model ({type(exc).__name__}): {str(exc)[:600]}") from None
        atomic_write_bytes(path, out.read_bytes())
    session = OnnxModel(path)
    fixed = check_axes(session, keys)
    if fixed:
        raise ValueError(f"ONNX export fixed axes that must stay variable: {'; '.join(fixed)}")
    return {"inputs": session.inputs, "bytes": path.stat().st_size}


def _rename(graph, names: dict[str, str]) -> None:
    """Rename values throughout a graph and its subgraphs (loops and scans read outer values by name)."""
    for v in (*graph.input, *graph.output):
        v.name = names.get(v.name, v.name)
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename(sub, names)


def export_keras_onnx(model, path: Path) -> dict:
    """A Keras model (`KerasModule`, TensorFlow backend) as one ONNX file through Keras' exporter (tf2onnx), its inputs
    renamed to our batch keys and its output to `logits`, so that OnnxModel feeds it as any exported model."""
    import onnx

    from ..models.keras_io import keras_signature

    km = model.keras_model
    signature = keras_signature(km)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = Path(tmp) / "model.onnx"
        try:
            km.export(str(out), format="onnx", verbose=False, input_signature=[signature])
        except Exception as exc:
            raise ValueError(f"ONNX export (tf2onnx) failed for this Keras model ({type(exc).__name__}): "
                             f"{str(exc)[:600]}") from None
        proto = onnx.load(str(out))
        names = {**model.inputs, **{o.name: "logits" for o in proto.graph.output}}
        _rename(proto.graph, names)
        atomic_write_bytes(path, proto.SerializeToString())
    session = OnnxModel(path)
    fixed = check_axes(session, list(model.inputs.values()))
    if fixed:
        raise ValueError(f"ONNX export fixed axes that must stay variable: {'; '.join(fixed)}")
    return {"inputs": session.inputs, "bytes": path.stat().st_size, "exporter": "tf2onnx (Keras export)"}


def parity(model: nn.Module, onnx_model: OnnxModel, features: dict[str, torch.Tensor], task: str) -> float:
    """Largest absolute difference between torch's and ONNX Runtime's outputs (probabilities or values),
    over length-sorted batches of different sizes and widths."""
    a = predict_tensors(model, features, task, batch_size=64)
    b = predict_tensors(onnx_model, features, task, batch_size=64)
    return float(np.abs(a - b).max()) if len(a) else 0.0
