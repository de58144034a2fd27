"""Recommendation: interactions split per user, matrix factorisation and two towers against popularity, the
Predictor's recommend, cold start, explicit ratings, and serving /v1/recommend."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from modelfoundry.api import train
from modelfoundry.config import Config
from modelfoundry.data.config import DataConfig
from modelfoundry.data.recommend import interactions, split_interactions
from modelfoundry.data.sources import DataError
from modelfoundry.predictor import Predictor

from ..conftest import cli_env, tiny_config


def taste_frame(users: int = 90, items: int = 60, per_user: int = 14, seed: int = 0) -> pd.DataFrame:
    """Three tastes: a user picks mostly items of its own third of the catalogue, so the popularity ranking (about
    flat) knows nothing that a personal model cannot beat. Ratings: 5 in taste, 2 outside."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        own = [i for i in range(items) if i % 3 == u % 3]
        picks = list(rng.choice(own, per_user - 2, replace=False)) + list(rng.choice(items, 2, replace=False))
        for t, i in enumerate(rng.permutation(picks)):
            rows.append({"uid": f"u{u}", "movie": int(i), "stars": 5.0 if i % 3 == u % 3 else 2.0,
                         "ts": 1000 * u + t})
    return pd.DataFrame(rows).drop_duplicates(["uid", "movie"])


def _cfg(tmp_path, df, recommend=None, model=None, train_=None, name="rec", report=False):
    path = tmp_path / f"{name}.csv"
    df.to_csv(path, index=False)
    data = {"path": str(path), "task": "recommend",
            "recommend": {"user": "uid", "item": "movie", "rating": "stars", "time_column": "ts", **(recommend or {})}}
    return Config.model_validate(tiny_config(tmp_path, data, model=model or {"type": "mf", "dim": 16},
                                             train={"epochs": 40, "lr": 0.02, "batch_size": 64, **(train_ or {})},
                                             evaluate={"report": report}, name=name))


def test_each_users_latest_interactions_are_held_out_and_bad_tables_are_named(tmp_path):
    df = taste_frame(users=6)
    d = DataConfig.model_validate({"task": "recommend", "recommend": {"user": "uid", "item": "movie",
                                                                       "time_column": "ts", "test": 0.2, "val": 0.1}})
    clean, report = interactions(pd.concat([df, df.iloc[:2]]), d, "t.csv")
    assert report["repeated_pairs_kept_latest"] == 2
    parts = split_interactions(clean, d, seed=0)
    for u, g in clean.groupby("uid"):
        test_times = parts["test"][parts["test"]["uid"] == u]["ts"]
        train_times = parts["train"][parts["train"]["uid"] == u]["ts"]
        assert len(test_times) == round(len(g) * 0.2) and test_times.min() > train_times.max()
    tiny = pd.DataFrame({"uid": ["a", "a", "b"], "movie": [1, 2, 1], "ts": [1, 2, 3]})  # fewer than 3: training only
    assert len(split_interactions(tiny, d, 0)["test"]) == 0
    with pytest.raises(DataError, match=r"column\(s\) \['movie'\] not found"):
        interactions(df.drop(columns="movie"), d, "t.csv")
    d2 = DataConfig.model_validate({"task": "recommend", "recommend": {"user": "uid", "item": "movie",
                                                                        "rating": "stars", "feedback": "explicit"}})
    with pytest.raises(DataError, match=r"row 3, column 'stars': 'five' is not a rating"):
        interactions(df.head(5).assign(stars=["5", "4", "five", "3", "1"]), d2, "t.csv")
    with pytest.raises(ValueError, match="feedback explicit needs a `rating`"):
        DataConfig.model_validate({"task": "recommend", "recommend": {"feedback": "explicit"}})
    with pytest.raises(ValueError, match="needs a data.recommend section"):
        DataConfig.model_validate({"task": "recommend"})


def test_matrix_factorisation_beats_popularity_and_recommends_what_a_user_has_not_seen(tmp_path):
    df = taste_frame()
    run = train(_cfg(tmp_path, df, report=True))
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["test"]["ndcg@10"] > 1.3 * m["baselines"]["popularity"]["ndcg@10"], m
    assert m["comparison"]["relative_gain"] > 0.3 and "rmse" not in m["test"]
    assert (run.path / "plots" / "hit_rate_by_k.png").exists() and "recommendation" in (run.path / "report.html").read_text()
    card = (run.path / "MODEL_CARD.md").read_text()
    assert "Ranks items for a user from `uid` × `movie`" in card and "90 users, 60 items, implicit feedback" in card
    pred = Predictor.load(run.path)
    top = pred.recommend("u4", k=5)
    assert len(top) == 5 and not top["cold_start"].any()
    assert all(isinstance(i, int) for i in top["item"])  # ids come back as the data wrote them
    train_seen = set(pred.preprocessor.items_[i - 1] for i in pred.preprocessor.seen("u4"))
    assert not {str(i) for i in top["item"]} & train_seen
    assert sum(i % 3 == 4 % 3 for i in top["item"]) >= 4  # the user's taste
    everything = pred.recommend("u4", k=59, exclude_seen=False)  # the whole catalogue, training picks included
    assert {str(i) for i in everything["item"]} >= train_seen
    cold = pred.recommend("someone-new", k=3)
    assert cold["cold_start"].all() and len(cold) == 3
    assert list(cold["item"]) == [pred.preprocessor.item_id(i) for i in pred.preprocessor.popular()[:3]]
    pairs = pred.predict(pd.DataFrame({"uid": ["u4", "u4", "nobody"], "movie": [1, 2, 1]}))
    assert pairs["prediction"][0] > pairs["prediction"][1]  # item 1 is in u4's taste (1 % 3 == 1), 2 is not
    assert "user 'nobody' was not in training" in pairs["error"][2]


