"""Recommendation (data.task recommend): a table of user-item interactions (a user column, an item column, optionally
a rating and a time) becomes index pairs. Each user's interactions split into training, validation and test (the
latest ones when a time column is given, else a seeded random share), so every held-out interaction belongs to a user
the model knows: the test asks "what will this user pick next", which is what a recommender is for.

Implicit feedback (no rating, or ratings turned into positives by `positive`): the model learns to rank the items a
user picked above the others. Explicit feedback (`feedback: explicit`): the model also predicts the rating (RMSE).

The preprocessor keeps the user and item vocabularies, each user's training items (never recommended again) and the
items' training popularity (the baseline, and the answer for a user never seen in training: cold start)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.runs import atomic_write_text
from ..core.spec import InputSpec
from .config import DataConfig
from .features import Encoded, category_key, value_kind
from .prepared import Prepared
from .sources import DataError


class RecommendPreprocessor:
    """User and item ids -> indices (0 = unknown), each known user's training items, item popularity, and the rating
    scale (explicit feedback). Saved as JSON beside the model."""

    task = "recommend"

    def __init__(self, data: DataConfig):
        self.data = data
        self.rc = data.recommend
        self.target = self.rc.rating or ""
        self.schema = {self.rc.user: "user", self.rc.item: "item"}
        """What the model reads: a user and an item."""

    def fit(self, train: pd.DataFrame) -> RecommendPreprocessor:
        users, items = train[self.rc.user].astype(str), train[self.rc.item].astype(str)
        self.user_kind_ = value_kind(train[self.rc.user])
        self.item_kind_ = value_kind(train[self.rc.item])
        self.users_ = sorted(users.unique().tolist())
        counts = items.value_counts()
        self.items_ = sorted(counts.index.tolist())
        self.popularity_ = [int(counts[i]) for i in self.items_]
        self._lookups()
        self.seen_ = {u: sorted({self.item_index_[i] for i in g}) for u, g in items.groupby(users)}
        if self.rc.feedback == "explicit":
            r = pd.to_numeric(train[self.rc.rating])
            self.r_mean_, self.r_std_ = float(r.mean()), float(r.std(ddof=0)) or 1.0
            self.r_min_, self.r_max_ = float(r.min()), float(r.max())
        return self

    def _lookups(self) -> None:
        self.user_index_ = {u: i + 1 for i, u in enumerate(self.users_)}
        self.item_index_ = {v: i + 1 for i, v in enumerate(self.items_)}

    def user(self, value: Any) -> int:
        """A user id (as any type: 1, '1', 1.0) -> its index, 0 when training never saw it."""
        return self.user_index_.get(category_key(value, self.user_kind_), 0)

    def item(self, value: Any) -> int:
        return self.item_index_.get(category_key(value, self.item_kind_), 0)

    def item_id(self, index: int) -> Any:
        """An item index -> the id as the data wrote it (an int column's ids come back as ints)."""
        raw = self.items_[index - 1]
        if self.item_kind_ == "int":
            return int(raw)
        if self.item_kind_ == "float":
            return float(raw)
        return raw

    def seen(self, value: Any) -> list[int]:
        """The item indices a user interacted with in training (never recommended again)."""
        return self.seen_.get(category_key(value, self.user_kind_), [])

    def popular(self) -> np.ndarray:
        """Item indices, most popular in training first (ties: the earlier id)."""
        return np.argsort(-np.asarray(self.popularity_), kind="stable") + 1

    def transform(self, df: pd.DataFrame) -> tuple[Encoded, torch.Tensor]:
        users = np.fromiter((self.user(v) for v in df[self.rc.user].tolist()), np.int64, len(df))
        items = np.fromiter((self.item(v) for v in df[self.rc.item].tolist()), np.int64, len(df))
        feats = {"user": torch.from_numpy(users), "item": torch.from_numpy(items)}
        if self.rc.feedback == "explicit":
            r = pd.to_numeric(df[self.rc.rating]).to_numpy(np.float32)
            y = torch.from_numpy((r - self.r_mean_) / self.r_std_)
        else:
            y = torch.ones(len(df), dtype=torch.float32)
        return Encoded(feats, np.arange(len(df))), y

    def decode_rating(self, z: np.ndarray) -> np.ndarray:
        return np.clip(z * self.r_std_ + self.r_mean_, self.r_min_, self.r_max_)

    def spec(self) -> InputSpec:
        return InputSpec(task="recommend", n_outputs=1, users=len(self.users_) + 1, items=len(self.items_) + 1,
                         explicit=self.rc.feedback == "explicit")

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        state = {"kind": "recommend", "task": "recommend", "data": self.data.model_dump(mode="json"),
                 "users": self.users_, "items": self.items_, "popularity": self.popularity_,
                 "user_kind": self.user_kind_, "item_kind": self.item_kind_, "seen": self.seen_,
                 "rating": [self.r_mean_, self.r_std_, self.r_min_, self.r_max_] if hasattr(self, "r_mean_") else None}
        atomic_write_text(directory / "preprocessor.json", json.dumps(state, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path, state: dict | None = None) -> RecommendPreprocessor:
        s = state or json.loads((directory / "preprocessor.json").read_text(encoding="utf-8"))
        self = cls(DataConfig.model_validate(s["data"]))
        self.users_, self.items_, self.popularity_ = s["users"], s["items"], s["popularity"]
        self.user_kind_, self.item_kind_, self.seen_ = s["user_kind"], s["item_kind"], s["seen"]
        if s["rating"] is not None:
            self.r_mean_, self.r_std_, self.r_min_, self.r_max_ = s["rating"]
        self._lookups()
        return self


def interactions(df: pd.DataFrame, data: DataConfig, where: str) -> tuple[pd.DataFrame, dict]:
    """The interaction table checked and cleaned: the columns exist, ratings are numbers, rows without a user or item
    are dropped (counted), a repeated user-item pair keeps its latest row (counted)."""
    rc = data.recommend
    cols = [rc.user, rc.item] + [c for c in (rc.rating, rc.time_column) if c]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{where}: column(s) {missing} not found (data.recommend); it has: "
                        f"{', '.join(map(str, df.columns[:20]))}")
    report: dict[str, Any] = {"rows": len(df)}
    empty = df[rc.user].isna() | df[rc.item].isna()
    if empty.any():
        report["dropped_without_user_or_item"] = int(empty.sum())
        df = df[~empty]
    if rc.rating:
        r = pd.to_numeric(df[rc.rating], errors="coerce")
        bad = r.isna() & df[rc.rating].notna()
        if bad.any() or (rc.feedback == "explicit" and r.isna().any()):
            i = int(np.flatnonzero((bad | r.isna()).to_numpy())[0])
            raise DataError(f"{where}: row {df.index[i] + 1}, column '{rc.rating}': {df[rc.rating].iloc[i]!r} is not a "
                            "rating (a number)")
        df = df.assign(**{rc.rating: r})
    if rc.time_column:
        t = pd.to_numeric(df[rc.time_column], errors="coerce")
        if t.isna().any():  # a date or time as text
            t = pd.to_datetime(df[rc.time_column], errors="coerce", format="mixed")
            if t.isna().any():
                i = int(np.flatnonzero(t.isna().to_numpy())[0])
                raise DataError(f"{where}: row {df.index[i] + 1}, column '{rc.time_column}': "
                                f"{df[rc.time_column].iloc[i]!r} is not a time")
            t = t.astype("int64")
        df = df.assign(_time=t.to_numpy())
    else:
        df = df.assign(_time=np.arange(len(df)))
    df = df.sort_values("_time", kind="stable")
    dup = df.duplicated([rc.user, rc.item], keep="last")
    if dup.any():
        report["repeated_pairs_kept_latest"] = int(dup.sum())
        df = df[~dup]
    return df, report


def split_interactions(df: pd.DataFrame, data: DataConfig, seed: int) -> dict[str, pd.DataFrame]:
    """Per user: the latest (time column) or a random share of interactions held out for test, then for validation;
    a user with fewer than 3 interactions stays in training only."""
    rc = data.recommend
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    pos = np.arange(len(df))
    for _, idx in pd.Series(pos).groupby(df[rc.user].astype(str).to_numpy()):
        idx = idx.to_numpy()  # in time order
        if not rc.time_column:
            idx = rng.permutation(idx)
        n = len(idx)
        n_test = int(round(n * rc.test)) if n >= 3 else 0
        n_val = int(round(n * rc.val)) if n >= 3 else 0
        if n >= 3 and rc.test > 0:
            n_test = max(n_test, 1)
        n_train = n - n_test - n_val
        if n_train < 1:
            n_train, n_val = 1, n - 1 - n_test
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train: n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])
    return {s: df.iloc[np.sort(np.concatenate(p))] if p else df.iloc[:0] for s, p in parts.items()}


