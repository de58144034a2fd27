"""The Accelerator every training path starts from (precision from the hardware, gradient accumulation)."""

from __future__ import annotations

import torch

from ..core.hardware import resolve_precision


def make_accelerator(precision: str, grad_accum: int = 1):
    """A fresh Accelerator (its state is a process-wide singleton; reset what a previous run set)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=resolve_precision(precision), gradient_accumulation_steps=grad_accum,
                       cpu=not torch.cuda.is_available())
