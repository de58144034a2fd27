"""Runs side by side: a table of their test metrics, settings and timings, and their learning curves overlaid."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from ..core.plots import save_figure
from ..core.runs import Run
from ..core.schema import flatten

SETTINGS = ("model.type", "model.finetune", "train.lr", "train.batch_size", "train.epochs")


def compare_runs(paths: list[str | Path], plot: str | Path | None = None) -> pd.DataFrame:
    """One row per run: name, status, best epoch, the test metrics, key settings, fit time. With `plot`,
    a PNG of every run's validation curve (its early-stopping metric or val_loss) and train loss."""
    if len(paths) < 2:
        raise ValueError("foundry runs compare: give at least two run directories")
    runs = [Run.open(p) for p in paths]
    rows = []
    for run in runs:
        m = run.manifest()
        cfg = flatten(yaml.safe_load((run.path / "config.yaml").read_text(encoding="utf-8")))
        metrics = json.loads((run.path / "metrics.json").read_text()) if (run.path / "metrics.json").exists() else {}
        test = {k: v for k, v in (metrics.get("test") or {}).items() if isinstance(v, (int, float))}
        rows.append({"run": str(run.path), "status": m.get("status"), "best_epoch": m.get("best_epoch"),
                     **{f"test_{k}": round(v, 4) for k, v in test.items()},
                     **{k: cfg.get(k) for k in SETTINGS if k in cfg},
                     "fit_s": (m.get("timings") or {}).get("fit_s")})
    table = pd.DataFrame(rows)
    if plot is not None:
        _plot(runs, Path(plot))
    return table


def _plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histories = [r.history() for r in runs]
    keys = [k for k in ("val_accuracy", "val_rmse", "val_perplexity", "val_loss") if any(h and k in h[0] for h in histories)]
    key = keys[0] if keys else None
    fig, axes = plt.subplots(1, 2 if key else 1, figsize=(11 if key else 6, 3.8), squeeze=False)
    for run, h in zip(runs, histories):
        label = f"{run.path.parent.name}/{run.path.name}"
        ep = [r["epoch"] for r in h]
        axes[0][0].plot(ep, [r["train_loss"] for r in h], label=label)
        if key:
            axes[0][1].plot(ep, [r.get(key) for r in h], label=label)
    axes[0][0].set(xlabel="epoch", ylabel="train loss", title="Training loss")
    if key:
        axes[0][1].set(xlabel="epoch", ylabel=key, title=key)
    axes[0][-1].legend(fontsize=7)

    save_figure(fig, path)
