"""Hardware detection: what a run records about its machine, and bf16 autocast where the hardware runs it fast
(CUDA GPUs with bf16, CPUs with AVX-512 BF16 or AMX)."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

import torch


@functools.cache
def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def resolve_precision(choice: str) -> str:
    """'auto' | 'fp32' | 'bf16' -> Accelerate's mixed_precision value ('no' or 'bf16')."""
    if choice == "fp32":
        return "no"
    if choice == "bf16":
        return "bf16"
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if cpu_has_bf16() else "no"


def hardware() -> dict[str, Any]:
    """What a run's manifest records about the machine it ran on."""
    return {"machine": platform.machine(), "cpus": os.cpu_count(), "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu_bf16": cpu_has_bf16(), "torch_threads": torch.get_num_threads()}
