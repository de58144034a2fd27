"""Read the configured data once, clean it, split it, fit the preprocessor on the training split and encode every
split: `prepare(cfg)` -> Prepared."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..core.paths import resolve_model_path
from .audio import describe_rates
from .clean import drop_rows
from .features import Preprocessor
from .forecast import prepare_forecast
from .lm import prepare_lm
from .prepared import Prepared
from .profile import profile_frame
from .recommend import prepare_recommend
from .schema import check_target, infer_schema, infer_task
from .sources import DataError, read_source
from .split import smiles_column, split_frame
from .tracing import prepare_tracing

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config


def read_frame(cfg: Config, path: str | None) -> pd.DataFrame:
    d = cfg.data
    if path is None:
        raise DataError("data.path: no data given; set data.path in the config or pass a DataFrame")
    return read_source(cfg.resolve_path(path), d.format, target=d.target, columns=d.columns,
                       delimiter=d.delimiter, encoding=d.encoding)


def load_clean(cfg: Config, frame: pd.DataFrame | None = None, where: str | None = None
               ) -> tuple[pd.DataFrame, dict, str, dict]:
    """Read (or take) the main table, check the target, infer column types and the task, drop duplicate
    rows and rows set to `drop` on missing values. Returns (frame, schema, task, cleaning report)."""
    d = cfg.data
    where = where or (str(cfg.resolve_path(d.path)) if frame is None else "DataFrame")
    df = read_frame(cfg, d.path) if frame is None else frame.reset_index(drop=True)
    check_target(df, d.target, where, d.task)
    if d.task == "anomaly":
        df = anomaly_labels(df, d.target, where)
    exclude = {c for c in (d.split.column, d.split.group_column, d.split.time_column) if c}
    if d.sequence is not None:
        exclude |= {d.sequence.group_column, d.sequence.order_column}
    ids: dict[str, str] = {}
    schema = infer_schema(df, d.target, d.types, d.id_column, exclude, ids)
    task = infer_task(df[d.target], d.task)
    df, cleaning = drop_rows(df, d.clean, schema)
    if ids:
        cleaning["id_like_columns"] = ids
    return df.reset_index(drop=True), schema, task, cleaning


OWN_PREPARATION = {"knowledge_tracing": (prepare_tracing, "whole students (data.tracing.test)"),
                   "recommend": (prepare_recommend, "each user's own latest interactions (data.recommend.test)")}
"""data.task -> (its preparation (cfg, table, where, test table) -> Prepared, what its split holds out)."""


def prepare(cfg: Config, frame: pd.DataFrame | None = None, test_frame: pd.DataFrame | None = None,
            fold: tuple | None = None, cache_dir: Path | None = None) -> Prepared:
    """Everything the model needs, from the config's data section (or in-memory frames).
    `fold=(train_positions, held_positions)` replaces the split (k-fold cross-validation). `cache_dir`: text
    encodings are kept there and reused by a later call with the same tokenizer, length limit and texts."""
    d = cfg.data
    raw = read_frame(cfg, d.path) if frame is None else frame
    if d.task in OWN_PREPARATION:  # interactions or answer histories, not feature rows: no schema, cleaning, row split
        prepare_own, held_out = OWN_PREPARATION[d.task]
        if fold is not None:
            raise DataError(f"evaluate.cv: a {d.task} run holds out {held_out}; k-fold over rows would split them")
        if test_frame is None and d.test_path:
            test_frame = read_frame(cfg, d.test_path)
        data = prepare_own(cfg, raw, str(cfg.resolve_path(d.path)) if frame is None else "DataFrame", test_frame)
        data.raw = {"data": raw, **({"test": test_frame} if test_frame is not None else {})}
        return data
    df, schema, task, cleaning = load_clean(cfg, raw, str(cfg.resolve_path(d.path)) if frame is None else None)
    ids = cleaning.get("id_like_columns")
    if ids and fold is None:  # said once per run, not once per fold
        print("note: left out of the features as row identifiers: " + "; ".join(f"'{c}' ({why})" for c, why in ids.items())
              + ". Declare a column in data.types to use it, or as data.id_column to keep it in predictions.",
              file=sys.stderr, flush=True)
    if test_frame is None and d.test_path and fold is None:  # a fold's held-out part replaces the test file
        test_frame = read_frame(cfg, d.test_path)
    raws = {"data": raw, **({"test": test_frame} if test_frame is not None else {})}
    if task == "causal_lm":
        data = prepare_lm(cfg, df, test_frame, cleaning)
        data.raw = raws
        return data
    if task == "forecast":
        if fold is not None:
            raise DataError("evaluate.cv: k-fold would train on the future to forecast the past; a forecast run is "
                            "evaluated by its rolling-origin backtest (data.forecast.test)")
        data = prepare_forecast(cfg, df, str(cfg.resolve_path(d.path)) if frame is None else "DataFrame", cleaning)
        data.raw = raws
        return data
    if test_frame is not None:
        test_where = str(cfg.resolve_path(d.test_path)) if d.test_path else "test DataFrame"
        check_target(test_frame, d.target, test_where, task)
        if task == "anomaly":
            test_frame = anomaly_labels(test_frame, d.target, test_where, quiet=True)
    where = str(cfg.resolve_path(d.path)) if frame is None else "DataFrame"
    group_default = d.sequence.group_column if d.sequence is not None else None
    smiles = smiles_column(schema)
    if fold is not None:
        train_idx, held_idx = fold
        base = df.iloc[train_idx].reset_index(drop=True)
        inner = split_frame(base, d.split.model_copy(update={"test": 0.0, "column": None}), task, d.target,
                            cfg.train.seed, True, group_default, smiles)
        frames = {"train": base.iloc[inner["train"]], "val": base.iloc[inner["val"]], "test": df.iloc[held_idx]}
    else:
        idx = split_frame(df, d.split, task, d.target, cfg.train.seed, test_frame is not None, group_default, smiles)
        frames = {s: df.iloc[i] for s, i in idx.items()}
        if test_frame is not None:
            frames["test"] = test_frame
    frames = {s: f.reset_index(drop=True) for s, f in frames.items()}
    capped = {}
    if d.target_cap is not None:
        if task != "regression":
            raise DataError(f"data.target_cap applies to regression only; this task is {task}")
        for split in ("train", "val"):
            y = pd.to_numeric(frames[split][d.target], errors="coerce")
            capped[split] = int((y > d.target_cap).sum())
            frames[split] = frames[split].assign(**{d.target: y.clip(upper=d.target_cap)})
    capped_length = None
    if cfg.model.type == "pretrained":  # the text column is tokenized with the pretrained model's own tokenizer
        path = resolve_model_path(cfg.model.path)
        text = {"tokenizer": str(path)}
        context = model_context(path)
        if context is not None and d.text.max_length > context:  # a model pretrained on shorter blocks has no more positions
            text["max_length"] = capped_length = context
        d = d.model_copy(update={"text": d.text.model_copy(update=text)})
    pre = Preprocessor(schema, d.target, task, d).fit(frames["train"])
    pre.cache_dir = cache_dir
    encoded, targets, truncated, skipped, audio, unparsed = {}, {}, {}, {}, {}, {}
    for split, f in frames.items():
        if len(f) == 0:
            continue
        enc = pre.transform(f, last_window_only=(split == "test" and d.sequence is not None
                                                 and d.sequence.test_windows == "last"))
        encoded[split] = enc
        targets[split] = pre.encode_target(f[d.target].iloc[enc.rows])
        truncated[split] = getattr(pre, "truncated_", {})
        if any("image" in s for s in enc.skipped):
            skipped[split] = [s for s in enc.skipped if "image" in s]
        if any("smiles" in s for s in enc.skipped):
            unparsed[split] = [s for s in enc.skipped if "smiles" in s]
        if pre.audio_col_ is not None:
            audio[split] = {"sample_rates": pre.audio_rates_, "summary": describe_rates(pre.audio_rates_, d.audio.sample_rate),
                            "unreadable": [s for s in enc.skipped if "audio" in s]}
    profile = profile_frame(df, schema, d.target, task)
    if d.split.method == "scaffold":
        profile["scaffold_split"] = scaffold_summary(frames, d.split.group_column or smiles)
    if capped_length is not None:
        profile["max_length_capped"] = {"data.text.max_length": cfg.data.text.max_length, "model context": capped_length}
    profile.update(target_capped=capped, cleaning=cleaning, fitted=pre.report_, truncated_texts=truncated, unreadable_images=skipped,
                   **({"audio": audio} if audio else {}), **({"unparsed_smiles": unparsed} if unparsed else {}),
                   splits={s: len(e) for s, e in encoded.items()}, source=where)
    return Prepared(frames, encoded, targets, pre, profile, raws)


def scaffold_summary(frames: dict[str, pd.DataFrame], column: str) -> dict:
    """Molecules and distinct scaffolds per split, and how many held-out scaffolds training also holds (0 for a
    scaffold split; k-fold's inner validation split included)."""
    from .molecules import scaffold_groups

    sets = {s: set(scaffold_groups(f[column].tolist())) - {"<unparsed>"} for s, f in frames.items()}
    out = {s: {"molecules": len(frames[s]), "scaffolds": len(sets[s])} for s in frames}
    out["held_out_scaffolds_in_training"] = len((sets.get("val", set()) | sets.get("test", set())) & sets["train"])
    return out


def anomaly_labels(df: pd.DataFrame, target: str, where: str, quiet: bool = False) -> pd.DataFrame:
    """An anomaly model learns from the inputs alone: the target column, when the data has one, holds evaluation labels
    (missing = nobody checked that row); without one, the column is added empty (the run reports no ranking metrics)."""
    if target not in df.columns:
        if not quiet:
            print(f"note: {where} has no '{target}' column: the anomaly model trains without labels, and the run "
                  "reports scores and alerts but no PR-AUC (set data.target to a column of known anomalies to have it)",
                  file=sys.stderr, flush=True)
        return df.assign(**{target: float("nan")})
    if not quiet:
        print(f"note: data.task anomaly: '{target}' is used for evaluation only (PR-AUC, recall at the alert budget); "
              "the model never sees it in training", file=sys.stderr, flush=True)
    return df


def model_context(path: Path) -> int | None:
    """The most token positions a local Hugging Face model has (GPT-2's n_positions, BERT's max_position_embeddings)."""
    import json

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    n = config.get("n_positions") or config.get("max_position_embeddings")
    return int(n) if isinstance(n, int) else None


def data_files(cfg: Config) -> dict[str, Path | None]:
    return {"train": cfg.resolve_path(cfg.data.path), "test": cfg.resolve_path(cfg.data.test_path)}
