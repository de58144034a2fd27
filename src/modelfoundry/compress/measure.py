"""What a compression stage cost and bought: size, parameters, latency at batch 1 and 32, throughput and every
test metric; the HTML report with a plot of the main metric against latency."""

from __future__ import annotations

import html
import time

import numpy as np
import torch

from ..core.html import page
from ..core.html import table as html_table
from ..core.infer import TensorData, predict_tensors
from ..core.plots import save_figure
from ..core.runs import Run, atomic_write_text
from ..data import Prepared
from ..evaluate import metrics as M
from ..evaluate.predict_split import outputs


def tensor_bytes(model: torch.nn.Module) -> int:
    """Bytes of every distinct tensor in the state dict (what a safetensors file of it holds); a Keras model's
    variables (`keras_model`)."""
    if getattr(model, "keras_model", None) is not None:
        return int(sum(v.numpy().nbytes for v in model.keras_model.weights))
    seen, total = set(), 0
    for t in model.state_dict().values():
        if t.data_ptr() in seen and t.numel():
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def _call(model, batch: dict[str, torch.Tensor]) -> None:
    bf16 = getattr(model, "inference_dtype", None) == "bfloat16"  # a torch model or an ONNX session
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(batch)


def latency(model, features: dict[str, torch.Tensor], calls: int, batch_size: int) -> dict:
    """Model calls on encoded rows (preprocessing excluded), 3 warm-up calls first; milliseconds per call."""
    data = TensorData(features)
    n = len(data)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    size = min(batch_size, n)
    starts = [(i * size) % max(n - size + 1, 1) for i in range(calls + 3)]
    batches = [data.__getitems__(order[s:s + size]) for s in starts]
    times = []
    for i, b in enumerate(batches):
        t = time.perf_counter()
        _call(model, b)
        if i >= 3:
            times.append((time.perf_counter() - t) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return {"batch": size, "p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3),
            "rows_per_s": round(size * 1000 / float(p50), 1)}


CONSISTENCY_ROWS = 32


def batch_consistency(model, data: Prepared, split: str, batched: np.ndarray, rows: int = CONSISTENCY_ROWS) -> dict:
    """The split's first `rows` rows predicted one at a time, against the same rows' outputs inside the batches the
    metrics came from. A row's answer should not depend on the rows beside it; ONNX Runtime's dynamic int8 takes one
    activation scale per tensor, over the whole batch, so there it does (static int8's calibrated ranges do not).
    max_abs_diff: probabilities (classification) or values in the target's units; changed: predicted labels that
    differ (classification)."""
    feats = data.encoded[split].features
    n = min(rows, len(batched))
    alone = predict_tensors(model, {k: v[:n] for k, v in feats.items()}, data.task, batch_size=1)
    if data.task == "regression":
        alone = data.preprocessor.decode_regression(alone)
    out = {"rows": n, "max_abs_diff": float(np.abs(alone - batched[:n]).max()) if n else 0.0}
    if data.task == "classification":
        out["changed"] = int((alone.argmax(1) != batched[:n].argmax(1)).sum()) if n else 0
    return out


def measure(name: str, model, data: Prepared, split: str, names: list[str], size_bytes: int, calls: int,
            parameters: int | None = None, **extra) -> dict:
    y, out = outputs(model, data, split)
    feats = data.encoded[split].features
    return {"stage": name, "size_bytes": int(size_bytes), "size_mb": round(size_bytes / 1e6, 2),
            "parameters": parameters, "metrics": M.compute(data.task, y, out, names),
            "batch_1": latency(model, feats, calls, 1), "batch_32": latency(model, feats, calls, 32),
            "batch_consistency": batch_consistency(model, data, split, out), **extra}


def main_metric(task: str) -> str:
    """Plotted against latency: accuracy for classifiers (what a reader weighs a speed-up against), else the task's
    headline metric (rmse, an anomaly detector's pr_auc)."""
    return "accuracy" if task == "classification" else M.headline(task)


def write_report(run: Run, summary: dict) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = summary["stages"]
    key = summary["main_metric"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, b in zip(axes, ("batch_1", "batch_32")):
        xs = [max(s[b]["p50_ms"], 1e-3) for s in stages]  # a tiny model's call can round to 0 ms: log axis
        ys = [s["metrics"].get(key) for s in stages]
        ax.plot(xs, ys, "o-", color="#888", zorder=1)
        for s, x, y in zip(stages, xs, ys):
            ax.scatter([x], [y], zorder=2)
            ax.annotate(s["stage"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set(xlabel=f"p50 latency per call, {b.replace('_', ' ')} (ms)", ylabel=key, xscale="log",
               title=f"{key} vs latency ({b.replace('_', ' ')})")
        fmt = matplotlib.ticker.FormatStrFormatter("%g")
        ax.xaxis.set_major_formatter(fmt)
        ax.xaxis.set_minor_formatter(fmt)

    save_figure(fig, run.path / "plots" / "accuracy_vs_latency.png")

    base = stages[0]
    rows = []
    for s in stages:
        rows.append([s["stage"], f"{s['size_mb']:.2f}", f"{s['parameters']:,}" if s.get("parameters") else "-",
                     f"{s['batch_1']['p50_ms']:.2f} / {s['batch_1']['p95_ms']:.2f}",
                     f"{s['batch_32']['p50_ms']:.2f} / {s['batch_32']['p95_ms']:.2f}",
                     f"{s['batch_32']['rows_per_s']:,.0f}",
                     f"{s['batch_32']['rows_per_s'] / base['batch_32']['rows_per_s']:.2f}x",
                     _consistency(s.get("batch_consistency")),
                     *[_fmt(s["metrics"].get(m)) for m in summary["metrics"]]])
    head = ["stage", "size (MB)", "parameters", "batch 1 p50 / p95 (ms)", "batch 32 p50 / p95 (ms)", "rows/s (batch 32)",
            "speed-up", "alone vs in a batch", *summary["metrics"]]
    table = html_table([dict(zip(head, r)) for r in rows])  # the shared table: it scrolls inside the page width
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary.get("notes", []))
    body = f"""<p>Source run: {html.escape(summary['source'])}. Scored on its {html.escape(summary['split'])} split
({summary['rows']} rows). Latency: model calls on encoded rows, preprocessing excluded, {summary['threads']} threads.</p>
<h2>Every stage</h2>{table}
<ul>{notes}</ul>
<h2>{html.escape(key)} against latency</h2><img src="plots/accuracy_vs_latency.png" alt="metric vs latency">"""
    atomic_write_text(run.path / "compression_report.html", page(f"{summary['name']} compression", summary["name"], body,
                                                                 subtitle=run.path.name, width=1100))


def _consistency(c: dict | None) -> str:
    """The batch-consistency cell: the largest output difference, and changed labels, alone vs in a batch."""
    if not c:
        return "-"
    return f"{c['max_abs_diff']:.2g}" + (f", {c['changed']}/{c['rows']} labels" if "changed" in c else "")


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v)