@pytest.mark.slow  # whole trainings (or a CLI process): CI runs it, the fast tier does not
def test_two_towers_and_sampled_negatives_learn_too(tmp_path):
    df = taste_frame()
    for name, model in {"tt": {"type": "two_tower", "dim": 16, "hidden": [32], "dropout": 0.0, "temperature": 0.2},
                        "sampled": {"type": "mf", "dim": 16, "negatives": 8}}.items():
        run = train(_cfg(tmp_path, df, model=model, name=name, train_={"lr": 0.01}))
        m = json.loads((run.path / "metrics.json").read_text())
        assert m["test"]["ndcg@10"] > 1.3 * m["baselines"]["popularity"]["ndcg@10"], (name, m)


@pytest.mark.slow  # whole trainings (or a CLI process): CI runs it, the fast tier does not
def test_explicit_ratings_report_rmse_below_the_mean_and_positive_filters_implicit(tmp_path):
    df = taste_frame()
    run = train(_cfg(tmp_path, df, recommend={"feedback": "explicit"}, name="explicit"))
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["test"]["rmse"] < 0.85 * m["baselines"]["mean_rating"]["rmse"], m
    rating = Predictor.load(run.path).predict(pd.DataFrame({"uid": ["u0", "u0"], "movie": [0, 1]}))["prediction"]
    assert rating[0] > rating[1] and 1.9 <= rating[1] and rating[0] <= 5.0  # in taste ~5, outside ~2, within range
    run = train(_cfg(tmp_path, df, recommend={"positive": 4.0}, name="liked", train_={"epochs": 2}))
    profile = json.loads((run.path / "data_profile.json").read_text())
    assert profile["cleaning"]["below_positive_left_out"]["train"] > 0
    assert profile["items"] <= df[df["stars"] >= 4]["movie"].nunique()


@pytest.mark.slow  # whole trainings (or a CLI process): CI runs it, the fast tier does not
def test_recommend_refuses_k_fold_and_the_cli_recommends_for_a_users_file(tmp_path):
    df = taste_frame(users=30).assign(movie=lambda d: "课程" + d["movie"].astype(str))  # ids as a Chinese export writes them
    cfg = _cfg(tmp_path, df, train_={"epochs": 2}, name="cli")
    with pytest.raises(ValueError, match="holds out each user's own latest interactions; k-fold over rows would split"):
        Config.model_validate({**cfg.model_dump(), "evaluate": {"cv": {"folds": 2}}})
    with pytest.raises(ValueError, match="model.type mf or two_tower, not 'mlp'"):
        Config.model_validate({**cfg.model_dump(), "model": {"type": "mlp"}})
    run = train(cfg)
    users = tmp_path / "users.csv"
    pd.DataFrame({"uid": ["u1", "stranger"]}).to_csv(users, index=False)
    out = tmp_path / "recs.csv"
    subprocess.run([sys.executable, "-m", "modelfoundry.cli", "predict", str(run.path), str(users), "-k", "4",
                    "-o", str(out)], check=True, env=cli_env(), capture_output=True)
    recs = pd.read_csv(out)
    assert list(recs["uid"]) == ["u1", "stranger"] and list(recs["cold_start"]) == [False, True]
    assert len(json.loads(recs["items"][0])) == 4 and "课程" in out.read_text(encoding="utf-8")  # not \u8bfe


