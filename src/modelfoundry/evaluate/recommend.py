"""Evaluating a recommender the way it is used: for every user with held-out interactions, the whole catalogue is
ranked (the user's training and validation items left out: they are known already), and the held-out items are
looked for in the top K. Recall@K, NDCG@K and hit rate@K, averaged over users; RMSE of the predicted ratings on the
held-out pairs (explicit feedback). The popularity ranking (most-interacted items in training) is always scored beside
the model on the same users: a recommender that cannot beat it is not personalising.

A held-out item never seen in training counts as relevant and can never be hit (no id-based model can rank it): the
numbers are not flattered by dropping it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..core.runs import Run, write_json
from ..data import Prepared
from .metrics import METRICS, names_for, register_metric

KS = (5, 10, 20)
CURVE_K = 50


class Ranking:
    """Top-K lists and the relevant items of each evaluated user: what every ranking metric reads."""

    def __init__(self, top: np.ndarray, truth: list[set[int]], rmse: float | None = None):
        self.top, self.truth, self.rmse_ = top, truth, rmse
        # index 0 pads a list shorter than K (and stands for an item training never saw): never a hit
        self.hits = np.array([[i != 0 and i in t for i in row] for row, t in zip(top, truth)], dtype=bool).reshape(top.shape)
        self.n_truth = np.array([len(t) for t in truth])

    def recall(self, k: int) -> float:
        return float((self.hits[:, :k].sum(1) / np.maximum(self.n_truth, 1)).mean())

    def hit_rate(self, k: int) -> float:
        return float(self.hits[:, :k].any(1).mean())

    def ndcg(self, k: int) -> float:
        discount = 1.0 / np.log2(np.arange(2, k + 2))
        dcg = (self.hits[:, :k] * discount).sum(1)
        idcg = np.array([discount[: min(n, k)].sum() for n in self.n_truth])
        return float((dcg / np.maximum(idcg, 1e-12)).mean())


for _k in KS:
    register_metric(f"ndcg@{_k}", "recommend", lambda r, k=_k: r.ndcg(k))
    register_metric(f"recall@{_k}", "recommend", lambda r, k=_k: r.recall(k))
    register_metric(f"hit_rate@{_k}", "recommend", lambda r, k=_k: r.hit_rate(k))
register_metric("rmse", "recommend", lambda r: r.rmse_, lower_is_better=True)


def scores(ranking: Ranking, names: list[str]) -> dict[str, float | None]:
    out = {n: METRICS[("recommend", n)].score(ranking) for n in names}
    return {n: (round(v, 6) if v is not None else None) for n, v in out.items()}


def held_out(pre, frame: pd.DataFrame) -> dict[str, set[int]]:
    """User id -> the item indices the user interacted with in `frame` (0 for an item training never saw)."""
    rc = pre.rc
    out: dict[str, set[int]] = {}
    for u, i in zip(frame[rc.user].tolist(), frame[rc.item].tolist()):
        out.setdefault(u, set()).add(pre.item(i))
    return out


VALIDATION_K = 10
"""The cut-off of the ranking scores reported for the validation split every epoch (val_ndcg@10, ...)."""


@torch.no_grad()
def validation_ranking(model, users: torch.Tensor, items: torch.Tensor, seen: dict[int, torch.Tensor],
                       batch: int = 256) -> dict[str, float]:
    """Ranking scores of held-out (user, item) index pairs, every user's training items excluded: what the test
    ranking reports, on the validation split, so early stopping can watch what the run is scored on."""
    truth: dict[int, set[int]] = {}
    for u, i in zip(users.tolist(), items.tolist()):
        if u:  # an unknown user has no vector to rank with
            truth.setdefault(u, set()).add(i)
    if not truth:
        return {}
    us = sorted(truth)
    top = np.zeros((len(us), VALIDATION_K), dtype=np.int64)
    for s in range(0, len(us), batch):
        part = torch.tensor(us[s: s + batch])
        sc = model.scores(part).float()
        for j, u in enumerate(part.tolist()):
            if u in seen:
                sc[j, seen[u]] = float("-inf")
        best = sc.topk(min(VALIDATION_K, sc.shape[1] - 1), dim=1)
        top[s: s + len(part), : best.indices.shape[1]] = np.where(torch.isfinite(best.values).numpy(),
                                                                   best.indices.numpy(), 0)
    r = Ranking(top, [truth[u] for u in us])
    k = VALIDATION_K
    return {f"ndcg@{k}": round(r.ndcg(k), 6), f"recall@{k}": round(r.recall(k), 6), f"hit_rate@{k}": round(r.hit_rate(k), 6)}


def seen_items(users: torch.Tensor, items: torch.Tensor) -> dict[int, torch.Tensor]:
    """User index -> the item indices of its training interactions."""
    order = torch.argsort(users, stable=True)
    u, i = users[order], items[order]
    keys, counts = torch.unique_consecutive(u, return_counts=True)
    return {int(k): part for k, part in zip(keys.tolist(), torch.split(i, counts.tolist()))}


def excluded(pre, user, also: dict | None = None) -> list[int]:
    """What is never recommended to a user: the training items, and those in `also` (validation items)."""
    return list(pre.seen(user)) + [i for i in (also or {}).get(user, ()) if i]


@torch.no_grad()
def rank_model(model, pre, users: list, exclude: dict | None, k: int = CURVE_K, batch: int = 256) -> np.ndarray:
    """[users, k] item indices, best first, for users known in training; a user never seen gets the popularity list."""
    model.eval()
    out = np.zeros((len(users), k), dtype=np.int64)
    popular = rank_popular(pre, users, exclude, k)
    for s in range(0, len(users), batch):
        part = users[s: s + batch]
        idx = torch.tensor([pre.user(u) for u in part])
        sc = model.scores(idx).float()
        for j, u in enumerate(part):
            sc[j, excluded(pre, u, exclude)] = float("-inf")
        best = sc.topk(min(k, sc.shape[1] - 1), dim=1)
        top = np.where(torch.isfinite(best.values).numpy(), best.indices.numpy(), 0)  # an excluded item is no pick
        out[s: s + len(part), : top.shape[1]] = top
        for j in range(len(part)):
            if idx[j] == 0:  # cold start: the popularity ranking
                out[s + j] = popular[s + j]
    return out


def rank_popular(pre, users: list, exclude: dict | None, k: int = CURVE_K) -> np.ndarray:
    order = pre.popular()
    out = np.zeros((len(users), k), dtype=np.int64)
    for j, u in enumerate(users):
        skip = set(excluded(pre, u, exclude))
        picks = [i for i in order[: k + len(skip)] if i not in skip][:k]
        out[j, : len(picks)] = picks
    return out


@torch.no_grad()
def rating_rmse(model, pre, frame: pd.DataFrame) -> tuple[float, float]:
    """(model RMSE, training-mean RMSE) of ratings on held-out pairs; a pair with an unknown user or item is
    predicted by the training mean (said in the report)."""
    enc, _ = pre.transform(frame)
    model.eval()
    z = model(enc.features)[:, 0].float().numpy()
    known = ((enc.features["user"] > 0) & (enc.features["item"] > 0)).numpy()
    pred = np.where(known, pre.decode_rating(z), pre.r_mean_)
    truth = frame[pre.rc.rating].to_numpy(float)
    return (float(np.sqrt(np.mean((pred - truth) ** 2))), float(np.sqrt(np.mean((pre.r_mean_ - truth) ** 2))))


def evaluate_frame(model, pre, frame: pd.DataFrame, exclude: dict | None, names: list[str]) -> dict:
    """Ranking (and rating) scores of the model and the popularity baseline on the users of `frame`."""
    truth = held_out(pre, frame)
    users = list(truth)
    top = rank_model(model, pre, users, exclude)
    pop = rank_popular(pre, users, exclude)
    rmse = rating_rmse(model, pre, frame) if pre.rc.feedback == "explicit" else (None, None)
    model_rank, pop_rank = Ranking(top, [truth[u] for u in users], rmse[0]), Ranking(pop, [truth[u] for u in users])
    cold = sum(pre.user(u) == 0 for u in users)
    result = {"users": len(users), "rows": len(frame), "cold_start_users": cold,
              "test": scores(model_rank, names),
              "baselines": {"popularity": scores(pop_rank, [n for n in names if n != "rmse"])}}
    if rmse[1] is not None:  # ratings: every pair predicted by the training mean
        result["baselines"]["mean_rating"] = {"rmse": round(rmse[1], 6)}
    result["_curves"] = {"model": [model_rank.hit_rate(k) for k in range(1, CURVE_K + 1)],
                         "popularity": [pop_rank.hit_rate(k) for k in range(1, CURVE_K + 1)]}
    return result


def evaluate_recommend(run: Run, cfg, data: Prepared, model) -> dict:
    """metrics.json of a recommend run: the test users' ranking metrics beside popularity, and hit rate by K."""
    names = list(cfg.evaluate.metrics or names_for("recommend"))
    if data.preprocessor.rc.feedback != "explicit":
        names = [n for n in names if n != "rmse"]
    unknown = [n for n in names if ("recommend", n) not in METRICS]
    if unknown:
        raise ValueError(f"evaluate.metrics: {unknown} are not recommend metrics; choose from "
                         f"{', '.join(names_for('recommend'))}")
    split = "test" if "test" in data.encoded else "val"
    pre = data.preprocessor
    exclude = held_out(pre, data.frames["val"]) if split == "test" and len(data.frames.get("val", [])) else None
    result = {"split": split, **evaluate_frame(model, pre, data.frames[split], exclude, names)}
    head = "ndcg@10" if "ndcg@10" in result["test"] else next(iter(result["test"]))
    base = result["baselines"]["popularity"][head]
    if base:
        result["comparison"] = {"metric": head, "model": result["test"][head], "popularity": base,
                                "relative_gain": round(result["test"][head] / base - 1, 4)}
    curves = result.pop("_curves")
    if cfg.evaluate.report:
        write_recommend_report(run, cfg, data, result, curves)
    write_json(run.path / "metrics.json", result)
    return result


