"""What is wrong with a data set, before compute is spent on it: exact and near duplicates, rows that leak
from the training split into the held-out ones, likely label errors (confident learning), and drift against
another file. Every flagged row is named by its 0-based row number in its file (header excluded) under `row`,
with `file` (data or test) and the id column's value when one is declared."""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..core.hardware import cpu_has_bf16
from ..core.paths import resolve_model_path
from ..core.progress import bar
from .pii import masked, scan_frame
from .prepare import read_frame
from .profile import profile_frame
from .schema import check_target, infer_schema, infer_task
from .sources import DataError
from .split import smiles_column, split_frame
from .text import load_tokenizer

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config


SPACES = re.compile(r"\s+")


def normalize_text(text: Any) -> str:
    """Lowercase, punctuation removed, spaces collapsed: 'Where is my CARD?!' == 'where is my card'."""
    s = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in str(text).lower())
    return SPACES.sub(" ", s).strip()


def _one_word_apart(a: str, b: str) -> bool:
    """Texts of 5+ words that differ by one word replaced, added or removed."""
    wa, wb = a.split(), b.split()
    if min(len(wa), len(wb)) < 5 or abs(len(wa) - len(wb)) > 1:
        return False
    if len(wa) == len(wb):
        return sum(x != y for x, y in zip(wa, wb)) == 1
    short, long_ = (wa, wb) if len(wa) < len(wb) else (wb, wa)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1:]


def row_keys(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A hashable key per row over `columns`: numbers rounded to 4 significant digits, text normalised."""
    parts = []
    for c in columns:
        s = df[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            parts.append(s.map(lambda v: "nan" if pd.isna(v) else f"{float(v):.4g}"))
        else:
            parts.append(s.map(lambda v: "nan" if not isinstance(v, (list, np.ndarray)) and pd.isna(v) else normalize_text(v)))
    if not parts:
        return pd.Series([""] * len(df), index=df.index)
    return pd.concat(parts, axis=1).agg("\x1f".join, axis=1)


def near_text_pairs(query: list[str], ref: list[str], threshold: float, same: bool, k: int = 20) -> list[tuple]:
    """(i, j, similarity) for query text i and reference text j that are near duplicates: character 3-5-gram
    TF-IDF cosine >= threshold, or one word apart. With `same`, query and reference are one list and j < i."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import NearestNeighbors

    if not query or not ref:
        return []
    qn, rn = [normalize_text(t) for t in query], [normalize_text(t) for t in ref]
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit(rn + ([] if same else qn))
    xr, xq = vec.transform(rn), vec.transform(qn)
    nn = NearestNeighbors(n_neighbors=min(k + (1 if same else 0), len(rn)), metric="cosine", algorithm="brute").fit(xr)
    dist, idx = nn.kneighbors(xq)
    pairs = []
    for i in range(len(qn)):
        for d, j in zip(dist[i], idx[i]):
            if same and j >= i:
                continue
            sim = 1.0 - float(d)
            if sim >= threshold or _one_word_apart(qn[i], rn[j]):
                pairs.append((i, int(j), round(sim, 4)))
    return pairs


def _texts(frame: pd.DataFrame, cols: list[str]) -> list[str]:
    """The text columns of each row as one string (missing text is empty)."""
    return frame[cols].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)).agg(
        " ".join, axis=1).tolist()


PREVIEW = 100
"""Characters of a flagged row shown beside its number (personal data in it masked), so a person can judge the pair."""


def preview(frame: pd.DataFrame, row: int, cols: list[str]) -> str:
    """The row as a person reads it: its text, or `column=value` pairs for a table; masked and truncated."""
    rec = frame.iloc[row]
    texts = [str(rec[c]) for c in cols if c in frame.columns and isinstance(rec[c], str)]
    if texts and len(texts) == len([c for c in cols if c in frame.columns]):
        shown = " | ".join(texts)
    else:
        shown = ", ".join(f"{c}={rec[c]}" for c in cols if c in frame.columns)
    shown = masked(shown)
    return shown if len(shown) <= PREVIEW else shown[: PREVIEW - 3] + "..."