def test_serving_a_recommender_and_what_does_not_apply(tmp_path):
    from fastapi.testclient import TestClient

    from modelfoundry.serve.app import ServeSettings, create_app, load_models

    run = train(_cfg(tmp_path, taste_frame(users=30), train_={"epochs": 2}, name="served"))
    with TestClient(create_app(load_models([run.path]), ServeSettings())) as c:
        r = c.post("/v1/recommend", json={"user": "u2", "k": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) == 3 and body["cold_start"] is False and isinstance(body["items"][0]["item"], int)
        every = c.post("/v1/recommend", json={"user": "u2", "k": 59, "exclude_seen": False}).json()["items"]
        unseen = c.post("/v1/recommend", json={"user": "u2", "k": 59}).json()["items"]
        assert len(every) == 59 > len(unseen)  # the user's training picks come back only when asked
        cold = c.post("/v1/recommend", json={"user": "new", "k": 2}).json()
        assert cold["cold_start"] is True and "popular" in cold["note"]
        assert c.post("/v1/recommend", json={"user": "u2", "k": 0}).status_code == 422
    from modelfoundry.api import compress
    from modelfoundry.compress.config import CompressConfig

    with pytest.raises(ValueError, match="a recommend run; compress works on classification and regression"):
        compress(run.path, CompressConfig(quantize="int8"))


@pytest.mark.slow  # whole trainings (or a CLI process): CI runs it, the fast tier does not
def test_foundry_evaluate_ranks_a_later_interactions_file_beside_popularity(tmp_path):
    df = taste_frame(users=30)
    run = train(_cfg(tmp_path, df, train_={"epochs": 20}, name="later"))
    later = taste_frame(users=30, seed=1)  # the same tastes, other picks
    path = tmp_path / "later.csv"
    later.to_csv(path, index=False)
    subprocess.run([sys.executable, "-m", "modelfoundry.cli", "evaluate", str(run.path), str(path)], check=True,
                   env=cli_env(), capture_output=True)
    result = json.loads((run.path / "evaluations" / "later.json").read_text())
    assert result["users"] == 30 and result["test"]["hit_rate@10"] > result["baselines"]["popularity"]["hit_rate@10"]


@pytest.mark.slow  # two trainings
def test_tune_searches_a_recommender_on_its_validation_loss(tmp_path):
    from modelfoundry.api import tune

    cfg = _cfg(tmp_path, taste_frame(users=30), train_={"epochs": 2}, name="tuned")
    study = tune(Config.model_validate({**cfg.model_dump(), "tune": {"trials": 2, "metric": "val_loss",
                                                                     "space": {"model.dim": {"choice": [8, 16]}}}}))
    board = pd.read_csv(study / "leaderboard.csv")
    assert len(board) == 2 and set(board["model.dim"]) == {8, 16}


def test_without_a_time_column_each_user_holds_out_a_seeded_random_share():
    df = taste_frame(users=10)
    d = DataConfig.model_validate({"task": "recommend", "recommend": {"user": "uid", "item": "movie", "test": 0.25,
                                                                       "val": 0.0}})
    clean, _ = interactions(df, d, "t.csv")
    a, b, c = (split_interactions(clean, d, seed) for seed in (0, 0, 1))
    assert a["test"].equals(b["test"]) and not a["test"].equals(c["test"])
    latest = clean.groupby("uid")["ts"].max()
    held = a["test"].groupby("uid")["ts"].max()
    assert (held < latest.loc[held.index]).any()  # not simply each user's latest
    assert len(a["val"]) == 0 and a["test"].groupby("uid").size().min() >= 1


def test_a_short_list_and_an_item_training_never_saw_are_never_hits():
    from modelfoundry.evaluate.recommend import Ranking

    top = np.array([[3, 0, 0], [5, 7, 0]])  # 0: padding (the catalogue ran out) / an unknown item
    truth = [{0, 3}, {0}]  # user 1's held-out items: item 3 and one training never saw
    r = Ranking(top, truth)
    assert r.hit_rate(3) == 0.5 and r.recall(3) == pytest.approx(0.25)


def test_validation_ranks_the_catalogue_every_epoch_and_early_stopping_can_watch_it(tmp_path):
    """val_ndcg@10 (and recall, hit rate) per epoch, computed as the test ranking is (training items excluded), so
    early stopping watches what the run is scored on."""
    import torch

    from modelfoundry.evaluate.recommend import Ranking, validation_ranking

    run = train(_cfg(tmp_path, taste_frame(), train_={"epochs": 12, "early_stopping": {"metric": "ndcg@10",
                                                                                       "patience": 3}}))
    history = run.history()
    assert all({"val_ndcg@10", "val_recall@10", "val_hit_rate@10"} <= set(h) for h in history)
    assert history[-1]["val_ndcg@10"] > history[0]["val_ndcg@10"]  # the tastes are learnt
    best = max(range(len(history)), key=lambda e: history[e]["val_ndcg@10"])
    assert len(history) == 12 or len(history) - 1 - best == 3  # stopped three epochs after the best ndcg
    # by hand: two users, three items; user 1 saw item 1 in training, so item 2 is its top pick
    class Fixed(torch.nn.Module):
        def scores(self, users):
            return torch.tensor([[float("-inf"), 3.0, 2.0, 1.0]] * len(users))
    got = validation_ranking(Fixed(), torch.tensor([1, 2, 2]), torch.tensor([2, 1, 3]), {1: torch.tensor([1])})
    expected = Ranking(np.array([[2, 3, 0] + [0] * 7, [1, 2, 3] + [0] * 7]), [{2}, {1, 3}])
    assert got["ndcg@10"] == pytest.approx(expected.ndcg(10)) and got["hit_rate@10"] == 1.0
