"""An ONNX Runtime session called like the torch model (a batch dict in, logits out), so that prediction, serving
and evaluation run an exported model through the same code."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

VARIABLE_LENGTH = ("text:", "segment:")  # batch keys whose second axis is the (per-batch) text length


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
        import onnxruntime as ort  # deferred: an optional dependency only ONNX runs need

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