def _ident(where: str, row: int, frame: pd.DataFrame, id_col: str | None, show: list[str] | None = None) -> dict:
    out = {"file": where, "row": int(row)}
    if id_col and id_col in frame.columns:
        v = frame[id_col].iloc[row]
        out["id"] = v.item() if hasattr(v, "item") else v
    if show:
        out["value"] = preview(frame, row, show)
    return out


def label_issues(frame: pd.DataFrame, features: list[str], text_cols: list[str], target: str, cfg: Config) -> dict:
    """cleanlab's find_label_issues on out-of-fold probabilities of a quick model."""
    from cleanlab.filter import find_label_issues
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y_raw = frame[target].astype(str)
    classes = sorted(y_raw.unique())
    y = y_raw.map({c: i for i, c in enumerate(classes)}).to_numpy()
    folds = min(cfg.data.audit.label_folds, int(np.bincount(y).min()))
    if folds < 2 or len(classes) < 2:
        return {"skipped": f"needs at least 2 rows of every class and 2 classes (smallest class: {np.bincount(y).min()})"}
    if text_cols:
        from scipy import sparse
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        texts = _texts(frame, text_cols)
        emb = embed_texts(texts, cfg)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-9)
        # meaning (sentence embeddings) and wording (character and word n-grams) in one linear model: its
        # out-of-fold probabilities are sharper than either view's (BANKING77 with 5% flipped labels:
        # 0.87 out-of-fold accuracy vs 0.82 from the embeddings alone; bench/label_noise.py)
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                                min_df=2 if len(texts) >= 50 else 1).fit_transform(texts)
        words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)
        x = sparse.hstack([sparse.csr_matrix(2.0 * emb), chars, words]).tocsr()
        model = LogisticRegression(max_iter=3000, C=10.0)
        quick = "MiniLM embeddings + character and word TF-IDF, logistic regression"
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        x = frame[features].copy()
        cats = [c for c in features if not pd.api.types.is_numeric_dtype(x[c])]
        for c in cats:
            x[c] = x[c].astype("category").cat.codes.replace(-1, np.nan)
        model = HistGradientBoostingClassifier(max_iter=200, random_state=0,
                                               categorical_features=[x.columns.get_loc(c) for c in cats] or None)
        quick = "gradient boosting (HistGradientBoosting)"
        x = x.to_numpy(dtype=float)
    cv = StratifiedKFold(folds, shuffle=True, random_state=cfg.train.seed)
    probs = cross_val_predict(model, x, y, cv=cv, method="predict_proba")
    found = find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
    suggested = probs.argmax(1)
    issues = [{"row": int(i), "given": classes[y[i]], "suggested": classes[suggested[i]],
               "confidence": round(float(probs[i, suggested[i]]), 4), "given_probability": round(float(probs[i, y[i]]), 4)}
              for i in found]
    return {"model": quick, "folds": folds, "flagged": len(issues), "issues": issues,
            "oof_accuracy": round(float((suggested == y).mean()), 4)}


def embed_texts(texts: list[str], cfg: Config, batch: int = 64) -> np.ndarray:
    """Mean-pooled encodings from the config's pretrained model (else the embedded MiniLM), length-sorted batches."""
    import torch
    from transformers import AutoModel

    path = resolve_model_path(cfg.model.path if cfg.model.type == "pretrained" else "minilm")
    tok = load_tokenizer(path)
    tok.enable_truncation(128)
    model = AutoModel.from_pretrained(path, use_safetensors=True).eval()
    ids = [e.ids for e in tok.encode_batch(texts)]
    order = np.argsort([len(i) for i in ids])
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    bf16 = cpu_has_bf16()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            width = max(len(ids[i]) for i in chunk)
            x = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for r, i in enumerate(chunk):
                x[r, :len(ids[i])] = torch.tensor(ids[i])
                mask[r, :len(ids[i])] = 1
            h = model(input_ids=x, attention_mask=mask).last_hidden_state.float()
            m = mask.unsqueeze(-1).float()
            out[chunk] = ((h * m).sum(1) / m.sum(1)).numpy()
    return out


