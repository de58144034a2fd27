"""Pruning. Magnitude: global L1 unstructured pruning (torch.nn.utils.prune), made permanent; the weights keep
their shapes, so it is reported as sparsity. Structured: whole units are removed, by weight magnitude, so the
tensors shrink and the model gets smaller and faster:

- the head (every FoundryModel): hidden neurons of each trunk layer, with the next layer's inputs;
- CNN encoders: output channels of every conv block but the last (conv, batch norm, next conv's inputs),
  ranked by |batch-norm scale| x the next conv's weights on that channel;
- BERT-style encoders (from scratch or pretrained, adapters merged first): attention heads
  (|Q_h| |K_h| + |V_h| |O_h|) and feed-forward units (|W_in row| |W_out column|), at least one of each kept.

The pruned tensors' names and shapes are stored in architecture.json (`resized`) so that load_model rebuilds
the smaller layout before loading the weights."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models.cnn import ImageEncoder, SequenceConvEncoder, TextConvEncoder


def magnitude_prune(model: nn.Module, amount: float) -> dict:
    import torch.nn.utils.prune as tprune

    targets = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    if not targets:
        raise ValueError("compress.prune: this model has no linear or conv layers to prune")
    tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=amount)
    for m, name in targets:
        tprune.remove(m, name)
    total = sum(m.weight.numel() for m, _ in targets)
    zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
    return {"method": "magnitude", "amount": amount, "layers": len(targets), "weights": total,
            "sparsity": round(zeros / total, 4),
            "note": "zeroed weights keep their shape: dense kernels do not get faster, and the file is not smaller"}


def _n_keep(n: int, amount: float) -> int:
    return max(1, n - int(math.floor(n * amount)))


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    return torch.sort(torch.topk(scores, keep).indices).values


class _Resizer:
    """Slices parameters in place and remembers every tensor whose shape changed."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = {id(t): n for n, t in model.state_dict(keep_vars=True).items()}
        self.resized: dict[str, list[int]] = dict(model.resized or {})

    def slice(self, module: nn.Module, attr: str, dim: int, index: torch.Tensor) -> None:
        old = getattr(module, attr)
        if old is None:
            return
        name = self.names[id(old)]
        new = old.data.index_select(dim, index.to(old.device)).clone()
        if isinstance(old, nn.Parameter):
            setattr(module, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            module.register_buffer(attr, new)
        self.names[id(getattr(module, attr))] = name
        self.resized[name] = list(new.shape)

    def rows(self, linear: nn.Module, index: torch.Tensor) -> None:
        """Keep these output units of a Linear/Conv (weights and bias)."""
        self.slice(linear, "weight", 0, index)
        self.slice(linear, "bias", 0, index)

    def cols(self, linear: nn.Module, index: torch.Tensor) -> None:
        """Keep these input units of a Linear/Conv."""
        self.slice(linear, "weight", 1, index)

    def norm(self, bn: nn.Module, index: torch.Tensor) -> None:
        for attr in ("weight", "bias", "running_mean", "running_var"):
            self.slice(bn, attr, 0, index)
        bn.num_features = len(index)


def _l1_out(w: torch.Tensor) -> torch.Tensor:
    return w.abs().flatten(1).sum(1)


def _l1_in(w: torch.Tensor) -> torch.Tensor:
    return w.abs().transpose(0, 1).flatten(1).sum(1)


def _prune_trunk(model: nn.Module, r: _Resizer, amount: float) -> int:
    linears = [m for m in model.trunk if isinstance(m, nn.Linear)] + [model.out]
    removed = 0
    for a, b in zip(linears[:-1], linears[1:]):
        keep = _n_keep(a.out_features, amount)
        idx = _top(_l1_out(a.weight.data) * _l1_in(b.weight.data), keep)
        removed += a.out_features - keep
        r.rows(a, idx)
        r.cols(b, idx)
        a.out_features, b.in_features = keep, keep
    return removed


def _prune_conv(body: nn.Sequential, r: _Resizer, amount: float) -> int:
    convs = [m for m in body if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    norms = [m for m in body if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    removed = 0
    for conv, bn, nxt in zip(convs[:-1], norms[:-1], convs[1:]):  # the last block is the encoder's output width
        keep = _n_keep(conv.out_channels, amount)
        idx = _top(bn.weight.data.abs() * _l1_in(nxt.weight.data), keep)
        removed += conv.out_channels - keep
        r.rows(conv, idx)
        r.norm(bn, idx)
        r.cols(nxt, idx)
        conv.out_channels, nxt.in_channels = keep, keep
    return removed


def _bert_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if hasattr(m, "attention") and hasattr(m, "intermediate")
            and hasattr(m.attention, "self") and hasattr(m.attention.self, "query")]


def _prune_bert_layer(layer: nn.Module, r: _Resizer, amount: float) -> tuple[int, int]:
    att = layer.attention.self
    out = layer.attention.output.dense
    d = att.attention_head_size
    heads = att.query.out_features // d

    def per_head(w: torch.Tensor, dim: int) -> torch.Tensor:
        w = w.abs() if dim == 0 else w.abs().t()
        return w.reshape(heads, d, -1).sum((1, 2))

    score = (per_head(att.query.weight.data, 0) * per_head(att.key.weight.data, 0)
             + per_head(att.value.weight.data, 0) * per_head(out.weight.data, 1))
    keep_h = _n_keep(heads, amount)
    kept = _top(score, keep_h)
    idx = (kept[:, None] * d + torch.arange(d)[None, :]).flatten()
    for lin in (att.query, att.key, att.value):
        r.rows(lin, idx)
        lin.out_features = len(idx)
    r.cols(out, idx)
    out.in_features = len(idx)
    att.num_attention_heads, att.all_head_size = keep_h, keep_h * d
    inter, down = layer.intermediate.dense, layer.output.dense
    keep_f = _n_keep(inter.out_features, amount)
    fidx = _top(_l1_out(inter.weight.data) * _l1_in(down.weight.data), keep_f)
    removed_f = inter.out_features - keep_f
    r.rows(inter, fidx)
    r.cols(down, fidx)
    inter.out_features, down.in_features = keep_f, keep_f
    return heads - keep_h, removed_f


def structured_prune(model: nn.Module, amount: float) -> dict:
    """Remove `amount` of the units of every prunable layer; records `model.resized` for saving."""
    if model.base:
        raise ValueError("structured pruning needs every weight in the model: merge the adapter first")
    r = _Resizer(model)
    report = {"method": "structured", "amount": amount, "parameters_before": sum(p.numel() for p in model.parameters())}
    report["head_neurons_removed"] = _prune_trunk(model, r, amount)
    channels = heads = ffn = 0
    for enc in getattr(model, "encoders", {}).values():
        if isinstance(enc, (ImageEncoder, TextConvEncoder, SequenceConvEncoder)):
            channels += _prune_conv(enc.body, r, amount)
        for layer in _bert_layers(enc):
            h, f = _prune_bert_layer(layer, r, amount)
            heads, ffn = heads + h, ffn + f
    report.update(conv_channels_removed=channels, attention_heads_removed=heads, ffn_units_removed=ffn)
    if not r.resized:
        raise ValueError("compress.prune: nothing to prune structurally in this model (no hidden head layers, conv "
                         "blocks before the last, or Transformer layers); use method: magnitude")
    model.resized = r.resized
    report["parameters_after"] = sum(p.numel() for p in model.parameters())
    return report
