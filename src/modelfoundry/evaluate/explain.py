"""Explanations of a trained model, in the user's columns and tokens.

- Global: permutation importance on the held-out rows (scikit-learn's `permutation_importance`; any model): how
  much the score drops when one input column's values are shuffled.
- Local, tables: SHAP values per input column (shap's PermutationExplainer; a column is removed by giving it the
  values of background training rows, so a categorical, numeric, text or missing value is handled alike); the base
  value plus a row's attributions equals its prediction.
- Local, text: Integrated Gradients over the token embeddings (captum's LayerIntegratedGradients), from a reference
  text of [PAD] tokens of the same length; one attribution per token.

A deletion test checks that attributions are faithful: removing a row's top-k attributed columns (or tokens) must
move the prediction more than removing k random ones (`deletion_test`)."""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.infer import predict_tensors
from ..core.spec import BatchKey
from ..data.features import unreadable
from ..data.pii import rewrite


def require(package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise ImportError(f"explanations with {package} need the explain extra: pip install 'modelfoundry[explain]'")


def input_columns(pre) -> list[str]:
    """The raw columns the model reads (the target and ignored columns are not)."""
    return [c for c, k in pre.schema.items() if k != "ignore" and c != pre.target]


@dataclass
class Scorer:
    """Raw rows in, outputs out (probabilities [N, K] or values [N]), through the run's preprocessor and model."""

    model: torch.nn.Module
    pre: Any
    task: str

    def encode(self, frame: pd.DataFrame):
        """The preprocessor's tensors, never through its token cache: shuffled or masked rows are not worth keeping."""
        cache, self.pre.cache_dir = getattr(self.pre, "cache_dir", None), None
        try:
            return self.pre.transform(frame.reset_index(drop=True))
        finally:
            self.pre.cache_dir = cache

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        enc = self.encode(frame)
        out = predict_tensors(self.model, enc.features, self.task)
        return self.pre.decode_regression(out) if self.task == "regression" else out


def permutation_importance(scorer: Scorer, frame: pd.DataFrame, y: np.ndarray, score, repeats: int = 3,
                           seed: int = 0) -> list[dict]:
    """scikit-learn's permutation importance of each input column on `frame` (rows with true values `y`);
    `score(y, output)` is higher-is-better. Largest first."""
    from sklearn.inspection import permutation_importance as sk_importance

    class _Model:  # what sklearn's scorer needs: the fitted thing it hands back to `scoring`
        def fit(self, X, y):
            return self

    columns = input_columns(scorer.pre)
    x = frame[columns].reset_index(drop=True)
    r = sk_importance(_Model(), x, y, scoring=lambda _m, X, yy: score(yy, scorer(X)), n_repeats=repeats,
                      random_state=seed)
    rows = [{"column": c, "importance": round(float(m), 5), "std": round(float(s), 5)}
            for c, m, s in zip(columns, r.importances_mean, r.importances_std)]
    return sorted(rows, key=lambda d: -d["importance"])


class _Codes:
    """Rows as integer codes per column: code j of column c is the j-th value in that column's pool (the background
    rows' values, then the explained rows'). SHAP masks codes; `frame` turns codes back into raw rows."""

    def __init__(self, columns: list[str], background: pd.DataFrame, rows: pd.DataFrame):
        self.columns = columns
        self.pools = [list(background[c]) + list(rows[c]) for c in columns]
        nb, nr = len(background), len(rows)
        self.background = np.tile(np.arange(nb), (len(columns), 1)).T
        self.rows = np.tile(np.arange(nb, nb + nr), (len(columns), 1)).T

    def frame(self, codes: np.ndarray) -> pd.DataFrame:
        codes = np.asarray(codes, dtype=int)
        return pd.DataFrame({c: pd.Series([pool[i] for i in codes[:, j]], dtype=object)
                             for j, (c, pool) in enumerate(zip(self.columns, self.pools))})


def shap_values(scorer: Scorer, rows: pd.DataFrame, background: pd.DataFrame, seed: int = 0,
                targets: np.ndarray | None = None) -> dict:
    """SHAP values of each row's explained output (the predicted class's probability, or `targets`' class; the value
    for regression) per input column: {columns, values [n, columns], base [n], targets}."""
    require("shap")
    import shap

    columns = input_columns(scorer.pre)
    codes = _Codes(columns, background[columns].reset_index(drop=True), rows[columns].reset_index(drop=True))
    out = scorer(rows[columns])
    masker = shap.maskers.Independent(codes.background, max_samples=len(codes.background))
    explainer = shap.explainers.Permutation(lambda z: scorer(codes.frame(z)), masker, seed=seed)
    e = explainer(codes.rows, max_evals=max(2 * len(columns) + 1, 10), silent=True)  # every class at once
    if out.ndim == 2:
        targets = out.argmax(1) if targets is None else np.asarray(targets)
        pick = np.arange(len(rows))
        values, base = e.values[pick, :, targets], np.asarray(e.base_values)[pick, targets]
        explained = out[pick, targets]
    else:
        values, base, explained = e.values, np.asarray(e.base_values).reshape(-1), out
    return {"columns": columns, "values": values, "base": base,
            "targets": None if out.ndim == 1 else [int(t) for t in targets], "output": explained}


def _token_embedding(model: torch.nn.Module, batch: dict, ids: torch.Tensor) -> torch.nn.Module:
    """The embedding layer that reads the token ids (found by watching one forward pass)."""
    seen: list[torch.nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append(mod) if inp and inp[0] is ids or
                                     (inp and isinstance(inp[0], torch.Tensor) and inp[0].shape == ids.shape
                                      and torch.equal(inp[0], ids)) else None)
             for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        raise ValueError("token attributions need a model that embeds the tokens itself (not a linear probe over "
                         "cached encodings)")
    return seen[0]


def special_ids(tok) -> set[int]:
    """The tokenizer's special tokens ([CLS], [SEP], [PAD], ...): kept in the reference, never deleted."""
    return {i for i, t in tok.get_added_tokens_decoder().items() if t.special}


def text_column(pre) -> str:
    cols = [c for c in input_columns(pre) if pre.schema[c] == "text"]
    if len(cols) != 1 or len(input_columns(pre)) != 1:
        raise ValueError("token attributions explain a model with one text input; this one reads "
                         f"{', '.join(input_columns(pre))} (tables are explained per column with SHAP)")
    return cols[0]


DELTA, MAX_STEPS = 0.01, 1024
"""Integrated Gradients doubles its steps until the attributions add up to the output's change within DELTA."""


def integrated_gradients(scorer: Scorer, rows: pd.DataFrame, steps: int = 32, targets: np.ndarray | None = None
                         ) -> list[dict]:
    """Per row: its tokens and their Integrated Gradients attributions toward the predicted class (or `targets`'),
    from a reference of [PAD] embeddings that keeps the special tokens ([CLS], [SEP]) in place."""
    require("captum")
    from captum.attr import LayerIntegratedGradients

    col = text_column(scorer.pre)
    tok = scorer.pre.tokenizers_[col]
    special = special_ids(tok)
    enc = scorer.encode(rows)
    model = scorer.model.eval()
    out = predict_tensors(model, enc.features, scorer.task)
    key, lkey = BatchKey.text(col), BatchKey.length(col)
    results = []
    for i in range(len(rows)):
        n = int(enc.features[lkey][i])
        batch = {k: v[i: i + 1] for k, v in enc.features.items()}
        batch[key] = batch[key][:, :n]
        if BatchKey.segment(col) in batch:
            batch[BatchKey.segment(col)] = batch[BatchKey.segment(col)][:, :n]
        ids = batch[key]
        layer = _token_embedding(model, batch, ids)
        target = int(out[i].argmax() if targets is None else targets[i]) if out.ndim == 2 else None

        def forward(x, _batch=batch):
            b = {k: v.expand(len(x), *v.shape[1:]) for k, v in _batch.items()}
            b[key] = x
            logits = model(b).float()
            return torch.softmax(logits, -1) if scorer.task == "classification" else logits[:, 0]

        keep = torch.tensor([int(t) in special for t in ids[0]])
        ref = torch.where(keep, ids, torch.zeros_like(ids))  # [CLS]/[SEP] stay, every other token becomes [PAD]
        lig = LayerIntegratedGradients(forward, layer)
        n_steps = steps
        while True:  # completeness: the attributions must add up to f(text) - f(reference); refine until they do
            attr, delta = lig.attribute(ids, baselines=ref, target=target, n_steps=n_steps,
                                        return_convergence_delta=True)
            if float(delta.abs().sum()) <= DELTA or n_steps >= MAX_STEPS:
                break
            n_steps *= 2
        scores = attr.sum(-1)[0].detach().float().numpy()
        results.append({"tokens": [tok.id_to_token(int(t)) for t in ids[0]], "attributions": scores.round(5).tolist(),
                        "special": keep.tolist(), "target": target, "steps": n_steps,
                        "convergence_delta": round(float(delta.abs().sum()), 5)})
    return results


def image_column(pre) -> str | None:
    """The one image input of an image model, or None."""
    cols = input_columns(pre)
    return cols[0] if len(cols) == 1 and pre.schema[cols[0]] == "image" else None


def pixel_attributions(scorer: Scorer, rows: pd.DataFrame, steps: int = 32, targets: np.ndarray | None = None
                       ) -> list[dict]:
    """Per row: Integrated Gradients per pixel (summed over channels, [height][width]) toward the predicted class (or
    `targets`'), from the training images' mean (the normalised zero image); steps double until the attributions add
    up. A row whose image could not be read gets {"error": ...}."""
    require("captum")
    from captum.attr import IntegratedGradients

    enc = scorer.encode(rows)
    model = scorer.model.eval()
    x = enc.features[BatchKey.IMAGE]
    out = predict_tensors(model, enc.features, scorer.task)
    extra = {k: v for k, v in enc.features.items() if k != BatchKey.IMAGE}

    current = {"i": 0}  # the row being explained: its other features ride along unchanged

    def forward(img):
        i = current["i"]
        b = {k: v[i: i + 1].expand(len(img), *v.shape[1:]) for k, v in extra.items()}
        logits = model({**b, BatchKey.IMAGE: img}).float()
        return torch.softmax(logits, -1) if scorer.task == "classification" else logits[:, 0]

    ig = IntegratedGradients(forward)
    found: dict[int, dict] = {}
    for i, row in enumerate(enc.rows):
        current["i"] = i
        target = int(out[i].argmax() if targets is None else targets[row]) if out.ndim == 2 else None
        n_steps = steps
        while True:
            attr, delta = ig.attribute(x[i: i + 1], baselines=torch.zeros_like(x[i: i + 1]), target=target,
                                       n_steps=n_steps, return_convergence_delta=True)
            if float(delta.abs().sum()) <= DELTA or n_steps >= MAX_STEPS:
                break
            n_steps *= 2
        found[int(row)] = {"attributions": attr[0].sum(0).detach().float().numpy().round(6).tolist(), "target": target,
                           "steps": n_steps, "convergence_delta": round(float(delta.abs().sum()), 5)}
    skipped = {s["row"]: unreadable(s) for s in enc.skipped}
    return [found.get(i, {"error": skipped.get(i, "not predicted")}) for i in range(len(rows))]


def pixel_deletion(scorer: Scorer, rows: pd.DataFrame, targets):
    """score_rows for deletion_test over pixels (flattened height x width, every channel at once): a removed pixel
    takes the training images' mean (0 once normalised), as in the Integrated Gradients reference."""
    enc = scorer.encode(rows)

    def score_rows(masks: list[np.ndarray]) -> np.ndarray:
        feats = {k: v.clone() for k, v in enc.features.items()}
        img = feats[BatchKey.IMAGE]
        for i, m in enumerate(masks):
            flat = img[i].reshape(img.shape[1], -1)
            flat[:, torch.from_numpy(m)] = 0.0
        out = predict_tensors(scorer.model, feats, scorer.task)
        return out[np.arange(len(out)), targets] if out.ndim == 2 else out

    return score_rows


def image_heatmaps_html(items: list[dict], images: dict[int, torch.Tensor], shown: int = 50) -> str:
    """Each row's image (normalised, grey) beside its pixel attributions (red toward the explained class, blue away)."""
    import base64
    import io

    from ..core.plots import pyplot

    plt = pyplot()
    parts = ["<h2>Pixel attributions</h2><p>Integrated Gradients per pixel, from the training images' mean: red pushes "
             "toward the explained class, blue away from it.</p>"]
    for i, it in enumerate(items[:shown]):
        if "error" in it:
            parts.append(f"<p><b>row {i}</b>: {html.escape(it['error'])}</p>")
            continue
        a = np.asarray(it["attributions"])
        fig, axes = plt.subplots(1, 2, figsize=(4, 2))
        axes[0].imshow(images[i].mean(0).numpy(), cmap="gray")  # row i's image, normalised
        scale = float(np.abs(a).max()) or 1.0
        axes[1].imshow(a, cmap="bwr", vmin=-scale, vmax=scale)
        for ax in axes:
            ax.axis("off")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        label = html.escape(str(it.get("prediction", "")))
        parts.append(f"<p><b>row {i}</b> → {label}<br><img alt='row {i}' src='data:image/png;base64,"
                     f"{base64.b64encode(buf.getvalue()).decode()}'></p>")
    return "".join(parts)


def ordinary(items: list[dict]) -> list[np.ndarray]:
    """Each row's attributions of its ordinary (not special) tokens: what deletion_test ranks for token_deletion."""
    return [np.asarray([a for a, sp in zip(it["attributions"], it["special"]) if not sp]) for it in items]


def deletion_test(score_rows, attributions: list[np.ndarray], k: int, seed: int = 0) -> dict:
    """Faithfulness. `attributions[i]`: row i's attribution per feature (columns or tokens); `score_rows(masks)`
    gives each row's explained output with the features marked True in masks[i] removed. Returns the mean drop of
    the output when each row's top-k attributed features are removed, and when k random ones are: a faithful
    explanation drops it more (`margin` > 0)."""
    rng = np.random.default_rng(seed)
    none = [np.zeros(len(a), dtype=bool) for a in attributions]
    top, rand = [m.copy() for m in none], [m.copy() for m in none]
    for i, a in enumerate(attributions):
        top[i][np.argsort(-np.asarray(a))[:k]] = True
        rand[i][rng.choice(len(a), size=min(k, len(a)), replace=False)] = True
    full = score_rows(none)
    d_top, d_rand = float(np.mean(full - score_rows(top))), float(np.mean(full - score_rows(rand)))
    return {"k": k, "rows": len(attributions), "drop_top_k": round(d_top, 5), "drop_random_k": round(d_rand, 5),
            "margin": round(d_top - d_rand, 5)}


def column_deletion(scorer: Scorer, rows: pd.DataFrame, background: pd.DataFrame, targets):
    """score_rows for deletion_test over columns: a removed column takes the training rows' typical value (median,
    or the most frequent value); the output is the target class's probability (or the value)."""
    columns = input_columns(scorer.pre)
    typical = {c: (background[c].median() if pd.api.types.is_numeric_dtype(background[c]) else background[c].mode().iloc[0])
               for c in columns}

    def score_rows(masks: list[np.ndarray]) -> np.ndarray:
        frame = rows[columns].reset_index(drop=True).astype(object)
        for i, m in enumerate(masks):
            for j in np.flatnonzero(m):
                frame.iat[i, j] = typical[columns[j]]
        out = scorer(frame)
        return out[np.arange(len(out)), targets] if out.ndim == 2 else out

    return score_rows


def token_deletion(scorer: Scorer, rows: pd.DataFrame, targets, items: list[dict]):
    """score_rows for deletion_test over each row's ordinary tokens (`items` from integrated_gradients; a mask covers
    the tokens that are not special): a removed token becomes [PAD] (id 0), as in the Integrated Gradients reference."""
    col = text_column(scorer.pre)
    enc = scorer.encode(rows)
    key = BatchKey.text(col)
    places = [torch.tensor([j for j, sp in enumerate(it["special"]) if not sp], dtype=torch.long) for it in items]

    def score_rows(masks: list[np.ndarray]) -> np.ndarray:
        feats = {k: v.clone() for k, v in enc.features.items()}
        for i, m in enumerate(masks):
            feats[key][i, places[i][torch.from_numpy(m)]] = 0
        out = predict_tensors(scorer.model, feats, scorer.task)
        return out[np.arange(len(out)), targets] if out.ndim == 2 else out

    return score_rows


def heatmap_html(items: list[dict], title: str) -> str:
    """Tokens coloured by attribution (red toward the explained class, blue away from it), one row per text."""
    parts = [f"<h2>{html.escape(title)}</h2><p>Integrated Gradients per token: red pushes toward the explained class, "
             "blue away from it; the stronger the colour, the larger the share.</p>"]
    for i, it in enumerate(items):
        a = np.asarray(it["attributions"], dtype=float)
        scale = float(np.abs(a).max()) or 1.0
        spans = []
        for t, v in zip(it["tokens"], a):
            alpha = min(1.0, abs(v) / scale)
            rgb = "220,38,38" if v > 0 else "37,99,235"
            spans.append(f"<span title='{v:+.4f}' style='background:rgba({rgb},{alpha:.2f});padding:1px 2px;"
                         f"margin:1px;border-radius:3px'>{html.escape(t)}</span>")
        label = html.escape(str(it.get("prediction", "")))
        parts.append(f"<p><b>row {i}</b> → {label}<br>{''.join(spans)}</p>")
    return "".join(parts)


BACKGROUND_FILE = "explain_background.json"
"""Training rows SHAP draws removed columns from, in the run directory (beside model/, not in it)."""


def explain_run(cfg, data, model, split: str, y: np.ndarray, run_path, seed: int, keep_rows: bool = True) -> dict:
    """metrics.json `explanations`: permutation importance on (a sample of) the held-out rows, mean |SHAP| when
    asked; and the background rows for `foundry explain`, saved in the run (unless keep_rows is False), with the
    personal data the profile found in them redacted."""
    from ..core.runs import write_json
    from . import metrics as M

    pre = data.preprocessor
    result: dict[str, Any] = {}
    if data.preprocessor.data.sequence is not None:
        return {"note": "sequence-window runs: a row is one time step, so shuffling a column is not defined per row"}
    scorer = Scorer(model, pre, data.task)
    frame = data.frames[split].iloc[data.encoded[split].rows].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(frame), size=min(cfg.max_rows, len(frame)), replace=False))
    train = data.frames["train"].iloc[data.encoded["train"].rows].reset_index(drop=True)
    background = train.iloc[np.sort(rng.choice(len(train), size=min(cfg.background_rows, len(train)), replace=False))]
    if cfg.background_rows and keep_rows:
        kept = background[input_columns(pre)].copy()
        for col in set(data.profile.get("pii") or {}) & set(kept.columns):  # the run keeps no personal data
            kept[col] = [rewrite(str(v), "redact")[0] if isinstance(v, str) else v for v in kept[col]]
        write_json(run_path / BACKGROUND_FILE, json.loads(kept.to_json(orient="records", force_ascii=False)))
    name = "accuracy" if data.task == "classification" else M.headline(data.task)
    # one input column: nothing to rank; an anomaly run without both kinds of labelled rows: no score to lose
    scoreable = data.task != "anomaly" or len(np.unique(y[pick][y[pick] >= 0])) == 2
    if cfg.importance and len(input_columns(pre)) > 1 and scoreable:
        sign = -1 if M.lower_is_better(name) else 1
        t = time.perf_counter()
        result["importance"] = permutation_importance(
            scorer, frame.iloc[pick], y[pick], lambda yy, out: sign * M.compute(data.task, yy, out, [name])[name],
            repeats=cfg.repeats, seed=seed)
        result["importance_metric"] = name if sign > 0 else f"-{name}"
        result["importance_rows"] = int(len(pick))
        result["importance_s"] = round(time.perf_counter() - t, 2)
    if cfg.shap_rows and any(pre.schema[c] != "text" for c in input_columns(pre)):
        rows = frame.iloc[pick[: cfg.shap_rows]]
        t = time.perf_counter()
        sv = shap_values(scorer, rows, background if len(background) else train.iloc[:100], seed=seed)
        result["mean_abs_shap"] = dict(sorted(((c, round(float(v), 5)) for c, v in
                                               zip(sv["columns"], np.abs(sv["values"]).mean(0))), key=lambda kv: -kv[1]))
        result["shap_rows"], result["shap_s"] = len(rows), round(time.perf_counter() - t, 2)
    return result
