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
from . import metrics as M
from .anomaly import score_histogram


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
        audio = data.encoded[result["split"]].features.get("audio")
        wrong = np.flatnonzero(out.argmax(1) != y)[:6] if audio is not None else []
        if len(wrong):  # what a listener would check first: the spectrograms the model got wrong
            fig, axes = plt.subplots(1, len(wrong), figsize=(2.6 * len(wrong), 2.8), squeeze=False)
            for ax, i in zip(axes[0], wrong):
                ax.imshow(audio[i, 0].numpy(), origin="lower", aspect="auto", cmap="magma")
                ax.set(title=f"true {classes[y[i]]}, said {classes[out[i].argmax()]}", xlabel="frame", ylabel="mel band")
                ax.title.set_fontsize(8)
            made.append(("Spectrograms of misclassified recordings", _save(plt, fig, run, "audio_confusions.png")))
    elif data.task == "anomaly":
        alerts = result["alerts"]
        made.append(("Anomaly scores and the alert threshold",
                     _save(plt, score_histogram(plt, y, out, alerts["threshold"], alerts["alert_budget"]), run,
                           "anomaly_scores.png")))
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].scatter(y, out, s=6, alpha=0.5)
        lo, hi = float(min(y.min(), out.min())), float(max(y.max(), out.max()))
        axes[0].plot([lo, hi], [lo, hi], "--", color="grey")
        scaffolds = data.profile.get("scaffold_split")
        title = "Predicted vs actual"
        if scaffolds and result["split"] in scaffolds:  # the chemist's first question: were these series seen?
            held = scaffolds[result["split"]]
            title += (f"\n{result['split']}: {held['molecules']} molecules, {held['scaffolds']} scaffolds; "
                      f"{scaffolds['held_out_scaffolds_in_training']} of them seen in training")
        axes[0].set(xlabel="actual", ylabel="predicted", title=title)
        axes[1].hist(out - y, bins=40)
        axes[1].set(xlabel="residual (predicted - actual)", title="Residuals")
        made.append(("Predictions", _save(plt, fig, run, "predictions.png")))
    if result.get("baselines"):
        metric = M.headline(data.task, result["test"])
        names = ["model"] + list(result["baselines"])
        vals = [result["test"].get(metric)] + [b.get(metric) for b in result["baselines"].values()]
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.barh(names, [v or 0 for v in vals], color=["tab:blue"] + ["tab:grey"] * (len(names) - 1))
        ax.set(xlabel=metric, title=f"Model vs baselines ({metric})")
        made.append(("Model vs baselines", _save(plt, fig, run, "baselines.png")))
    return made


def _kv_rows(d: dict | None) -> list[dict]:
    """A profile section as rows a person reads: one per key, lists and mappings shortened."""
    rows = []
    for k, v in (d or {}).items():
        if isinstance(v, (list, dict)):
            text = json.dumps(v, ensure_ascii=False)
            v = "none" if not v else text if len(text) <= 120 else text[:117] + "..."
        rows.append({"item": k.replace("_", " "), "value": v})
    return rows


def _collapsible(title: str, inner: str, rows: int, open_below: int = 15) -> str:
    """A section that starts folded when it is long (rows > open_below)."""
    flag = " open" if rows <= open_below else ""
    return f"<details{flag}><summary><h2>{html.escape(title)}</h2></summary>{inner}</details>"


def confused_pairs(y: np.ndarray, out: np.ndarray, classes: list, top: int = 10) -> list[dict]:
    """The most frequent mistakes by name: true class -> predicted class, rows, share of the true class."""
    from sklearn.metrics import confusion_matrix

    k = len(classes)
    cm = confusion_matrix(y, out.argmax(1), labels=np.arange(k))
    np.fill_diagonal(cm, 0)
    order = np.dstack(np.unravel_index(np.argsort(-cm, axis=None), cm.shape))[0][:top]
    support = np.bincount(y, minlength=k)
    return [{"true": str(classes[i]), "predicted": str(classes[j]), "rows": int(cm[i, j]),
             "share of true class": round(cm[i, j] / max(support[i], 1), 3)} for i, j in order if cm[i, j] > 0]


