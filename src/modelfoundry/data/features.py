"""The fitted preprocessor: raw rows in, tensors out, with exactly the transforms used in training.

One class over ~400 lines, on purpose: fit, transform, save and load of every input kind sit side by side, so that
what `save` writes to JSON and what `transform` reads back can be checked against each other in one read.
Tokenizers are in text.py, image decoding in images.py.

Fitted on the training split only; saved beside the model as JSON (+ tokenizer.json files), never pickle.
Tensor keys: `numeric` [N, F] float, `categorical` [N, C] long (0 = unknown), `text:<col>` [N, L] long
with `len:<col>` [N], `image` [N, C, H, W] float, `audio` [N, 1, mels, frames] float (log-mel), `sequence` [N, T, F]
float.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.runs import atomic_write_text, save_safetensors
from ..core.spec import InputSpec
from .audio import frames, spectrograms
from .clean import outlier_bounds
from .config import CleanConfig, DataConfig
from .images import load_image
from .sources import DataError
from .text import (
    load_cached_tokens,
    load_tokenizer,
    pad_ids,
    token_cache_key,
    train_tokenizer,
)

DATETIME_PARTS = ("year", "month", "day", "day_of_week", "hour")


def _to_py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def category_key(value: Any, kind: str) -> str:
    """A categorical value as training wrote it into the vocabulary: str() of an int column's 1 is '1', of a float
    column's '1.0'. kind: how training read the column (int, float, bool or other)."""
    if kind in ("int", "float") and not isinstance(value, bool):
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return value
        if isinstance(number, (int, float, np.integer, np.floating)):
            if kind == "float":
                return str(float(number))
            if float(number).is_integer():
                return str(int(number))
    return str(value)


def value_kind(s: pd.Series) -> str:
    """How a column of ids or categories was read (bool, int, float or other): what `category_key` needs to look a
    value up as training wrote it."""
    return ("bool" if pd.api.types.is_bool_dtype(s) else "int" if pd.api.types.is_integer_dtype(s)
            else "float" if pd.api.types.is_float_dtype(s) else "other")


def same_label(value: Any, label: Any) -> bool:
    """A label read from a file equals the configured one: 1, 1.0 and '1' are one label; 'Fraud' is 'Fraud'."""
    value, label = _to_py(value), _to_py(label)
    if isinstance(value, bool) or isinstance(label, bool):
        return str(value).lower() == str(label).lower()
    try:
        return float(value) == float(label)
    except (TypeError, ValueError):
        return str(value) == str(label)


def anomaly_value(y: pd.Series, declared: Any, target: str) -> Any:
    """The evaluation label that marks an anomaly: data.anomaly_label, else 1 / True for a 0/1 or boolean column, else
    the rarer value (None when the column holds no labels)."""
    values = y.dropna()
    if declared is not None:
        if len(values) and not any(same_label(v, declared) for v in values.unique().tolist()):
            seen = sorted(set(values.astype(str)))[:10]
            raise DataError(f"data.anomaly_label: {declared!r} is not a value of '{target}' in the training split "
                            f"(it holds {seen})")
        return declared
    if values.empty:
        return None
    unique = set(values.map(_to_py).tolist())
    if unique <= {0, 1} or unique <= {True, False}:
        return 1 if unique <= {0, 1} and not pd.api.types.is_bool_dtype(values) else True
    counts = values.map(_to_py).value_counts()
    return _to_py(counts.index[-1])


def unreadable(skipped: dict) -> str:
    """Why a row of new data has no prediction: its skipped entry (an unreadable image or audio file) in words."""
    if "smiles" in skipped:
        return f"unparsable SMILES {skipped['smiles']!r}: {skipped['error']}"
    kind = "image" if "image" in skipped else "audio"
    return f"unreadable {kind} {skipped[kind]}: {skipped['error']}"


@dataclass
class Encoded:
    """Tensors for a set of samples; `rows` are the source row positions each sample came from."""

    features: dict[str, torch.Tensor]
    rows: np.ndarray
    skipped: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


