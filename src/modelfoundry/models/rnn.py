"""LSTM / GRU over token sequences (text) or windows of numeric rows (time series)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..config import RNNConfig
from . import FoundryModel, register


class RecurrentEncoder(nn.Module):
    """Returns the final hidden state (both directions concatenated when bidirectional)."""

    def __init__(self, cfg: RNNConfig, input_size: int, vocab: int | None):
        super().__init__()
        self.emb = nn.Embedding(vocab, cfg.embedding_dim, padding_idx=0) if vocab else None
        rnn_cls = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(cfg.embedding_dim if vocab else input_size, cfg.hidden_size, cfg.num_layers, batch_first=True,
                           bidirectional=cfg.bidirectional, dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.emb is not None:
            x = self.emb(x)
        x = x.float()
        if lengths is not None:
            x = pack_padded_sequence(x, lengths.cpu().clamp_min(1), batch_first=True, enforce_sorted=False)
        with torch.autocast(device_type=x.data.device.type, enabled=False):  # cuDNN/CPU RNNs want fp32 here
            _, h = self.rnn(x)
        h = h[0] if isinstance(h, tuple) else h
        if self.rnn.bidirectional:
            return torch.cat([h[-2], h[-1]], dim=-1)
        return h[-1]


@register("rnn", RNNConfig, {"numeric", "categorical", "text", "sequence"})
def build(cfg: RNNConfig, spec: dict) -> nn.Module:
    width = cfg.hidden_size * (2 if cfg.bidirectional else 1)
    encoders, widths = {}, {}
    for col, vocab in spec["text"].items():
        encoders[f"text:{col}"] = RecurrentEncoder(cfg, 0, vocab)
        widths[f"text:{col}"] = width
    if spec["sequence"]:
        encoders["sequence"] = RecurrentEncoder(cfg, spec["sequence"][1], None)
        widths["sequence"] = width
    return FoundryModel(encoders, widths, spec["n_numeric"], spec["categorical"], cfg.hidden, spec["n_outputs"], cfg.dropout)