def psi(ref: np.ndarray, other: np.ndarray, categorical: bool) -> float:
    """Population stability index: 10 quantile bins of the reference (or its categories)."""
    if categorical:
        cats = sorted(set(map(str, ref)) | set(map(str, other)))
        p = pd.Series(list(map(str, ref))).value_counts().reindex(cats, fill_value=0).to_numpy(float)
        q = pd.Series(list(map(str, other))).value_counts().reindex(cats, fill_value=0).to_numpy(float)
    else:
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
        edges[0], edges[-1] = -np.inf, np.inf
        p, q = np.histogram(ref, edges)[0].astype(float), np.histogram(other, edges)[0].astype(float)
    p, q = np.clip(p / p.sum(), 1e-4, None), np.clip(q / q.sum(), 1e-4, None)
    return float(((q - p) * np.log(q / p)).sum())


def drift(ref: pd.DataFrame, other: pd.DataFrame, schema: dict[str, str], target: str) -> dict:
    from scipy.stats import ks_2samp

    out = {}
    for col in [c for c in ref.columns if c in other.columns and (schema.get(c, "ignore") != "ignore" or c == target)]:
        kind = schema.get(col, "categorical")
        a, b = ref[col].dropna(), other[col].dropna()
        if not len(a) or not len(b) or kind in ("text", "image", "audio", "sequence", "smiles"):
            continue
        numeric = kind == "numeric" and pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b)
        entry = {"type": "numeric" if numeric else "categorical", "psi": round(psi(a.to_numpy(), b.to_numpy(), not numeric), 4)}
        if numeric:
            ks = ks_2samp(a.to_numpy(float), b.to_numpy(float))
            entry.update(ks_statistic=round(float(ks.statistic), 4), ks_pvalue=float(f"{ks.pvalue:.4g}"))
        entry["drift"] = bool(entry["psi"] > 0.2 or entry.get("ks_pvalue", 1.0) < 0.01)
        out[str(col)] = entry
    return {"columns": out, "flagged": sorted(c for c, e in out.items() if e["drift"]),
            "rule": "PSI > 0.2 (10 quantile bins or categories) or Kolmogorov-Smirnov p < 0.01"}


