"""int8 quantization with ONNX Runtime: dynamic (weights int8, activations quantized on the fly) and static
(QDQ: uint8 activations, int8 weights, ranges calibrated on training rows). bf16 for the torch backend lives in
models.to_bf16."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from ..core.infer import TensorData
from ..core.runs import atomic_write_bytes

OPS = ["MatMul", "Gemm", "Conv"]
DYNAMIC_OPS = [*OPS, "Gather"]  # Gather: embedding tables, most of a small encoder's bytes


def _quiet():
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    logging.getLogger("root").setLevel(logging.ERROR)


def int8_dynamic(src: Path, dst: Path) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _quiet()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.int8.onnx"
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=DYNAMIC_OPS)
        atomic_write_bytes(dst, out.read_bytes())
    return {"method": "int8 dynamic (ONNX Runtime quantize_dynamic)", "weights": "int8", "ops": DYNAMIC_OPS}


class _Calibration:
    """Feeds ONNX Runtime's calibrator batches of training rows, with the model's input names."""

    def __init__(self, features: dict[str, torch.Tensor], inputs: list[str], rows: int, batch: int = 16):
        data = TensorData(features)
        n = min(rows, len(data))
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n].tolist()
        self.batches = [data.__getitems__(order[i:i + batch]) for i in range(0, n, batch)]
        self.inputs, self.i = inputs, 0
        self.rows = n

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        b = self.batches[self.i]
        self.i += 1
        return {k: b[k].numpy() for k in self.inputs}

    def rewind(self):
        self.i = 0


def int8_static(src: Path, dst: Path, features: dict[str, torch.Tensor], inputs: list[str], rows: int) -> dict:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    _quiet()
    reader = _Calibration(features, inputs, rows)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.int8s.onnx"
        quantize_static(str(src), str(out), reader, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=OPS, calibrate_method=CalibrationMethod.MinMax,
                        per_channel=False)
        atomic_write_bytes(dst, out.read_bytes())
    return {"method": "int8 static (ONNX Runtime quantize_static, QDQ, MinMax)", "weights": "int8",
            "activations": "uint8", "calibration_rows": reader.rows, "ops": OPS}
