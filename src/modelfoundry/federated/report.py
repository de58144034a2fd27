"""The federation's part of report.html: per-round curves (global and per site), the sites' data, payload per round,
failures and the privacy budget spent."""

from __future__ import annotations

import html

from ..core.html import table
from ..core.plots import pyplot, save_figure
from ..core.runs import Run


def _metric(history: list[dict]) -> str | None:
    keys = history[0] if history else {}
    return next((k for k in ("val_accuracy", "val_rmse", "test_accuracy", "test_rmse", "val_loss", "test_loss")
                 if k in keys), None)


def federated_html(run: Run, summary: dict, history: list[dict]) -> str:
    parts = ["<h2>Federation</h2>",
             f"<p>{len(summary['sites'])} sites, {summary['rounds']} rounds, strategy {html.escape(summary['strategy'])}"
             f" (engine {html.escape(summary['engine'])}); weights per site and round: "
             f"{summary['payload']['per_site_round_bytes']:,} bytes each way, "
             f"{summary['payload']['share_of_full']:.2%} of the full model's "
             f"{summary['payload']['full_model_bytes']:,}.</p>"]
    key = _metric(history)
    if history and key:
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        rounds = [h["round"] for h in history]
        axes[0].plot(rounds, [h.get(key) for h in history], marker="o", label="global model")
        axes[0].set(xlabel="round", ylabel=key, title="global model, server's held-out rows")
        site_key = key.replace("test_", "val_")
        for name in summary_names(history):
            pts = [(h["round"], h["sites"][name].get(site_key)) for h in history if name in h["sites"]
                   and h["sites"][name].get(site_key) is not None]
            if pts:
                axes[1].plot(*zip(*pts), marker=".", label=name)
        axes[1].set(xlabel="round", ylabel=site_key, title="global model on each site's validation rows")
        if len(summary_names(history)) <= 12:
            axes[1].legend(fontsize=7)
        save_figure(fig, run.path / "plots" / "federated_rounds.png")
        parts.append("<img src='plots/federated_rounds.png' alt='per-round metrics'>")
    parts.append("<h3>Sites</h3>" + table([{"site": s["site"], "train rows": s["train_rows"], "val rows": s["val_rows"],
                                                "label mix": ", ".join(f"{k}: {v}" for k, v in s["label_mix"].items()),
                                                "attack": s.get("poisoned", "")} for s in summary["sites"]]))
    if history:
        last = history[-1]["sites"]
        parts.append("<h3>Each site, last round</h3>" + table([{"site": n, **m} for n, m in sorted(last.items())]))
        rows = [{"round": h["round"], "train_loss": h["train_loss"], **({key: h.get(key)} if key else {}),
                 "sites trained": h["sites_trained"], "bytes sent": h["sent_bytes"], "bytes received": h["received_bytes"],
                 **({"epsilon spent": h["epsilon"]} if "epsilon" in h else {}),
                 "failed": len(h["failed"]), "seconds": h["seconds"]} for h in history]
        parts.append("<h3>Rounds</h3>" + table(rows))
    if summary["failed"]:
        parts.append("<h3>Failures</h3>" + table(summary["failed"]))
    if "privacy" in summary:
        p = summary["privacy"]
        parts.append(f"<p>Privacy: {html.escape(p['mechanism'])}, clip {p['clip']}; ({p['epsilon_per_round']}, "
                     f"{p['delta_per_round']:g}) per round, ({p['epsilon']:g}, {p['delta']:g}) over the run by "
                     f"{html.escape(p['composition'])}.</p>")
    return "\n".join(parts)


def summary_names(history: list[dict]) -> list[str]:
    return sorted({n for h in history for n in h["sites"]})
