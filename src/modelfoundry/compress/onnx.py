"""ONNX export with dynamic batch and sequence axes, an ONNX Runtime model with the torch model's calling
convention (a batch dict in, logits out), and the parity check between the two."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..runs import atomic_write_bytes

VARIABLE_LENGTH = ("text:", "segment:")  # batch keys whose second axis is the (per-batch) text length


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


def check_axes(session: OnnxModel, keys: list[str]) -> list[str]:
    """Inputs whose batch (or text-length) axis came out as a fixed number: an exporter that specialises a
    shape silently would make the model fail on any other batch."""
    problems = []
    for inp in session.session.get_inputs():
        want = [0, 1] if inp.name.startswith(VARIABLE_LENGTH) else [0]
        for axis in want:
            if axis < len(inp.shape) and not isinstance(inp.shape[axis], str):
                problems.append(f"{inp.name} axis {axis} = {inp.shape[axis]}")
    return problems


class OnnxModel:
    """An ONNX Runtime session that the prediction code calls like the torch model: `model(batch) -> logits`."""

    inference_dtype = None
    inference_tokens = 256
    """Padded tokens per text batch: ONNX Runtime's int8 MiniLM ran 573 rows/s at 256 vs 528 at 512 (64 served
    rows) and the same on the whole test set (bench/inference_batching.py --backend onnx)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS", 0)) or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a file that is not an ONNX model (ONNX is protobuf: nothing is unpickled)
            raise ValueError(f"{path}: not a loadable ONNX model ({type(exc).__name__}: {str(exc)[:300]})") from None
        self.inputs = [i.name for i in self.session.get_inputs()]

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feeds = {k: np.ascontiguousarray(batch[k].cpu().numpy()) for k in self.inputs}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def parity(model: nn.Module, onnx_model: OnnxModel, features: dict[str, torch.Tensor], task: str) -> float:
    """Largest absolute difference between torch's and ONNX Runtime's outputs (probabilities or values),
    over length-sorted batches of different sizes and widths."""
    from ..train.loop import predict_tensors

    a = predict_tensors(model, features, task, batch_size=64)
    b = predict_tensors(onnx_model, features, task, batch_size=64)
    return float(np.abs(a - b).max()) if len(a) else 0.0
