"""report.html with plots/: learning curves, confusion matrix, ROC and PR curves, per-class table,
baseline comparison; predicted-vs-actual and residuals for regression."""

from __future__ import annotations

import html
import json

import numpy as np

from ..core.html import page
from ..core.html import table as _table
from ..core.plots import pyplot as _fig
from ..core.plots import save_figure, tick_labels
from ..core.runs import Run, atomic_write_text
from ..data import Prepared


def _save(plt, fig, run: Run, name: str) -> str:
    save_figure(fig, run.path / "plots" / name)
    return f"plots/{name}"


def plots(run: Run, data: Prepared, result: dict, y: np.ndarray, out: np.ndarray) -> list[tuple[str, str]]:
    plt = _fig()
    made = []
    history = run.history()
    if history:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        ep = [h["epoch"] for h in history]
        axes[0].plot(ep, [h["train_loss"] for h in history], label="train")
        if "val_loss" in history[0]:
            axes[0].plot(ep, [h["val_loss"] for h in history], label="validation")
        axes[0].set(xlabel="epoch", ylabel="loss", title="Loss")
        axes[0].legend()
        key = next((k for k in ("val_accuracy", "val_rmse") if k in history[0]), None)
        if key:
            axes[1].plot(ep, [h[key] for h in history])
            axes[1].set(xlabel="epoch", ylabel=key, title=key)
        made.append(("Learning curves", _save(plt, fig, run, "learning_curves.png")))
    if data.task == "classification":
        from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

        classes = data.preprocessor.classes_
        k = len(classes)
        cm = confusion_matrix(y, out.argmax(1), labels=np.arange(k))
        fig, ax = plt.subplots(figsize=(min(12, 2 + 0.35 * k), min(12, 2 + 0.35 * k)))
        ax.imshow(cm, cmap="Blues")
        names, key = tick_labels([str(c)[:12] for c in classes])
        if k <= 20:
            ax.set_xticks(range(k), names, rotation=90)
            ax.set_yticks(range(k), names)
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=8)
        ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
        made.append(("Confusion matrix" + (f" (classes: {key})" if key and k <= 20 else ""),
                     _save(plt, fig, run, "confusion_matrix.png")))
        if len(np.unique(y)) > 1:
            onehot = np.eye(k)[y]
            score = out[:, 1] if k == 2 else out.ravel()
            truth = y if k == 2 else onehot.ravel()
            fig, axes = plt.subplots(1, 2, figsize=(10, 4))
            fpr, tpr, _ = roc_curve(truth, score)
            axes[0].plot(fpr, tpr)
            axes[0].plot([0, 1], [0, 1], "--", color="grey")
            axes[0].set(xlabel="false positive rate", ylabel="true positive rate",
                        title="ROC" + (" (micro-average)" if k > 2 else ""))
            prec, rec, _ = precision_recall_curve(truth, score)
            axes[1].plot(rec, prec)
            axes[1].set(xlabel="recall", ylabel="precision", title="Precision-recall" + (" (micro-average)" if k > 2 else ""))
            made.append(("ROC and precision-recall", _save(plt, fig, run, "roc_pr.png")))
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].scatter(y, out, s=6, alpha=0.5)
        lo, hi = float(min(y.min(), out.min())), float(max(y.max(), out.max()))
        axes[0].plot([lo, hi], [lo, hi], "--", color="grey")
        axes[0].set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
        axes[1].hist(out - y, bins=40)
        axes[1].set(xlabel="residual (predicted - actual)", title="Residuals")
        made.append(("Predictions", _save(plt, fig, run, "predictions.png")))
    if result.get("baselines"):
        metric = "f1_macro" if data.task == "classification" else "rmse"
        metric = metric if metric in result["test"] else next(iter(result["test"]))
        names = ["model"] + list(result["baselines"])
        vals = [result["test"].get(metric)] + [b.get(metric) for b in result["baselines"].values()]
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.barh(names, [v or 0 for v in vals], color=["tab:blue"] + ["tab:grey"] * (len(names) - 1))
        ax.set(xlabel=metric, title=f"Model vs baselines ({metric})")
        made.append(("Model vs baselines", _save(plt, fig, run, "baselines.png")))
    return made


def write_report(run: Run, data: Prepared, result: dict, y: np.ndarray, out: np.ndarray, extra_html: str = "") -> None:
    figures = plots(run, data, result, y, out)
    m = run.manifest()
    rows = [{"model": "model", **result["test"]}]
    rows += [{"model": name, **{k: v for k, v in b.items() if k in result["test"]}}
             for name, b in result.get("baselines", {}).items()]
    cv = ""
    if result.get("cv"):
        cv = "<h2>Cross-validation</h2>" + _table([{"metric": k, **v} for k, v in result["cv"].items()])
    per_class = ""
    if result.get("per_class"):
        per_class = "<h2>Per class</h2>" + _table(result["per_class"])
    imgs = "".join(f"<h2>{html.escape(t)}</h2><img src='{src}' alt='{html.escape(t)}'>" for t, src in figures)
    profile = data.profile
    trunc = ""
    if result.get("truncated_texts"):
        t = result["truncated_texts"]
        trunc = "<h2>Truncated texts</h2><p>" + "; ".join(
            f"{html.escape(s)}: {n} of {t['rows'].get(s, '?')} in '{html.escape(c)}'"
            for s, cols in t.items() if s not in ("max_length", "rows") for c, n in cols.items() if n) + \
            f" were longer than max_length = {t['max_length']} tokens and lost their tail.</p>"
    body = f"""<p>Task: {data.task}; rows per split: {html.escape(json.dumps(profile.get('splits')))}; best epoch: {m.get('best_epoch', '-')}.</p>
<h2>Metrics on the {result['split']} split, beside the baselines</h2>{_table(rows)}
{trunc}{cv}{extra_html}{per_class}{imgs}
<h2>Data cleaning</h2><pre>{html.escape(json.dumps(profile.get('cleaning'), indent=1))}
{html.escape(json.dumps(profile.get('fitted'), indent=1))}</pre>"""
    name = m.get("name", "run")
    atomic_write_text(run.path / "report.html", page(f"{name} report", name, body, subtitle=run.path.name))
