"""What a run cost and what its predictions will cost: FLOPs counted by torch (torch.utils.flop_counter) for one
training step and one inference batch, the run's wall time and peak memory, parameters, an energy estimate and money
at the config's price per core-hour; and a verdict when a baseline comes within `cost.tolerance` of the model for a
fraction of its inference cost. Written to metrics.json and manifest.json under `cost`, the report and the card."""

from __future__ import annotations

import resource
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ..core.infer import TensorData
from . import metrics as M
from .config import CostConfig

FLOP_ROWS = 8
"""Rows in the batch whose FLOPs are counted (per example = the count / rows). 8, not 32: the count runs the model in
fp32 on them, forward and backward, which cost a MiniLM run 3.4 s at 32 rows (1.0 s at 8; the per-example figure 10%
lower, the first 32 rows being padded to their longest)."""


def _cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)


def _cpu_sdpa_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, q, k, v)


_aten = torch.ops.aten
CPU_ATTENTION = {_aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
                 _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward}
"""torch's counter knows the CUDA attention kernels, not the CPU one that scaled_dot_product_attention runs here: without
these a BERT layer's attention (4 x L^2 x H per sequence) went uncounted."""


@dataclass
class Usage:
    """What the training stage knows and evaluation does not: rows seen per epoch, epochs run, seconds so far, and
    the CPU threads (or processes) that did the work."""

    train_rows: int
    epochs: int
    seconds: float
    threads: int


def count_flops(model: torch.nn.Module, batch: dict[str, torch.Tensor], train: bool) -> int:
    """FLOPs of one forward pass over `batch` (and its backward pass when `train`), as torch counts them: 2 per
    multiply-add of every matmul, convolution and attention; elementwise work is not counted. Gradients computed
    here are dropped. A model that counts its own (a Keras model: `count_flops`) is asked."""
    if hasattr(model, "count_flops"):
        return model.count_flops(batch, train)
    was = model.training
    model.train(train)
    try:
        with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter, torch.set_grad_enabled(train):
            out = model(batch)
            if train:
                out.float().sum().backward()
        return int(counter.get_total_flops())
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was)


def first_rows(features: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """The first n rows as a batch, text trimmed to the batch's longest sequence as training and inference do (the
    loss's row weights and a teacher's outputs are not model inputs)."""
    inputs = {k: v for k, v in features.items() if k not in ("sample_weight", "teacher")}
    return TensorData(inputs).__getitems__(list(range(min(n, len(TensorData(inputs))))))


def flops_per_example(model: torch.nn.Module, features: dict[str, torch.Tensor], train: bool) -> float:
    batch = first_rows(features, FLOP_ROWS)
    rows = len(next(iter(batch.values())))
    return count_flops(model, batch, train) / max(rows, 1)


def sig(x: float, digits: int = 4) -> float:
    """Rounded to significant digits: a thousandth of a cent is still worth showing."""
    return float(f"{x:.{digits}g}")


def peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def money(seconds: float, threads: int, cfg: CostConfig) -> tuple[float, float]:
    """(core-hours, kWh) of `seconds` on `threads` cores at the config's watts per core."""
    core_hours = seconds * threads / 3600
    return core_hours, core_hours * cfg.watts_per_core / 1000


def verdict(result: dict, metric: str, higher: bool, model_s: float, cfg: CostConfig) -> dict | None:
    """The cheapest baseline within `tolerance` of the model on `metric` (or better), when it predicts for less; None
    when no baseline qualifies. For an error metric (rmse) the tolerance is relative to the model's error."""
    score = result["test"].get(metric)
    if score is None:
        return None
    slack = cfg.tolerance if higher else cfg.tolerance * abs(score)
    close = [(b["predict_s_per_1000"], name, b[metric]) for name, b in result.get("baselines", {}).items()
             if b.get(metric) is not None and b.get("predict_s_per_1000") is not None
             and (b[metric] >= score - slack if higher else b[metric] <= score + slack)]
    if not close:
        return None
    s, name, value = min(close)
    model_1000 = model_s * 1000
    if s >= model_1000:
        return None
    ratio = model_1000 / max(s, 1e-9)
    better = value > score if higher else value < score
    cheaper = f"at 1/{ratio:.0f} of the inference cost" if ratio >= 1.5 else "at no more inference cost"
    return {"baseline": name, "metric": metric, "baseline_score": round(value, 4), "model_score": round(score, 4),
            "inference_cost_ratio": round(ratio, 1),
            "line": f"{name} {'beats the model' if better else 'reaches'}: {value:.3f} vs {score:.3f} ({metric}) "
                    f"{cheaper}: consider it"}


def cost_report(model: torch.nn.Module, data, result: dict, usage: Usage, cfg: CostConfig, split: str) -> dict:
    """The `cost` section: counted FLOPs, time, memory, parameters, energy, money and the verdict."""
    train_feats, test_feats = data.encoded["train"].features, data.encoded[split].features
    train_fl = flops_per_example(model, train_feats, train=True)
    infer_fl = flops_per_example(model, test_feats, train=False)
    per_example_s = result["predict_s_per_1000"] / 1000  # the evaluation's own timed pass over the split
    core_hours, kwh = money(usage.seconds, usage.threads, cfg)
    pred_core_hours, pred_kwh = money(per_example_s * 1000, usage.threads, cfg)
    metric = M.headline(data.task, result["test"])
    higher = not M.lower_is_better(metric)
    out = {
        "train_flops": int(train_fl * usage.train_rows * usage.epochs),
        "train_flops_per_example": int(train_fl),
        "inference_flops_per_example": int(infer_fl),
        "train_examples": usage.train_rows * usage.epochs,
        "wall_s": round(usage.seconds, 2),
        "threads": usage.threads,
        "core_hours": sig(core_hours),
        "peak_rss_bytes": peak_rss_bytes(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "energy_kwh": sig(kwh),
        "usd_per_run": sig(core_hours * cfg.price_per_core_hour),
        "predict_s_per_1000": sig(per_example_s * 1000),
        "usd_per_1000_predictions": sig(pred_core_hours * cfg.price_per_core_hour),
        "energy_kwh_per_1000_predictions": sig(pred_kwh),
        "price_per_core_hour": cfg.price_per_core_hour,
        "watts_per_core": cfg.watts_per_core,
        "basis": (model.FLOP_BASIS.format(counter=model.flop_counter(), rows=FLOP_ROWS) if hasattr(model, "count_flops")
                  else f"FLOPs counted by torch.utils.flop_counter on {FLOP_ROWS} rows (one training step: forward and "
                       "backward; one inference pass)") + f" times the rows seen; money = wall seconds x {usage.threads} threads "
                 f"x ${cfg.price_per_core_hour} per core-hour; energy = core-hours x {cfg.watts_per_core} W",
    }
    for b in result.get("baselines", {}).values():
        if b.get("predict_s_per_1000") is not None:
            b["usd_per_1000_predictions"] = sig(b["predict_s_per_1000"] * usage.threads / 3600 * cfg.price_per_core_hour)
    out["verdict"] = verdict(result, metric, higher, per_example_s, cfg)
    return out