def headline(data: Prepared, result: dict, m: dict) -> str:
    """What a reviewer reads first: task and data, the model against its best baseline with the uncertainty,
    cost, and the flags."""
    from .summary import flags

    profile = data.profile
    classes = getattr(data.preprocessor, "classes_", None)
    inputs = [c for c, k in data.preprocessor.schema.items() if k != "ignore" and c != data.preprocessor.target]
    what = (f"classification of <code>{html.escape(str(data.preprocessor.target))}</code> ({len(classes)} classes)"
            if data.task == "classification" else f"regression of <code>{html.escape(str(data.preprocessor.target))}</code>")
    splits = " / ".join(f"{k} {v}" for k, v in (profile.get("splits") or {}).items())
    epochs = (f"; best epoch {m['best_epoch']} of {m.get('epochs_run', '?')}" if m.get("best_epoch") else "")
    lines = [f"<p><b>Task</b>: {what} from {len(inputs)} input column{'s' if len(inputs) != 1 else ''}; "
             f"<b>rows</b>: {html.escape(splits)}{epochs}.</p>"]
    c = result.get("comparison")
    if c:
        lines.append(f"<p><b>Model vs best baseline</b> ({c['metric']} on the {result['split']} split): "
                     f"<b>{c['model']:.4f}</b> vs {html.escape(c['baseline'])} {c['baseline_score']:.4f}: "
                     f"{c['difference']:+.4f} (95% interval {c['ci95'][0]:+.4f} to {c['ci95'][1]:+.4f}, "
                     f"paired bootstrap over {result['rows']} rows): {html.escape(c['verdict'])}.</p>")
    else:
        first = next(iter(result["test"].items()))
        lines.append(f"<p><b>Model</b>: {first[0]} {first[1]:.4f} on the {result['split']} split "
                     f"({result['rows']} rows).</p>")
    cost = result.get("cost")
    if cost:
        lines.append(f"<p><b>Cost</b>: ${cost['usd_per_run']:.3g} per training run ({cost['wall_s']} s on "
                     f"{cost['threads']} threads, {cost['train_flops']:.3g} FLOPs counted), "
                     f"${cost['usd_per_1000_predictions']:.3g} per 1,000 predictions; "
                     f"{cost['trainable_parameters']:,} trainable of {cost['parameters']:,} parameters.</p>")
    found = flags(result, profile)
    if found:
        lines.append("<ul class='flags'>" + "".join(f"<li>{html.escape(f)}</li>" for f in found) + "</ul>")
    return "<div class='headline'>" + "".join(lines) + "</div>"


def fairness_html(f: dict) -> str:
    parts = [f"<p>Groups of {html.escape(', '.join(f['sensitive']))} on the {f['split']} split; groups under "
             f"{f['min_group_size']} rows are listed but left out of the differences"
             + (f" ({html.escape(', '.join(f['small_groups']))})" if f["small_groups"] else "") + ".</p>",
             _table(f["groups"])]
    gaps = [{"metric": k, "value": f[k]} for k in ("demographic_parity_difference", "demographic_parity_ratio",
                                                  "equalized_odds_difference", "equalized_odds_ratio") if k in f]
    parts.append(_table(gaps) if gaps else f"<p>{html.escape(f.get('note', ''))}</p>")
    mit = f.get("mitigation")
    if mit and mit["method"] == "reweigh":
        parts.append("<h3>Mitigation: reweighing in training</h3><p>Each training row's loss was weighted by "
                     "P(group) P(label) / P(group, label); the scores above are the reweighed model's (compare a run "
                     "with <code>mitigate: none</code>).</p>" + _table(mit["weights"]))
    elif mit:
        parts.append(f"<h3>Mitigation: {html.escape(mit['method'])} ({html.escape(mit['constraint'])}), fitted on "
                     f"the {mit['fit_on']} split</h3>" + _table(mit["table"])
                     + (f"<p><b>Note</b>: {html.escape(mit['note'])}.</p>" if mit.get("note") else ""))
    return "<h2>Fairness</h2>" + "".join(parts)