class Preprocessor:
    """Learns scalers, imputation values, clip bounds, vocabularies, tokenizers and the label map on the
    training split (`fit`), then turns raw rows into tensors (`transform`)."""

    def __init__(self, schema: dict[str, str], target: str, task: str, data: DataConfig):
        if data.text.pair is not None:  # the pair is one text input, keyed by its first column
            missing = [c for c in data.text.pair if c not in schema]
            if missing:
                raise DataError(f"data.text.pair: column(s) {missing} are not in the data (it has: {', '.join(schema)})")
            a, b = data.text.pair
            schema = {**schema, a: "text", b: "pair"}
        self.schema = schema
        self.target = target
        self.task = task
        self.data = data
        self.cache_dir: Path | None = None
        """Where `transform` keeps text encodings (tokens-<key>.safetensors) to reuse; None = no cache. Set by
        training (the run's cache/ folder, a tune study's); never saved with the preprocessor."""

    # ------------------------------------------------------------------ columns by role
    def _cols(self, *kinds: str) -> list[str]:
        return [c for c, k in self.schema.items() if k in kinds]

    def _missing(self, col: str, clean: CleanConfig) -> tuple[str, Any]:
        numeric = self.schema[col] in ("numeric", "datetime") or col in getattr(self, "numeric_cols_", [])
        return clean.missing_strategy(col, numeric)

    def _numeric_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """Numeric, binary-numeric and expanded datetime columns as floats (NaN kept)."""
        out = {}
        for col in self.numeric_cols_:
            out[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
        for col in self._cols("datetime"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dt = pd.to_datetime(df[col], errors="coerce", format="mixed")
            for part in DATETIME_PARTS:
                out[f"{col}.{part}"] = getattr(dt.dt, part).astype(float)
        return pd.DataFrame(out, index=df.index)

    # ------------------------------------------------------------------ fit
    def fit(self, df: pd.DataFrame) -> Preprocessor:
        """Fit every input kind's transform on the training split, in order (sequence windows read the numeric
        columns' statistics; image statistics come last)."""
        self._fit_numeric(df)
        self._fit_categorical(df)
        self._fit_text(df)
        self._fit_sequences(df)
        self._fit_target(df)
        self._fit_molecules(df)
        self._fit_images(df)
        self._fit_audio(df)
        return self

    def _fit_numeric(self, df: pd.DataFrame) -> None:
        """Numeric and date columns: missing-value fill, outlier bounds, standardisation, and the texts that
        training read as missing ('?', 'n/a')."""
        clean = self.data.clean
        binary_numeric = [c for c in self._cols("binary") if pd.api.types.is_numeric_dtype(df[c])]
        self.numeric_cols_ = self._cols("numeric") + binary_numeric
        self.categorical_cols_ = self._cols("categorical") + [c for c in self._cols("binary") if c not in binary_numeric]
        self.report_: dict[str, Any] = {"imputed": {}, "clipped": {}, "flagged": []}
        num = self._numeric_frame(df)
        self.missing_markers_ = {}  # texts in numeric and date columns that training read as missing ('?', 'n/a')
        for col in self.numeric_cols_ + self._cols("datetime"):
            parsed = num[col] if col in num.columns else num[f"{col}.year"]
            unparsed = df[col].notna() & parsed.isna()
            if unparsed.any():
                self.missing_markers_[col] = sorted(set(df.loc[unparsed, col].astype(str).str.strip()))[:20]
        self.numeric_: dict[str, dict] = {}
        for col in num.columns:
            base = col.split(".")[0]
            strategy, value = self._missing(base, clean)
            s = num[col]
            if s.notna().sum() == 0:
                raise DataError(f"column '{base}': every value is missing in the training split; "
                                f"drop it with data.types: {{{base}: ignore}}")
            if strategy == "unknown":
                raise DataError(f"data.clean: column '{base}' is numeric; 'unknown' applies to categorical columns")
            fill = {"mean": s.mean(), "median": s.median(), "mode": s.mode().iloc[0],
                    "constant": value, "flag": s.median(), "drop": s.median()}[strategy]
            lo, hi = outlier_bounds(s, clean) or (None, None)
            filled = s.fillna(float(fill))
            if lo is not None:
                self.report_["clipped"][col] = int(((filled < lo) | (filled > hi)).sum())
                filled = filled.clip(lo, hi)
            std = float(filled.std(ddof=0)) or 1.0
            self.numeric_[col] = {"fill": float(fill), "lo": _to_py(lo), "hi": _to_py(hi), "mean": float(filled.mean()),
                                  "std": std, "flag": strategy == "flag"}
            if s.isna().any():
                self.report_["imputed"][col] = int(s.isna().sum())

    def _fit_categorical(self, df: pd.DataFrame) -> None:
        """Categorical columns: vocabularies, missing-value fills, and how training read each column's values."""
        self.vocab_: dict[str, list[str]] = {}
        self.cat_fill_: dict[str, str | None] = {}
        # how training read each categorical column's values: a value is looked up as it would have been written
        # there, whatever type it arrives as (JSON's 1 vs a float column's '1.0'; a batch-mate's 2.5 made pandas
        # read a neighbour's 1 as 1.0)
        self.cat_kinds_ = {c: value_kind(df[c]) for c in self.categorical_cols_}
        for col in self.categorical_cols_:
            values = df[col].dropna().astype(str)
            self.vocab_[col] = sorted(values.unique().tolist())
            strategy, value = self._missing(col, self.data.clean)
            if strategy not in ("drop", "unknown", "mode", "constant"):
                raise DataError(f"data.clean: column '{col}' is categorical; its missing-value strategy must be drop, "
                                f"unknown, mode or constant, got '{strategy}'")
            self.cat_fill_[col] = (values.mode().iloc[0] if strategy == "mode" and len(values)
                                   else str(value) if strategy == "constant" else None)
            if self.cat_fill_[col] is not None and df[col].isna().any():
                self.report_["imputed"][col] = int(df[col].isna().sum())

    def _fit_text(self, df: pd.DataFrame) -> None:
        """Text columns: a tokenizer trained on the training texts, or the model's own."""
        self.tokenizers_: dict[str, Any] = {}
        text_cfg = self.data.text
        # text columns that held missing values in training: there a missing text at predict time is expected
        self.text_missing_ = [c for c in self._cols("text", "pair") if df[c].isna().any()]
        for col in self._cols("text"):
            texts = df[col].fillna("").astype(str).tolist()
            if text_cfg.tokenizer in ("wordpiece", "bpe", "char"):
                tok = train_tokenizer(texts, text_cfg.tokenizer, text_cfg.vocab_size, text_cfg.min_frequency, text_cfg.lowercase)
            else:
                tok = load_tokenizer(Path(text_cfg.tokenizer))
            if text_cfg.pair is not None and tok.post_processor is None:  # a trained tokenizer: separate a from b
                from tokenizers.processors import TemplateProcessing

                tok.post_processor = TemplateProcessing(single="$A", pair="$A [SEP] $B:1",
                                                        special_tokens=[("[SEP]", tok.token_to_id("[SEP]"))])
            self.tokenizers_[col] = tok
        self.pair_segments_ = False
        if text_cfg.pair is not None:  # does this tokenizer mark the second text's tokens (BERT's token_type_ids)?
            self.pair_segments_ = any(self.tokenizers_[text_cfg.pair[0]].encode("a", "b").type_ids)

    def _fit_sequences(self, df: pd.DataFrame) -> None:
        """List columns (each one channel of a per-row series: their longest length, and each channel's mean and
        scale over every training step), and data.sequence windows (their numeric features)."""
        self.sequence_cols_ = self._cols("sequence")
        self.sequence_len_ = {c: int(df[c].dropna().map(len).max()) for c in self.sequence_cols_}
        self.sequence_stats_ = {}
        for c in self.sequence_cols_:
            steps = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in df[c].dropna().tolist()] or [np.zeros(1)])
            steps = steps[np.isfinite(steps)]
            mean, std = (float(steps.mean()), float(steps.std())) if steps.size else (0.0, 1.0)
            self.sequence_stats_[c] = {"mean": mean, "std": std or 1.0}
        if self.data.sequence is not None:
            seq = self.data.sequence
            feats = seq.features or [c for c in self.numeric_ if c not in (seq.group_column, seq.order_column)]
            missing = [f for f in feats if f not in self.numeric_]
            if missing:
                raise DataError(f"data.sequence.features: {missing} are not numeric columns of the data")
            self.window_features_ = feats

    def _fit_target(self, df: pd.DataFrame) -> None:
        """Classes (classification), the target's mean and scale (regression), or the value that marks an anomaly in
        the evaluation labels (anomaly)."""
        if self.task == "anomaly":
            self.anomaly_label_ = anomaly_value(df[self.target], self.data.anomaly_label, self.target)
            return
        if self.task == "classification":
            labels = df[self.target].dropna().unique().tolist()
            self.classes_ = sorted((_to_py(v) for v in labels), key=lambda v: (str(type(v)), v))
            if len(self.classes_) < 2:
                raise DataError(f"target '{self.target}' has a single class ({self.classes_[0]!r}) in the training "
                                "split; classification needs at least two")
        else:
            y = pd.to_numeric(df[self.target], errors="coerce")
            if y.isna().any():
                row = int(np.flatnonzero(y.isna().to_numpy())[0])
                raise DataError(f"target '{self.target}' must be numeric for regression; row {row} holds "
                                f"{df[self.target].iloc[row]!r}")
            self.y_mean_, self.y_std_ = float(y.mean()), float(y.std(ddof=0)) or 1.0

    def _fit_molecules(self, df: pd.DataFrame) -> None:
        """SMILES columns: each descriptor's fill value (median), clip range and scale over the training molecules
        (fingerprint counts are used as they are)."""
        self.molecule_cols_ = self._cols("smiles")
        self.molecule_: dict[str, dict] = {}
        self._fitted_molecules: dict[str, tuple[list, tuple]] = {}  # not saved: see _molecules
        for col in self.molecule_cols_:
            fp, ds, keep, bad = self._molecules(df[col], bad_ok=True)
            self._fitted_molecules[col] = (df[col].tolist(), (fp, ds, keep, bad))
            med = np.nanmedian(ds, axis=0) if ds.shape[1] else np.zeros(0)
            med = np.where(np.isfinite(med), med, 0.0)
            filled = np.where(np.isnan(ds), med, ds)
            lo, hi = (filled.min(axis=0), filled.max(axis=0)) if len(filled) else (med, med)
            std = filled.std(axis=0) if len(filled) else np.ones_like(med)
            self.molecule_[col] = {"bits": int(fp.shape[1]), "fill": med.tolist(), "lo": lo.tolist(), "hi": hi.tolist(),
                                   "mean": filled.mean(axis=0).tolist() if len(filled) else med.tolist(),
                                   "std": np.where(std > 1e-8, std, 1.0).tolist()}
            if bad:
                self.report_.setdefault("unparsed_smiles", {})[col] = len(bad)

    def _molecules(self, values: pd.Series, bad_ok: bool) -> tuple[np.ndarray, np.ndarray, list[int], list[dict]]:
        from .molecules import featurize

        m = self.data.molecule
        smiles = values.tolist()
        fitted, done = getattr(self, "_fitted_molecules", {}).pop(values.name, (None, None))
        if fitted == smiles:  # the training rows, just featurized by fit: RDKit's descriptors are ~4 ms a molecule
            fp, ds, keep, bad = done
        else:
            fp, ds, keep, bad = featurize(smiles, m.fingerprint, m.radius, m.bits, m.descriptors)
        if bad and self.data.bad_smiles == "error" and not bad_ok:
            raise DataError(f"row {bad[0]['row'] + 1}, column '{values.name}': SMILES {bad[0]['smiles'][:80]!r}: "
                            f"{bad[0]['error']}; {len(bad)} in all. Fix or drop them, or set data.bad_smiles: skip")
        return fp, ds, keep, bad

    def _molecule_features(self, col: str, values: pd.Series) -> tuple[np.ndarray, list[int], list[dict]]:
        """One SMILES column -> [n parsed, fingerprint + descriptors] float32, with training's fill, clip and scale."""
        st = self.molecule_[col]
        fp, ds, keep, bad = self._molecules(values, bad_ok=False)
        if ds.shape[1]:
            ds = np.where(np.isnan(ds), np.asarray(st["fill"]), ds)
            ds = np.clip(ds, st["lo"], st["hi"])
            ds = (ds - np.asarray(st["mean"])) / np.asarray(st["std"])
        return np.concatenate([fp, ds.astype(np.float32)], axis=1).astype(np.float32), keep, bad

    def _fit_images(self, df: pd.DataFrame) -> None:
        """Per-channel mean and scale of the training images."""
        self.image_col_ = next(iter(self._cols("image")), None)
        self.image_stats_ = None
        if self.image_col_ is not None:
            enc = self._images(df[self.image_col_], bad_ok=True)[0]
            self.image_stats_ = {"mean": enc.mean(dim=(0, 2, 3)).tolist(), "std": enc.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()}

    def _fit_audio(self, df: pd.DataFrame) -> None:
        """The mean and scale of the training spectrograms' log-mel values."""
        self.audio_col_ = next(iter(self._cols("audio")), None)
        self.audio_stats_ = None
        if self.audio_col_ is not None:
            enc = self._audio(df[self.audio_col_], bad_ok=True)[0]
            self.audio_stats_ = {"mean": float(enc.mean()), "std": float(enc.std().clamp_min(1e-3))}

    # ------------------------------------------------------------------ transform
    def _audio(self, values: pd.Series, bad_ok: bool, none_ok: bool = False) -> tuple[torch.Tensor, list[int], list[dict]]:
        """Recordings -> log-mel spectrograms [N, 1, mels, frames]; the file's sample rates counted in `audio_rates_`."""
        cfg = self.data.audio
        out, keep, bad, self.audio_rates_ = spectrograms(values.tolist(), cfg)
        if bad and self.data.bad_audio == "error" and not bad_ok:
            raise DataError(f"unreadable audio at row {bad[0]['row'] + 1}: {bad[0]['audio']} ({bad[0]['error']}); "
                            f"{len(bad)} in all. Set data.bad_audio: skip to skip them")
        if not out and none_ok:
            return torch.empty((0, 1, *self._audio_shape())), keep, bad
        if not out:
            raise DataError(f"no readable audio ({len(bad)} unreadable, e.g. {bad[0]['audio'] if bad else '-'}: "
                            f"{bad[0]['error'] if bad else ''})")
        return torch.stack(out), keep, bad

    def _images(self, values: pd.Series, bad_ok: bool, none_ok: bool = False) -> tuple[torch.Tensor, list[int], list[dict]]:
        cfg = self.data.image
        out, keep, bad = [], [], []
        for i, v in enumerate(values.tolist()):
            try:
                out.append(load_image(v, cfg.channels, tuple(cfg.size)))
                keep.append(i)
            except Exception as exc:  # PIL raises many types for a corrupt file; each is reported
                shown = f"<{len(v)} bytes>" if isinstance(v, bytes) else str(v)
                msg = str(exc).replace(f" {v!r}", "") if isinstance(v, bytes) else str(exc)
                msg = msg.split(" <_io.BytesIO")[0]  # PIL names the in-memory buffer by its address
                bad.append({"row": i, "image": shown, "error": f"{type(exc).__name__}: {msg}"})
        if bad and self.data.bad_images == "error" and not bad_ok:
            raise DataError(f"unreadable image at row {bad[0]['row'] + 1}: {bad[0]['image']} ({bad[0]['error']}); "
                            f"{len(bad)} in all. Set data.bad_images: skip to skip them")
        if not out and none_ok:  # new data: every row gets its own error
            return torch.empty((0, cfg.channels, *cfg.size)), keep, bad
        if not out:
            raise DataError(f"no readable images ({len(bad)} unreadable, e.g. {bad[0]['image'] if bad else '-'})")
        return torch.stack(out), keep, bad

    def _encode(self, tok, texts: list, with_segments: bool) -> dict:
        """ids, lengths (and segments) of one text column, plus how many texts were truncated; from the token
        cache when `cache_dir` holds this exact encoding."""
        path = None
        if self.cache_dir is not None:
            key = token_cache_key(tok, texts, self.data.text.max_length, with_segments)
            path = Path(self.cache_dir) / f"tokens-{key}.safetensors"
            hit = load_cached_tokens(path)
            if hit is not None and len(hit[0]["ids"]) == len(texts):
                return {**hit[0], "truncated": hit[1]}
        encs = tok.encode_batch(texts)
        ids, lengths = pad_ids(encs)
        out = {"ids": ids, "lengths": lengths, "truncated": sum(bool(e.overflowing) for e in encs)}
        if with_segments:
            segments = torch.zeros_like(ids)
            for i, e in enumerate(encs):
                segments[i, : len(e.type_ids)] = torch.tensor(e.type_ids, dtype=torch.long)
            out["segments"] = segments
        if path is not None:  # int32 on disk: half the size, and no vocabulary comes near 2^31
            try:
                save_safetensors(path, {k: v.to(torch.int32) for k, v in out.items() if k != "truncated"},
                                 metadata={"truncated": str(out["truncated"])})
            except OSError as exc:  # a cache: a folder that cannot be written costs only the reuse
                warnings.warn(f"text encodings not cached in {path.parent}: {exc}", stacklevel=2)
        return out

    def _check_texts(self, df: pd.DataFrame) -> None:
        """New data: a missing text is refused, naming row and column, unless training had missing texts in that
        column (a misparsed file's shifted rows arrive as missing texts, and every one got the same confident label)."""
        allowed = getattr(self, "text_missing_", None)
        if allowed is None:  # saved before this was recorded: read as an empty text, as it was
            return
        for col in self._cols("text", "pair"):
            bad = df[col].isna() if col not in allowed else None
            if bad is not None and bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(f"row {i + 1}, column '{col}': the text is missing ({int(bad.sum())} row(s)), and the "
                                "model was trained on texts there; give a text, or drop the row")

    def _check_numbers(self, df: pd.DataFrame, parsed: pd.DataFrame) -> None:
        """New data (predict, evaluate): a numeric column's value that is not a number (a date column's that is not a
        date) is refused, naming the row and column, unless training saw the same text in that column (a
        missing-value marker such as '?')."""
        markers = getattr(self, "missing_markers_", None)
        if markers is None:  # saved before markers were recorded: coerced, as it was
            return
        for col, kind in [(c, "number") for c in self.numeric_cols_] + [(c, "date") for c in self._cols("datetime")]:
            raw = df[col]
            if kind == "number" and pd.api.types.is_numeric_dtype(raw):
                continue
            value = parsed[col] if kind == "number" else parsed[f"{col}.year"]
            text = raw.astype(str).str.strip()
            bad = raw.notna() & value.isna() & ~text.isin(set(markers.get(col, [])) | {""})
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                known = markers.get(col)
                raise DataError(f"row {i + 1}, column '{col}': {raw.iloc[i]!r} is not a {kind}, and the model was "
                                f"trained on {kind}s there ({int(bad.sum())} such value(s)); leave the cell empty for "
                                "a missing value" + (f" or write one of the markers training saw: {known}" if known else ""))

    def transform(self, df: pd.DataFrame, last_window_only: bool = False, strict: bool = False) -> Encoded:
        """Rows to tensors. strict (new data at predict/evaluate time): values a numeric column cannot hold are
        refused instead of being treated as missing, as they are in the training data's splits (and counted)."""
        missing = [c for c in self.schema if self.schema[c] != "ignore" and c not in df.columns]
        if missing:
            raise DataError(f"input is missing column(s) the model needs: {', '.join(missing)} "
                            f"(it has: {', '.join(map(str, df.columns[:20]))})")
        rows = np.arange(len(df))
        feats: dict[str, torch.Tensor] = {}
        skipped: list[dict] = []
        num = self._numeric_frame(df)
        if strict:
            self._check_numbers(df, num)
            self._check_texts(df)
        cols = []
        for col, st in self.numeric_.items():
            s = num[col]
            v = s.fillna(st["fill"])
            if st["lo"] is not None:
                v = v.clip(st["lo"], st["hi"])
            cols.append(((v - st["mean"]) / st["std"]).to_numpy(np.float32))
            if st["flag"]:
                cols.append(s.isna().to_numpy(np.float32))
        if cols:
            feats["numeric"] = torch.from_numpy(np.stack(cols, axis=1))
        if self.categorical_cols_:
            idx = []
            kinds = getattr(self, "cat_kinds_", {})
            for col in self.categorical_cols_:
                lookup = {v: i + 1 for i, v in enumerate(self.vocab_[col])}
                values = df[col] if self.cat_fill_.get(col) is None else df[col].fillna(self.cat_fill_[col])
                kind = kinds.get(col, "other")
                idx.append(np.fromiter((lookup.get(category_key(v, kind), 0) if pd.notna(v) else 0
                                        for v in values.tolist()), np.int64, len(values)))
            feats["categorical"] = torch.from_numpy(np.stack(idx, axis=1))
        self.truncated_ = {}
        pair = self.data.text.pair
        for col, tok in self.tokenizers_.items():
            tok.enable_truncation(self.data.text.max_length)
            texts = df[col].fillna("").astype(str).tolist()
            if pair is not None and col == pair[0]:
                texts = list(zip(texts, df[pair[1]].fillna("").astype(str).tolist()))
            with_segments = pair is not None and col == pair[0] and bool(self.pair_segments_)
            tokens = self._encode(tok, texts, with_segments)
            self.truncated_[col] = tokens.pop("truncated")
            feats[f"text:{col}"], feats[f"len:{col}"] = tokens["ids"], tokens["lengths"]
            if with_segments:
                feats[f"segment:{col}"] = tokens["segments"]
        if self.sequence_cols_:
            feats["sequence"] = self._series(df)
        for col in getattr(self, "molecule_cols_", []):  # molecules are numbers to every model: appended to `numeric`
            x, keep, bad = self._molecule_features(col, df[col].iloc[rows])
            keep_t = torch.tensor(keep, dtype=torch.long)
            feats = {k: v[keep_t] for k, v in feats.items()}
            x = torch.from_numpy(x)
            feats["numeric"] = torch.cat([feats["numeric"], x], dim=1) if "numeric" in feats else x
            skipped += [{**b, "row": int(rows[b["row"]])} for b in bad]
            rows = rows[keep]
        if self.image_col_ is not None:
            imgs, keep, bad = self._images(df[self.image_col_].iloc[rows], bad_ok=False, none_ok=strict)
            mean = torch.tensor(self.image_stats_["mean"]).view(-1, 1, 1)
            std = torch.tensor(self.image_stats_["std"]).view(-1, 1, 1)
            keep_t = torch.tensor(keep, dtype=torch.long)
            feats = {k: v[keep_t] for k, v in feats.items()}
            feats["image"] = (imgs - mean) / std
            skipped += [{**b, "row": int(rows[b["row"]])} for b in bad]
            rows = rows[keep]
        if self.audio_col_ is not None:
            spec, keep, bad = self._audio(df[self.audio_col_].iloc[rows], bad_ok=False, none_ok=strict)
            keep_t = torch.tensor(keep, dtype=torch.long)
            feats = {k: v[keep_t] for k, v in feats.items()}
            feats["audio"] = (spec - self.audio_stats_["mean"]) / self.audio_stats_["std"]
            skipped += [{**b, "row": int(rows[b["row"]])} for b in bad]
            rows = rows[keep]
        if self.data.sequence is not None:
            feats, rows = self._windows(df, feats, last_window_only)
        return Encoded(feats, rows, skipped)

    def _series(self, df: pd.DataFrame) -> torch.Tensor:
        """List columns -> [N, T, channels]: one channel per column, standardised by training's statistics (none were
        kept by runs saved before them), cut or zero-padded at the end to the longest training series; a missing step
        (NaN) or a missing series is 0, the training mean."""
        T = max(self.sequence_len_.values())
        arr = np.zeros((len(df), T, len(self.sequence_cols_)), dtype=np.float32)
        stats = getattr(self, "sequence_stats_", {})
        for j, col in enumerate(self.sequence_cols_):
            st = stats.get(col, {"mean": 0.0, "std": 1.0})
            for i, v in enumerate(df[col].tolist()):
                if isinstance(v, (list, tuple, np.ndarray)) and len(v):
                    v = (np.asarray(v, dtype=np.float32).ravel()[:T] - st["mean"]) / st["std"]
                    arr[i, : len(v), j] = np.nan_to_num(v, nan=0.0)
        return torch.from_numpy(arr)

    def _windows(self, df: pd.DataFrame, feats: dict, last_only: bool) -> tuple[dict, np.ndarray]:
        seq = self.data.sequence
        names = [c for c, st in self.numeric_.items() for c in ([c, c + ".missing"] if st["flag"] else [c])]
        cols = [names.index(f) for f in self.window_features_]
        x = feats["numeric"][:, cols]
        order = np.lexsort((df[seq.order_column].to_numpy(), df[seq.group_column].astype(str).to_numpy()))
        groups = df[seq.group_column].astype(str).to_numpy()[order]
        windows, ends = [], []
        W = seq.window
        start = 0
        for stop in list(np.flatnonzero(groups[1:] != groups[:-1]) + 1) + [len(order)]:
            g = torch.as_tensor(order[start:stop])
            gx = x[g]
            if len(gx) < W:  # a short series is padded at the front with its first row
                gx = torch.cat([gx[:1].expand(W - len(gx), -1), gx])
                g = torch.cat([g[:1].expand(W - len(g)), g])
            last = range(len(gx) - 1, len(gx)) if last_only else range(W - 1, len(gx), seq.stride)
            for e in last:
                windows.append(gx[e - W + 1: e + 1])
                ends.append(int(g[e]))
            start = stop
        return {"sequence": torch.stack(windows)}, np.asarray(ends)

    # ------------------------------------------------------------------ target
    def encode_target(self, y: pd.Series) -> torch.Tensor:
        if self.task == "anomaly":  # 1 = anomaly, 0 = normal, -1 = not labelled (scored by no metric)
            label = self.anomaly_label_
            codes = [-1 if pd.isna(v) else int(same_label(v, label)) for v in y.tolist()]
            return torch.tensor(codes, dtype=torch.long)
        if self.task == "classification":
            lookup = {v: i for i, v in enumerate(self.classes_)}
            codes = [lookup.get(_to_py(v), -1) for v in y.tolist()]
            if -1 in codes:
                row = codes.index(-1)
                unseen = sorted({str(v) for v, c in zip(y.tolist(), codes) if c == -1})
                raise DataError(f"target '{self.target}': label {y.iloc[row]!r} (data row {row + 1}) was never seen in "
                                f"training; {sum(c == -1 for c in codes)} row(s) carry unseen labels {unseen[:10]} "
                                f"(the model knows {len(self.classes_)}: {self.classes_[:20]})")
            return torch.tensor(codes, dtype=torch.long)
        y = pd.to_numeric(y, errors="coerce").to_numpy(np.float32)
        return torch.from_numpy((y - self.y_mean_) / self.y_std_)

    def decode_regression(self, z: np.ndarray) -> np.ndarray:
        return z * self.y_std_ + self.y_mean_

    # ------------------------------------------------------------------ spec for model builders
    def spec(self) -> InputSpec:
        """What a model for this data is built for."""
        windows = self.data.sequence is not None
        sequence = None
        if windows:
            sequence = (self.data.sequence.window, len(self.window_features_))
        elif self.sequence_cols_:
            sequence = (max(self.sequence_len_.values()), len(self.sequence_cols_))
        return InputSpec(
            task=self.task, n_outputs=len(self.classes_) if self.task == "classification" else 1,  # anomaly: a score
            n_numeric=0 if windows else (sum(2 if st["flag"] else 1 for st in self.numeric_.values())
                                         + sum(st["bits"] + len(st["fill"]) for st in getattr(self, "molecule_", {}).values())),
            categorical=() if windows else tuple(len(self.vocab_[c]) + 1 for c in self.categorical_cols_),
            text={c: t.get_vocab_size() for c, t in self.tokenizers_.items()},
            max_length=self.data.text.max_length + 2,
            segments=tuple(c for c in self.tokenizers_ if self.pair_segments_ and c == self.data.text.pair[0]),
            image=(self.data.image.channels, *self.data.image.size) if self.image_col_ else None,
            audio=self._audio_shape() if self.audio_col_ else None,
            sequence=sequence)

    def _audio_shape(self) -> tuple[int, int]:
        cfg = self.data.audio
        return cfg.n_mels, frames(round(cfg.duration * cfg.sample_rate), cfg.sample_rate, cfg.hop_ms)

    # ------------------------------------------------------------------ persistence (JSON, no pickle)
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        state = {"schema": self.schema, "target": self.target, "task": self.task,
                 "data": self.data.model_dump(mode="json"), "numeric": self.numeric_, "numeric_cols": self.numeric_cols_,
                 "categorical_cols": self.categorical_cols_, "vocab": self.vocab_, "cat_fill": self.cat_fill_,
                 "image_col": self.image_col_,
                 "image_stats": self.image_stats_, "audio_col": self.audio_col_, "audio_stats": self.audio_stats_,
                 "sequence_cols": self.sequence_cols_, "sequence_len": self.sequence_len_,
                 "sequence_stats": self.sequence_stats_,
                 "window_features": getattr(self, "window_features_", None), "text_cols": list(self.tokenizers_),
                 "pair_segments": self.pair_segments_,
                 "classes": getattr(self, "classes_", None), "anomaly_label": getattr(self, "anomaly_label_", None), "y_mean": getattr(self, "y_mean_", None),
                 "y_std": getattr(self, "y_std_", None), "missing_markers": getattr(self, "missing_markers_", None),
                 "text_missing": getattr(self, "text_missing_", None),
                 "cat_kinds": getattr(self, "cat_kinds_", None), "molecule": getattr(self, "molecule_", {})}
        for i, tok in enumerate(self.tokenizers_.values()):
            atomic_write_text(directory / f"tokenizer_{i}.json", tok.to_str())
        atomic_write_text(directory / "preprocessor.json", json.dumps(state, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> Preprocessor:
        from tokenizers import Tokenizer

        s = json.loads((directory / "preprocessor.json").read_text(encoding="utf-8"))
        self = cls(s["schema"], s["target"], s["task"], DataConfig.model_validate(s["data"]))
        self.numeric_, self.numeric_cols_ = s["numeric"], s["numeric_cols"]
        self.categorical_cols_, self.vocab_, self.cat_fill_ = s["categorical_cols"], s["vocab"], s["cat_fill"]
        self.image_col_, self.image_stats_ = s["image_col"], s["image_stats"]
        self.audio_col_, self.audio_stats_ = s.get("audio_col"), s.get("audio_stats")
        self.sequence_cols_, self.sequence_len_ = s["sequence_cols"], s["sequence_len"]
        if s.get("sequence_stats") is not None:
            self.sequence_stats_ = s["sequence_stats"]
        if s["window_features"] is not None:
            self.window_features_ = s["window_features"]
        self.tokenizers_ = {c: Tokenizer.from_file(str(directory / f"tokenizer_{i}.json")) for i, c in enumerate(s["text_cols"])}
        self.pair_segments_ = s.get("pair_segments", False)
        if s.get("missing_markers") is not None:
            self.missing_markers_ = s["missing_markers"]
        if s.get("cat_kinds") is not None:
            self.cat_kinds_ = s["cat_kinds"]
        if s.get("text_missing") is not None:
            self.text_missing_ = s["text_missing"]
        self.molecule_ = s.get("molecule") or {}
        self.molecule_cols_ = list(self.molecule_)
        if s["task"] == "anomaly":
            self.anomaly_label_ = s["anomaly_label"]
        elif s["classes"] is not None:
            self.classes_ = s["classes"]
        else:
            self.y_mean_, self.y_std_ = s["y_mean"], s["y_std"]
        return self
