"""data_report.html: the profile a person reads before training: columns, class balance, missing values,
histograms, and the flagged rows (duplicates, leakage, label issues, drift), with plots beside."""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..core.html import page
from ..core.plots import pyplot, save_figure, tick_labels
from ..core.runs import atomic_write_text

PII_NOTE = ("<p>A model can learn personal data and repeat it. Remove it from the training rows with "
            "<code>foundry data clean</code> and <code>data.fixes.pii: redact | hash | drop_column</code>, or leave "
            "the column out (<code>data.types: {column: ignore}</code>).</p>")
SHOWN = 50  # flagged rows listed per finding (all of them are in data_profile.json)


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    flat = [{k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v) for k, v in r.items()} for r in rows]
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in flat[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in flat[:SHOWN])
    more = f"<p>... and {len(rows) - SHOWN} more in data_profile.json</p>" if len(rows) > SHOWN else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _plots(profile: dict, out_dir: Path) -> list[tuple[str, str]]:
    plt = pyplot()

    made = []

    def save(fig, name: str, title: str) -> None:
        save_figure(fig, out_dir / "plots" / name, dpi=80)
        made.append((title, f"plots/{name}"))

    balance = profile.get("class_balance")
    if balance:
        items = sorted(balance.items(), key=lambda kv: -kv[1])
        fig, ax = plt.subplots(figsize=(min(14, 2 + 0.18 * len(items)), 3))
        ax.bar(range(len(items)), [v for _, v in items])
        names, key = tick_labels([k[:14] for k, _ in items])
        if len(items) <= 25:
            ax.set_xticks(range(len(items)), names, rotation=90)
        ax.set(ylabel="rows", title=f"Class balance ({len(items)} classes)")
        save(fig, "data_class_balance.png", "Class balance" + (f" (classes: {key})" if key and len(items) <= 25 else ""))
    numeric = [(c, e) for c, e in profile["columns"].items() if e.get("histogram", {}).get("counts")]
    if numeric:
        n = min(len(numeric), 12)
        cols = min(4, n)
        fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(3.2 * cols, 2.4 * ((n + cols - 1) // cols)),
                                 squeeze=False)
        for ax, (c, e) in zip(axes.flat, numeric[:n]):
            edges = e["histogram"]["edges"]
            ax.bar(edges[:-1], e["histogram"]["counts"], width=[b - a for a, b in zip(edges[:-1], edges[1:])], align="edge")
            ax.set_title(str(c)[:24], fontsize=9)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        save(fig, "data_histograms.png", "Numeric columns")
    return made


def write_data_report(profile: dict, out_dir: Path, title: str) -> Path:
    figures = _plots(profile, out_dir)
    cols = [{"column": c, "type": e["type"], "missing": e["missing"], "unique": e.get("unique"),
             "outliers (IQR)": e.get("outliers_iqr", ""), "text length mean / max":
             f"{e['length']['mean']} / {e['length']['max']}" if "length" in e else ""}
            for c, e in profile["columns"].items()]
    parts = [f"<h2>Columns</h2>{_table(cols)}"]
    for key, where in (("pii", "the data file"), ("pii_test", "the test file")):
        if profile.get(key):
            parts.append(f"<h2>Personal data in {where}: {len(profile[key])} columns</h2>" + PII_NOTE + _table(
                [{"column": c, "kind": k, "rows": len(v["rows"]), "findings": v["count"],
                  "examples (masked)": ", ".join(v["examples"]), "first rows": ", ".join(map(str, v["rows"][:8]))}
                 for c, kinds in profile[key].items() for k, v in kinds.items()]))
    if profile.get("id_like_columns"):
        parts.append("<h2>Row identifiers left out of the features</h2>" + _table(
            [{"column": c, "why": why} for c, why in profile["id_like_columns"].items()])
            + "<p>Declare a column in <code>data.types</code> to use it as a feature anyway.</p>")
    if profile.get("all_missing_columns"):
        parts.append(f"<p><b>Columns with every value missing:</b> {html.escape(', '.join(profile['all_missing_columns']))}</p>")
    for key, label in (("duplicates", "Exact duplicates"), ("near_duplicates", "Near duplicates (training split)")):
        f = profile.get(key, {})
        parts.append(f"<h2>{label}: {f.get('count', 0)}</h2>{_table(f.get('rows', []))}")
    leak = profile.get("leakage", {})
    parts.append(f"<h2>Leakage: {leak.get('held_out_rows', 0)} held-out rows repeat a training row "
                 f"({leak.get('count', 0)} pairs)</h2>"
                 + _table([{"held-out file": p["held_out"]["file"], "held-out row": p["held_out"]["row"],
                            "held-out value": p["held_out"].get("value", ""), "train row": p["train"]["row"],
                            "train value": p["train"].get("value", ""), "similarity": p["similarity"]}
                           for p in leak.get("pairs", [])]))
    li = profile.get("label_issues")
    if li:
        if "skipped" in li:
            parts.append(f"<h2>Label issues</h2><p>skipped: {html.escape(li['skipped'])}</p>")
        else:
            parts.append(f"<h2>Likely label errors: {li['flagged']}</h2><p>Confident learning (cleanlab) on "
                         f"{li['folds']}-fold out-of-fold probabilities of {html.escape(li['model'])} "
                         f"(out-of-fold accuracy {li['oof_accuracy']}).</p>" + _table(li["issues"]))
    if profile.get("drift"):
        dr = profile["drift"]
        parts.append(f"<h2>Drift: {len(dr['flagged'])} columns flagged</h2><p>{html.escape(dr['rule'])}</p>"
                     + _table([{"column": c, **e} for c, e in dr["columns"].items()]))
    imgs = "".join(f"<h2>{html.escape(t)}</h2><img src='{src}' alt='{html.escape(t)}'>" for t, src in figures)
    body = f"""<p>{profile['rows']} rows; task {html.escape(str(profile.get('task')))}; target {html.escape(str(profile.get('target')))};
splits {html.escape(json.dumps(profile.get('splits')))}. Rows are 0-based row numbers in their file (header excluded).</p>
{''.join(parts)}{imgs}"""
    path = out_dir / "data_report.html"
    atomic_write_text(path, page(f"{title} data report", title, body, subtitle="data report", width=1100, align="",
                                 compact=True))
    return path
