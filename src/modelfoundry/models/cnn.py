"""CNN: 2-D conv blocks for images and audio spectrograms; 1-D conv blocks (with global max-pooling) for text and sequences."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..core.spec import InputSpec
from .base import FoundryModel, text_mask
from .keras_zoo import BackendChoice
from .registry import register


class CNNConfig(BackendChoice):
    type: Literal["cnn"] = "cnn"
    channels: list[int] = [32, 64]
    """Output channels of each conv block (conv, batch norm, ReLU, 2x2 max-pool)."""
    kernel_size: int = Field(3, gt=0)
    hidden: list[int] = [128]
    """Hidden layers of the head."""
    dropout: float = Field(0.2, ge=0.0, lt=1.0)



def conv_blocks(dims: int, in_ch: int, channels: list[int], k: int) -> nn.Sequential:
    conv, norm, pool = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
    layers: list[nn.Module] = []
    for out_ch in channels:
        layers += [conv(in_ch, out_ch, k, padding=k // 2), norm(out_ch), nn.ReLU()]
        if dims == 2:
            layers.append(pool(2, ceil_mode=True))
        in_ch = out_ch
    return nn.Sequential(*layers)


class ImageEncoder(nn.Module):
    def __init__(self, in_ch: int, channels: list[int], k: int):
        super().__init__()
        self.body = conv_blocks(2, in_ch, channels, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).amax(dim=(-2, -1))


class SpectrogramEncoder(nn.Module):
    """2-D conv blocks over a log-mel spectrogram [N, 1, mels, frames], then max over time only: where in frequency
    a pattern sits (a formant) is what tells one word from another, so the frequency axis is kept and flattened."""

    def __init__(self, mels: int, channels: list[int], k: int):
        super().__init__()
        self.body = conv_blocks(2, 1, channels, k)
        self.width = channels[-1] * self.bands(mels, len(channels))

    @staticmethod
    def bands(mels: int, blocks: int) -> int:
        for _ in range(blocks):  # each block's 2x2 max-pool, ceil_mode
            mels = -(-mels // 2)
        return mels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).amax(dim=-1).flatten(1)


class TextConvEncoder(nn.Module):
    def __init__(self, vocab: int, channels: list[int], k: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, channels[0], padding_idx=0)
        self.body = conv_blocks(1, channels[0], channels, k)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.body(self.emb(ids).transpose(1, 2))
        return h.masked_fill(~text_mask(ids, lengths)[:, None, :], -1e4).amax(-1)


class SequenceConvEncoder(nn.Module):
    def __init__(self, n_features: int, channels: list[int], k: int):
        super().__init__()
        self.body = conv_blocks(1, n_features, channels, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.transpose(1, 2)).amax(-1)


@register("cnn", CNNConfig, {"numeric", "categorical", "text", "image", "audio", "sequence"})
def build(cfg: CNNConfig, spec: InputSpec) -> nn.Module:
    encoders, widths = {}, {}
    if spec.image:
        encoders["image"] = ImageEncoder(spec.image[0], cfg.channels, cfg.kernel_size)
        widths["image"] = cfg.channels[-1]
    if spec.audio:
        encoders["audio"] = SpectrogramEncoder(spec.audio[0], cfg.channels, cfg.kernel_size)
        widths["audio"] = encoders["audio"].width
    for col, vocab in spec.text.items():
        encoders[f"text:{col}"] = TextConvEncoder(vocab, cfg.channels, cfg.kernel_size)
        widths[f"text:{col}"] = cfg.channels[-1]
    if spec.sequence:
        encoders["sequence"] = SequenceConvEncoder(spec.sequence[1], cfg.channels, cfg.kernel_size)
        widths["sequence"] = cfg.channels[-1]
    return FoundryModel(encoders, widths, spec.n_numeric, spec.categorical, cfg.hidden, spec.n_outputs, cfg.dropout)