def prepare_recommend(cfg, df: pd.DataFrame, where: str, test_frame: pd.DataFrame | None = None) -> Prepared:
    """Interactions split per user; the training positives (implicit) or ratings (explicit) encoded as index pairs."""
    d = cfg.data
    rc = d.recommend
    df, report = interactions(df, d, where)
    frames = split_interactions(df, d, cfg.train.seed)
    if test_frame is not None:  # a separate test file: its interactions are the test, training keeps everything else
        frames = {"train": pd.concat([frames["train"], frames["test"]]), "val": frames["val"],
                  "test": interactions(test_frame, d, str(cfg.resolve_path(d.test_path)))[0]}
    if rc.feedback == "implicit" and rc.rating and rc.positive is not None:
        kept = {s: f[f[rc.rating] >= rc.positive] for s, f in frames.items()}
        report["below_positive_left_out"] = {s: int(len(frames[s]) - len(kept[s])) for s in frames}
        frames = kept
    frames = {s: f.reset_index(drop=True) for s, f in frames.items()}
    if not len(frames["train"]):
        raise DataError(f"{where}: no training interactions left (data.recommend.positive {rc.positive} keeps none?)")
    pre = RecommendPreprocessor(d).fit(frames["train"])
    encoded, targets, held_items, held_users = {}, {}, {}, {}
    for split, f in frames.items():
        if not len(f):
            continue
        enc, y = pre.transform(f)
        users, items = enc.features["user"], enc.features["item"]
        if split != "train":  # a pair with an unknown user or item has no score to learn or validate (the ranking
            held_items[split], held_users[split] = int((items == 0).sum()), int((users == 0).sum())  # counts it)
            known = torch.nonzero((users > 0) & (items > 0))[:, 0]
            enc, y = Encoded({k: v[known] for k, v in enc.features.items()}, enc.rows[known.numpy()]), y[known]
        encoded[split], targets[split] = enc, y
    profile = {"source": where, "task": "recommend", "feedback": rc.feedback, "users": len(pre.users_),
               "items": len(pre.items_), "cleaning": report, "splits": {s: len(e) for s, e in encoded.items()},
               "held_out_items_unseen_in_training": held_items, "held_out_users_unseen_in_training": held_users,
               "density": round(len(frames["train"]) / max(1, len(pre.users_) * len(pre.items_)), 6)}
    return Prepared(frames, encoded, targets, pre, profile, raw={"data": df})
