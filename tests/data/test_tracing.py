"""Knowledge tracing: the answer-lines reader, DKT against the skill-mean and PFA baselines, tracing new answers,
and the bad inputs (mismatched lines, an unknown skill)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from modelfoundry.api import train
from modelfoundry.config import Config
from modelfoundry.data.sources import DataError
from modelfoundry.data.tracing import read_answer_lines
from modelfoundry.predictor import Predictor

from ..conftest import cli_env, tiny_config


def learners(students: int = 240, skills: int = 6, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Students who learn: the chance of a right answer grows with their practice of the skill and with their own
    ability, so the order of answers carries what a skill's average rate does not."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(students):
        ability = rng.normal(0, 1.2)
        practice = np.zeros(skills + 1)
        s_seq, a_seq = [], []
        for _ in range(rng.integers(15, 40)):
            s = int(rng.integers(1, skills + 1))
            p = 1 / (1 + np.exp(-(ability + 0.5 * practice[s] - 1.0 - 0.3 * s)))
            a = int(rng.random() < p)
            practice[s] += 1 + a
            s_seq.append(s)
            a_seq.append(a)
        out.append((s_seq, a_seq))
    return out


def write_lines(path, students) -> None:
    path.write_text("".join(f"{len(s)}\n{','.join(map(str, s))},\n{','.join(map(str, a))}\n" for s, a in students))


def _cfg(tmp_path, data, model=None, train_=None, report=False):
    return Config.model_validate(tiny_config(tmp_path, {"task": "knowledge_tracing", **data},
                                             model=model or {"type": "dkt", "hidden": 32, "embedding": 16, "dropout": 0.0},
                                             train={"epochs": 15, "lr": 0.01, "batch_size": 32, **(train_ or {})},
                                             evaluate={"baselines": True, "report": report}))


def test_answer_lines_are_read_and_mismatched_students_are_named(tmp_path):
    path = tmp_path / "a.csv"
    write_lines(path, [([3, 3, 5], [0, 1, 1]), ([5], [1])])
    df = read_answer_lines(path)
    assert list(df.columns) == ["student", "step", "skill", "correct"] and len(df) == 4
    assert df[df["student"] == 1]["correct"].tolist() == [0, 1, 1]
    path.write_text("3\n3,3,5\n0,1\n")
    with pytest.raises(DataError, match=r"student 1 \(lines 1-3\): 3 answers announced, 3 skill ids and 2 answers"):
        read_answer_lines(path)
    path.write_text("2\n3,3\n0,2\n")
    with pytest.raises(DataError, match="line 3: answers must be 0 or 1, found '2'"):
        read_answer_lines(path)


@pytest.mark.slow  # a whole training: CI runs it, the fast tier does not
def test_dkt_learns_what_practice_does_and_beats_the_baselines(tmp_path):
    train_file, test_file = tmp_path / "train.csv", tmp_path / "test.csv"
    write_lines(train_file, learners())
    write_lines(test_file, learners(80, seed=1))
    cfg = _cfg(tmp_path, {"path": str(train_file), "test_path": str(test_file), "format": "answer_lines",
                          "tracing": {"max_length": 25}}, report=True)
    run = train(cfg)
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["test"]["roc_auc"] > m["baselines"]["skill_mean"]["roc_auc"] + 0.05, m
    assert m["test"]["roc_auc"] > 0.7 and m["baselines"]["pfa"]["roc_auc"] > m["baselines"]["skill_mean"]["roc_auc"]
    assert m["students"] == 80 and (run.path / "plots" / "knowledge_state.png").exists()
    profile = json.loads((run.path / "data_profile.json").read_text())
    assert profile["skills"] == 6 and profile["splits"]["train"] > profile["students"]["train"]  # chunks of 25
    pred = Predictor.load(run.path)
    answers = pd.DataFrame({"student": ["ann"] * 6, "step": [5, 4, 3, 2, 1, 0], "skill": [1] * 6,
                            "correct": [1, 1, 1, 0, 0, 0]})  # given newest first: traced in step order
    traced = pred.trace(answers)
    assert np.isnan(traced["p_correct"][5]) and traced["p_correct"][:5].notna().all()
    assert traced["p_correct"][0] > traced["p_correct"][3]  # after three right answers, more likely right
    assert traced["mastery"].notna().all()
    with pytest.raises(DataError, match=r"student 'ann', answer 1: skill 99 was never seen in training"):
        pred.trace(answers.assign(skill=99))


@pytest.mark.slow  # whole trainings (or a CLI process): CI runs it, the fast tier does not
def test_a_long_table_with_an_order_column_and_the_cli(tmp_path):
    rows = [{"kid": f"k{i}", "t": t, "kc": f"fractions-{s}", "right": a}
            for i, (ss, aa) in enumerate(learners(120)) for t, (s, a) in enumerate(zip(ss, aa))]
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # shuffled: the order column restores each history
    path = tmp_path / "answers.csv"
    df.to_csv(path, index=False)
    cfg = _cfg(tmp_path, {"path": str(path), "tracing": {"student": "kid", "skill": "kc", "correct": "right",
                                                         "order": "t", "test": 0.2, "val": 0.1}},
               model={"type": "dkt", "hidden": 16, "embedding": 8, "layers": 2, "dropout": 0.1}, train_={"epochs": 3})
    run = train(cfg)
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["students"] == 24 and m["test"]["roc_auc"] is not None
    out = tmp_path / "traced.csv"
    subprocess.run([sys.executable, "-m", "modelfoundry.cli", "predict", str(run.path), str(path), "-o", str(out)],
                   check=True, env=cli_env(), capture_output=True)
    assert len(pd.read_csv(out)) == len(df)  # one output row per input row
    with pytest.raises(ValueError, match="data.task knowledge_tracing: model.type dkt, not 'mlp'"):
        Config.model_validate({**cfg.model_dump(), "model": {"type": "mlp"}})
    with pytest.raises(ValueError, match="model.type dkt traces students' knowledge"):
        Config.model_validate({**cfg.model_dump(), "data": {"path": str(path), "target": "right"}})


def test_without_an_order_column_the_files_order_is_the_students_order(tmp_path):
    from modelfoundry.data.config import DataConfig
    from modelfoundry.data.tracing import TracingPreprocessor

    df = pd.DataFrame({"student": ["a", "b", "a", "a"], "skill": [3, 1, 1, 3], "correct": [1, 0, 0, 1],
                       "step": [9, 0, 1, 0]})
    for order, expected in ((None, [3, 1, 3]), ("step", [3, 1, 3][::-1])):
        d = DataConfig.model_validate({"task": "knowledge_tracing", "tracing": {"order": order}})
        pre = TracingPreprocessor(d).fit(df)
        seqs = {st: [pre.skills_[i - 1] for i in s] for st, s, _ in pre.sequences(df, "t")}
        assert seqs["a"] == [str(v) for v in expected]


def test_the_data_audit_says_where_a_tracing_profile_is(tmp_path):
    from modelfoundry.data.audit import audit

    path = tmp_path / "a.csv"
    write_lines(path, learners(5))
    cfg = _cfg(tmp_path, {"path": str(path), "format": "answer_lines"})
    with pytest.raises(DataError, match="written by `foundry train` into the run's data_profile.json"):
        audit(cfg)