def write_recommend_report(run: Run, cfg, data: Prepared, result: dict, curves: dict) -> None:
    from ..core.html import page
    from ..core.html import table as html_table
    from ..core.plots import pyplot, save_figure

    plt = pyplot()
    ks = np.arange(1, CURVE_K + 1)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(ks, curves["model"], label=f"model ({cfg.model.type})")
    ax.plot(ks, curves["popularity"], "--", color="grey", label="popularity")
    ax.set(xlabel="K (items recommended)", ylabel="hit rate@K (users with a held-out item in the top K)",
           title=f"Hit rate by K, {result['users']} {result['split']} users")
    ax.legend()
    save_figure(fig, run.path / "plots" / "hit_rate_by_k.png")
    history = run.history()
    if history:
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        ax.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], label="train")
        if "val_loss" in history[0]:
            ax.plot([h["epoch"] for h in history], [h["val_loss"] for h in history], label="validation")
        ax.set(xlabel="epoch", ylabel="loss", title="Loss")
        ax.legend()
        save_figure(fig, run.path / "plots" / "learning_curves.png")
    names = list(result["test"])
    rows = [{"": "model", **{n: result["test"][n] for n in names}}]
    rows += [{"": b, **{n: v.get(n) for n in names}} for b, v in result["baselines"].items()]
    profile = data.profile
    body = (f"<p>{profile['users']} users, {profile['items']} items, {profile['feedback']} feedback; training density "
            f"{profile['density']:.4%}. Evaluated on {result['users']} users' {result['rows']} held-out interactions "
            f"({result['cold_start_users']} users never seen in training get the popularity list).</p>"
            + html_table(rows)
            + '<h2>Hit rate by K</h2><img src="plots/hit_rate_by_k.png">'
            + ('<h2>Learning curves</h2><img src="plots/learning_curves.png">' if history else ""))
    from ..core.runs import atomic_write_text

    atomic_write_text(run.path / "report.html", page(cfg.name, f"{cfg.name}: recommendation", body))

