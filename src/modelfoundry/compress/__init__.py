"""The compress stage (run.py: distill -> prune -> bf16 | ONNX -> int8, each measured), a Run of its own."""

from .config import CompressConfig, DistillConfig, PruneConfig
from .run import compress, variant_name

__all__ = ["compress", "variant_name", "CompressConfig", "DistillConfig", "PruneConfig"]