def explanations_html(ex: dict) -> str:
    if not ex.get("importance"):
        return ""
    rows = [{"column": r["column"], "importance": r["importance"], "std": r["std"],
             **({"mean |SHAP|": ex["mean_abs_shap"].get(r["column"])} if ex.get("mean_abs_shap") else {})}
            for r in ex["importance"]]
    return _collapsible("Explanations: what the model relies on", f"<p>Permutation importance on "
                        f"{ex['importance_rows']} held-out rows: the drop in {html.escape(ex['importance_metric'])} when "
                        "a column's values are shuffled (largest first). Per-row attributions: "
                        "<code>foundry explain RUN rows.csv</code>.</p>" + _table(rows), len(rows))


def write_report(run: Run, data: Prepared, result: dict, y: np.ndarray, out: np.ndarray, extra_html: str = "") -> None:
    figures = plots(run, data, result, y, out)
    m = run.manifest()
    rows = [{"model": "model", **result["test"]}]
    rows += [{"model": name, **{k: v for k, v in b.items() if k in result["test"]}}
             for name, b in result.get("baselines", {}).items()]
    parts = [headline(data, result, m), f"<h2>Metrics on the {result['split']} split, beside the baselines</h2>"
             + _table(rows)]
    if result.get("alerts"):
        a = result["alerts"]
        rows = [{"detector": "model", **a[result["split"]]}] + [{"detector": n, **v} for n, v in a.get("baselines", {}).items()]
        parts.append(f"<h2>Alerts at a budget of {a['alert_budget']:.2%} of rows (threshold {a['threshold']:.4g})</h2>"
                     + _table(rows))
    parts += [f"<h2>{html.escape(t)}</h2><img src='{src}' alt='{html.escape(t)}'>" for t, src in figures]
    if result.get("cv"):
        parts.append("<h2>Cross-validation</h2>" + _table([{"metric": k, **v} for k, v in result["cv"].items()]))
    if extra_html:
        parts.append(extra_html)
    if result.get("fairness"):
        parts.append(fairness_html(result["fairness"]))
    parts.append(explanations_html(result.get("explanations") or {}))
    if result.get("per_class"):
        worst = sorted(result["per_class"], key=lambda r: (r["f1"], -r["support"]))
        parts.append(_collapsible(f"Per class, worst first ({len(worst)} classes)", _table(worst), len(worst)))
        pairs = confused_pairs(y, out, data.preprocessor.classes_)
        if pairs:
            parts.append("<h2>Most confused classes</h2>" + _table(pairs))
    if result.get("truncated_texts"):
        t = result["truncated_texts"]
        parts.append("<h2>Truncated texts</h2><p>" + "; ".join(
            f"{html.escape(s)}: {n} of {t['rows'].get(s, '?')} in '{html.escape(c)}'"
            for s, cols in t.items() if s not in ("max_length", "rows") for c, n in cols.items() if n) +
            f" were longer than max_length = {t['max_length']} tokens and lost their tail.</p>")
    profile = data.profile
    cleaning = _kv_rows(profile.get("cleaning")) + _kv_rows(profile.get("fitted"))
    parts.append(_collapsible("Data cleaning", _table(cleaning) or "<p>nothing changed</p>", len(cleaning), 8))
    name = m.get("name", "run")
    atomic_write_text(run.path / "report.html", page(f"{name} report", name, "\n".join(p for p in parts if p),
                                                     subtitle=run.path.name))