def audit(cfg: Config, against: pd.DataFrame | None = None, with_label_issues: bool | None = None,
          frame: pd.DataFrame | None = None, test_frame: pd.DataFrame | None = None) -> dict:
    """The full profile of the config's data: statistics, duplicates, leakage, label issues, drift. `frame` and
    `test_frame`: the tables already read (training passes what it read, so each file is read once)."""
    d = cfg.data
    if d.task in ("recommend", "knowledge_tracing"):  # no feature rows and no target column to audit
        what = "interactions (users, items, density, held-out items unseen in training)" if d.task == "recommend" else \
            "students, skills and answers per split"
        raise DataError(f"data.task {d.task}: the data audit reads tables of feature rows and a target; this task's "
                        f"profile ({what}) is written by `foundry train` into the run's data_profile.json")
    df = read_frame(cfg, d.path) if frame is None else frame.reset_index(drop=True)
    check_target(df, d.target, str(cfg.resolve_path(d.path)))
    test = test_frame if test_frame is not None else read_frame(cfg, d.test_path) if d.test_path else None
    exclude = {c for c in (d.split.column, d.split.group_column, d.split.time_column) if c}
    ids: dict[str, str] = {}
    schema = infer_schema(df, d.target, d.types, d.id_column, exclude, ids)
    task = infer_task(df[d.target], d.task)
    features = [c for c, k in schema.items() if k != "ignore" and c != d.target]
    text_cols = [c for c in features if schema[c] == "text"]
    shown = text_cols or features  # what a flagged row shows: its text, or its feature values

    do_labels = (d.audit.label_issues if with_label_issues is None else with_label_issues) and task == "classification"
    pb = bar(4 + do_labels + (against is not None), "profile", unit="step")
    pb.set_postfix_str("statistics")
    report = profile_frame(df, schema, d.target, task)
    report["pii"] = scan_frame(df)
    if test is not None:
        report["pii_test"] = scan_frame(test)
    pb.update(1)
    report["schema"] = schema
    report["id_like_columns"] = ids
    report["all_missing_columns"] = [c for c in df.columns if len(df) and df[c].isna().all()]
    split = split_frame(df, d.split, task, d.target, cfg.train.seed, test is not None, None, smiles_column(schema))
    held: list[tuple[str, pd.DataFrame, np.ndarray]] = [("data", df, split[s]) for s in ("val", "test") if len(split[s])]
    if test is not None:
        held.append(("test", test, np.arange(len(test))))
    train = split["train"]
    report["splits"] = {"train": int(len(train)), "val": int(len(split["val"])),
                        "test": int(len(test) if test is not None else len(split["test"]))}
    keys = df[features + [d.target]].map(str).agg("\x1f".join, axis=1)  # exact: the values as written
    dup = keys.duplicated(keep="first")
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    report["duplicates"] = {"count": int(dup.sum()), "rows": [
        {**_ident("data", i, df, d.id_column, shown), "duplicate_of": int(first[keys.iloc[i]])} for i in np.flatnonzero(dup)]}
    pb.set_postfix_str("near duplicates and leakage")
    pb.update(1)
    # near duplicates within the training split, and leakage: held-out rows that repeat a training row
    near, leaks = [], []
    tr = df.iloc[train]
    thr = d.audit.near_threshold
    if text_cols:
        joined = _texts(tr, text_cols)
        for i, j, sim in near_text_pairs(joined, joined, thr, same=True):
            near.append({**_ident("data", train[i], df, d.id_column, shown), "near_duplicate_of": int(train[j]),
                         "similarity": sim, "near_duplicate_value": preview(df, int(train[j]), shown)})
        for where, frame_h, rows in held:
            texts = _texts(frame_h.iloc[rows], text_cols)
            for i, j, sim in near_text_pairs(texts, joined, thr, same=False):
                leaks.append({"held_out": _ident(where, rows[i], frame_h, d.id_column, shown),
                              "train": _ident("data", train[j], df, d.id_column, shown), "similarity": sim})
    else:
        tk = row_keys(tr, features)
        seen: dict[str, int] = {}
        for pos, k in zip(train, tk):
            if k in seen:
                near.append({**_ident("data", pos, df, d.id_column, shown), "near_duplicate_of": seen[k], "similarity": 1.0,
                             "near_duplicate_value": preview(df, seen[k], shown)})
            else:
                seen[k] = int(pos)
        for where, frame_h, rows in held:
            hk = row_keys(frame_h.iloc[rows], [c for c in features if c in frame_h.columns])
            for pos, k in zip(rows, hk):
                if k in seen:
                    leaks.append({"held_out": _ident(where, pos, frame_h, d.id_column, shown),
                                  "train": _ident("data", seen[k], df, d.id_column, shown), "similarity": 1.0})
    pb.update(2)
    report["near_duplicates"] = {"count": len(near), "threshold": thr, "rows": near}
    report["leakage"] = {"count": len(leaks), "held_out_rows": len({(p["held_out"]["file"], p["held_out"]["row"]) for p in leaks}),
                         "pairs": leaks}
    if do_labels:
        pb.set_postfix_str("label errors")
        print(f"profile: looking for label errors in {len(df)} rows ({d.audit.label_folds}-fold)", file=sys.stderr, flush=True)
        found = label_issues(df, features, text_cols, d.target, cfg)
        for it in found.get("issues", []):
            it.update(_ident("data", it["row"], df, d.id_column, shown))
        report["label_issues"] = found
        pb.update(1)
    if against is not None:
        pb.set_postfix_str("drift")
        report["drift"] = drift(df, against, schema, d.target)
        pb.update(1)
    pb.close()
    return report
