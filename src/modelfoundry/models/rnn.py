"""LSTM / GRU over token sequences (text) or windows of numeric rows (time series)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..core.spec import InputSpec
from .base import FoundryModel
from .keras_zoo import BackendChoice
from .registry import register


class RNNConfig(BackendChoice):
    type: Literal["rnn"] = "rnn"
    cell: Literal["lstm", "gru"] = "lstm"
    """The recurrent cell."""
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(1, gt=0)
    bidirectional: bool = False
    embedding_dim: int = Field(128, gt=0)
    """Token embedding width (text inputs)."""
    hidden: list[int] = []
    """Hidden layers of the head."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)



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
        if lengths is not None and (torch.jit.is_tracing() or torch.compiler.is_exporting()):  # ONNX export
            return self.unpacked(x, lengths)
        if lengths is not None:
            x = pack_padded_sequence(x, lengths.cpu().clamp_min(1), batch_first=True, enforce_sorted=False)
        with torch.autocast(device_type=x.data.device.type, enabled=False):  # cuDNN/CPU RNNs want fp32 here
            _, h = self.rnn(x)
        h = h[0] if isinstance(h, tuple) else h
        if self.rnn.bidirectional:
            return torch.cat([h[-2], h[-1]], dim=-1)
        return h[-1]

    def unpacked(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The same final states as the packed forward, from plain tensor ops (what ONNX export can trace):
        each layer and direction runs over the right-padded batch, the backward direction over every sequence
        reversed within its own length, and the states are read at position length - 1. Padding comes after
        every real step, so it never reaches the states that are read."""
        rnn = self.rnn
        idx = (lengths - 1).clamp_min(0)
        steps = torch.arange(x.shape[1], device=x.device)[None, :]
        flip = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)  # its own inverse

        def reverse(seq: torch.Tensor) -> torch.Tensor:
            return seq.gather(1, flip[:, :, None].expand(-1, -1, seq.shape[-1]))

        def last(seq: torch.Tensor) -> torch.Tensor:
            return seq.gather(1, idx[:, None, None].expand(-1, 1, seq.shape[-1]))[:, 0]

        finals = []
        for layer in range(rnn.num_layers):
            outs = []
            for suffix in ("", "_reverse")[: 2 if rnn.bidirectional else 1]:
                names = [f"{w}_l{layer}{suffix}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if rnn.bias or w.startswith("weight")]
                weights = {n.replace(f"_l{layer}{suffix}", "_l0"): getattr(rnn, n) for n in names}
                seq_in = reverse(x) if suffix else x
                one = self._one_layer(int(weights["weight_ih_l0"].shape[1]))
                for key, w in weights.items():  # the same parameters, seen by a one-layer, one-way RNN
                    setattr(one, key, w)
                out, _ = one(seq_in)
                finals.append(last(out))
                outs.append(reverse(out) if suffix else out)
            x = torch.cat(outs, dim=-1)
        return torch.cat(finals[-2:], dim=-1) if rnn.bidirectional else finals[-1]

    def _one_layer(self, input_size: int) -> nn.Module:
        rnn = self.rnn
        cls = nn.LSTM if isinstance(rnn, nn.LSTM) else nn.GRU
        return cls(input_size, rnn.hidden_size, 1, bias=rnn.bias, batch_first=True)


@register("rnn", RNNConfig, {"numeric", "categorical", "text", "sequence"})
def build(cfg: RNNConfig, spec: InputSpec) -> nn.Module:
    width = cfg.hidden_size * (2 if cfg.bidirectional else 1)
    encoders, widths = {}, {}
    for col, vocab in spec.text.items():
        encoders[f"text:{col}"] = RecurrentEncoder(cfg, 0, vocab)
        widths[f"text:{col}"] = width
    if spec.sequence:
        encoders["sequence"] = RecurrentEncoder(cfg, spec.sequence[1], None)
        widths["sequence"] = width
    return FoundryModel(encoders, widths, spec.n_numeric, spec.categorical, cfg.hidden, spec.n_outputs, cfg.dropout)
