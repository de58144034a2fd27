"""Dropout that is cheap on a CPU.

torch's CPU dropout draws one Bernoulli sample per element from its Mersenne Twister, about 13 ns an element on
the 2-core machines we measure on: in a LoRA fine-tuning step of MiniLM, where PEFT drops the input of every
adapted Linear, that was over a third of the forward pass (bench/finetune_vs_hf.py). `FastDropout` draws 64
random bits per four elements from the same generator (so `torch.manual_seed` and a checkpoint's saved RNG state
reproduce it exactly) and keeps an element when its 16-bit draw clears a threshold: the keep probability is
1 - p rounded to a multiple of 1/65536 (off by at most 8e-6), and kept elements are scaled by 1 / (1 - p) as usual.
On a GPU torch's own dropout is already fast and is left alone."""

from __future__ import annotations

import torch
from torch import nn


class _Masked(torch.autograd.Function):
    """x * mask, where the mask already holds 0 or 1 / (1 - p) in x's dtype: one float multiply each way (a bool
    mask would be converted to float again in the forward and in the backward, which cost more than the multiply)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mask)
        return torch.mul(x, mask)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return torch.mul(grad, mask), None


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A bool tensor of `shape`, each element True with probability 1 - p (to within 1/65536)."""
    n = shape.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, 2**63 - 1)
    threshold = round(p * 65536) - 32768  # int16 draws are uniform on [-32768, 32767]
    return (bits.view(torch.int16)[:n] >= threshold).view(shape)


class FastDropout(nn.Module):
    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = keep_mask(x.shape, self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return _Masked.apply(x, mask)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(model: nn.Module) -> int:
    """Replace every plain `nn.Dropout` in `model` (in place) by `FastDropout` with the same p; returns how many.
    Neither holds parameters or buffers, so state dicts, checkpoints and saved models are unchanged."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and child.p > 0.0:
                parent.add_module(name, FastDropout(child.p))  # same slot, also in a Sequential or ModuleDict
                swapped += 1
    return swapped
