"""k-fold cross-validation: stratified for classification (grouped when the data has series), over the
train+val rows; the held-out test split is never touched. Reports mean ± std per metric."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

from ..core.progress import bar
from ..data import load_clean, prepare
from ..data.split import smiles_column, split_frame
from ..evaluate import metrics as M
from ..evaluate.predict_split import predict_split
from .accel import make_accelerator
from .fit import train_model

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config


def cross_validate(cfg: Config, frame: pd.DataFrame | None = None, progress=None, where: str | None = None) -> dict:
    """k folds over the train+val rows of `frame` (the table as read; read from data.path when None)."""
    d = cfg.data
    df, schema, task, _ = load_clean(cfg, frame, where)
    has_test = d.test_path is not None
    smiles = smiles_column(schema)
    idx = split_frame(df, d.split, task, d.target, cfg.train.seed, has_test,
                      d.sequence.group_column if d.sequence else None, smiles)
    pool = np.sort(np.concatenate([idx["train"], idx["val"]]))
    k = cfg.evaluate.cv.folds
    if d.sequence is not None or d.split.group_column:
        groups = df[d.sequence.group_column if d.sequence else d.split.group_column].iloc[pool]
        splitter = GroupKFold(n_splits=k).split(pool, groups=groups)
    elif d.split.method == "scaffold":  # each fold holds out whole scaffolds, as the split it replaces does
        from ..data.molecules import scaffold_groups

        groups = scaffold_groups(df[smiles].iloc[pool].tolist())
        splitter = GroupKFold(n_splits=k).split(pool, groups=groups)
    elif task == "classification":
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=cfg.train.seed).split(pool, df[d.target].iloc[pool])
    else:
        splitter = KFold(n_splits=k, shuffle=True, random_state=cfg.train.seed).split(pool)
    names = M.canonical(cfg.evaluate.metrics, task)
    folds = []
    pb = bar(k, "k-fold", unit="fold")
    for i, (tr, te) in enumerate(splitter):
        data = prepare(cfg, df, fold=(pool[tr], pool[te]))
        accelerator = make_accelerator(cfg.train.precision, cfg.train.grad_accum)
        model, result = train_model(cfg, data, None, accelerator)
        scores = predict_split(model, data, "test", names, accelerator)
        folds.append({"fold": i, "rows": int(len(te)), "best_epoch": result.best_epoch, **scores})
        pb.update(1)
        if progress:
            progress(i, scores)
    pb.close()
    summary = {}
    for n in names:
        vals = [f[n] for f in folds if f.get(n) is not None]
        if vals:
            summary[n] = {"mean": round(float(np.mean(vals)), 6), "std": round(float(np.std(vals)), 6)}
    return {"folds": k, "task": task, "per_fold": folds, "summary": summary}
