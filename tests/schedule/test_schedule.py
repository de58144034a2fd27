"""The schedule stage: instance files and their errors, the dispatching environment (feasible schedules, the rules
as published), MaskablePPO training into a complete Run, predict on a new instance file, and config errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sb3_contrib")

from modelfoundry.api import train  # noqa: E402
from modelfoundry.config import ConfigError, load_config  # noqa: E402
from modelfoundry.schedule.env import RULES, JobShopEnv, Shop, by_rule, dispatch  # noqa: E402
from modelfoundry.schedule.instances import InstanceError, load_instances, random_instance, select  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[2] / "datasets" / "jobshop" / "benchmark_instances.json"


def feasible(shop: Shop) -> None:
    """Every operation once, each job's in order, no two on a machine at once."""
    rows = shop.schedule()
    assert all(r["start"] >= 0 for r in rows)
    for j in range(shop.n):
        ops = sorted((r for r in rows if r["job"] == j), key=lambda r: r["operation"])
        assert all(a["end"] <= b["start"] for a, b in zip(ops, ops[1:]))
    for m in range(shop.ops):
        ops = sorted((r for r in rows if r["machine"] == m), key=lambda r: r["start"])
        assert all(a["end"] <= b["start"] for a, b in zip(ops, ops[1:]))
    assert shop.makespan == max(r["end"] for r in rows)


def test_instance_files_in_json_and_text_and_their_errors(tmp_path):
    shipped = load_instances(SHIPPED)
    assert len(shipped) == 162 and shipped["ta01"].optimum == 1231 and shipped["ta01"].durations.shape == (15, 15)
    assert [i.name for i in select(shipped, ["ta0?", "ta10"], "x")] == [f"ta{k:02d}" for k in range(1, 11)]
    ft06 = shipped["ft06"]
    text = "# ft06 in the OR-Library format\n6 6\n" + "\n".join(
        " ".join(f"{m} {d}" for m, d in zip(ft06.machines[j], ft06.durations[j])) for j in range(6)) + "\n"
    (tmp_path / "ft06.txt").write_text(text)
    (tmp_path / "one.json").write_text(json.dumps(ft06.to_json()))
    (tmp_path / "list.json").write_text(json.dumps([{**ft06.to_json(), "name": "a"}, {**ft06.to_json(), "name": "b"}]))
    folder = load_instances(tmp_path)
    assert set(folder) == {"ft06", "a", "b"} and np.array_equal(folder["ft06"].durations, ft06.durations)
    bad = ft06.to_json()
    bad["machines_matrix"][2][3] = bad["machines_matrix"][2][4]
    (tmp_path / "bad.json").write_text(json.dumps({"x": bad}))
    with pytest.raises(InstanceError, match="bad.json: instance x, job 2: visits a machine twice"):
        load_instances(tmp_path / "bad.json")
    short = ft06.to_json()
    short["duration_matrix"] = short["duration_matrix"][:5]
    (tmp_path / "short.json").write_text(json.dumps({"y": short}))
    with pytest.raises(InstanceError, match=r"instance y: duration_matrix \[5, 6\] and machines_matrix \[6, 6\]"):
        load_instances(tmp_path / "short.json")
    (tmp_path / "cut.txt").write_text("6 6\n" + "\n".join(text.splitlines()[2:7]) + "\n0 1 1 2\n")
    with pytest.raises(InstanceError, match="cut.txt: job 5 \\(line 7\\) has 4 numbers; 6 operations need 12"):
        load_instances(tmp_path / "cut.txt")
    with pytest.raises(InstanceError, match="no instance matches \\['tb\\*'\\]"):
        select(shipped, ["tb*"], "schedule.test")


@pytest.mark.parametrize("scheme", ["non_delay", "active"])
def test_every_rule_builds_a_feasible_schedule_no_shorter_than_the_optimum(scheme):
    ft06 = load_instances(SHIPPED)["ft06"]
    rng = np.random.default_rng(0)
    for inst in [ft06, random_instance(7, 4, rng), random_instance(3, 5, rng)]:
        for rule in RULES:
            shop = dispatch(inst, by_rule(rule), scheme)
            feasible(shop)
            assert shop.makespan >= (inst.optimum or 0)
    shop = Shop(ft06, scheme)
    shop.step(int(np.flatnonzero(shop.cand)[0]))
    while shop.cand.all():
        shop.step(int(np.flatnonzero(shop.cand)[0]))
    other = int(np.flatnonzero(~shop.cand)[0])
    with pytest.raises(ValueError, match=f"job {other} is not a candidate"):
        shop.step(other)
    with pytest.raises(ValueError, match="job 6 is not a candidate"):
        shop.step(6)


def test_the_rules_give_the_published_gaps_on_taillard_15x15():
    """Non-delay SPT and MWKR on ta01-ta10 as Zhang et al. (L2D, NeurIPS 2020, table 2) report them: 25.9% and
    19.2%; the active scheme gives the rules other (worse) schedules."""
    ta = select(load_instances(SHIPPED), ["ta0?", "ta10"], "x")

    def gap(rule, scheme):
        return np.mean([dispatch(i, by_rule(rule), scheme).makespan / i.optimum - 1 for i in ta])
    assert gap("spt", "non_delay") == pytest.approx(0.259, abs=0.0015)
    assert gap("mwkr", "non_delay") == pytest.approx(0.192, abs=0.0015)
    assert gap("spt", "active") > gap("spt", "non_delay") + 0.1


def test_the_environment_masks_all_but_the_candidates_and_returns_minus_the_makespan():
    env = JobShopEnv(lambda rng: random_instance(4, 3, rng), jobs=5)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5 * 8,)
    total, done = 0.0, False
    while not done:
        mask = env.action_masks()
        assert not mask[4] and mask.any()  # the fifth job does not exist
        obs, reward, done, _, info = env.step(int(np.flatnonzero(mask)[0]))
        total += reward
    assert total == pytest.approx(-info["makespan"] / env.shop.scale)


def _config(tmp_path, **schedule):
    raw = {"name": "js", "output_dir": str(tmp_path / "runs"), "data": {"path": str(SHIPPED)},
           "schedule": {"test": ["ft06"], "timesteps": 3000, "eval_every": 1000, "val_instances": 5, **schedule}}
    return load_config(raw)


@pytest.mark.slow
def test_a_schedule_run_trains_keeps_the_best_policy_and_reports_beside_the_rules(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    run = train(_config(tmp_path, samples=3))
    assert run.status == "complete"
    assert not list((tmp_path / "tmp").glob("SB3-*"))  # stable-baselines3 leaves no log folder in the temp directory
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["task"] == "scheduling" and set(m["baselines"]) == set(RULES) and m["best_rule"] == "mopnr"
    row = m["per_instance"][0]
    assert row["instance"] == "ft06" and row["reference"] == 55 and row["policy"] >= 55
    assert m["test"]["gap_mean"] == pytest.approx(row["policy"] / 55 - 1, abs=1e-6)
    assert m["test_sampled"]["samples"] == 3 and "beats_best_rule" in m["comparison"]
    history = run.history()
    assert [h["timesteps"] for h in history][:4] == [0, 1024, 2048, 3072] or history[1]["timesteps"] >= 1000
    best = min(h["val_makespan"] for h in history)
    settings = json.loads((run.path / "model" / "policy.json").read_text())
    assert settings["val_makespan"] == pytest.approx(best) and settings["jobs"] == 6  # the best one is kept
    sched = (run.path / "schedules" / "ft06.csv").read_text().splitlines()
    assert sched[0] == "job,operation,machine,start,end" and len(sched) == 37
    report = (run.path / "report.html").read_text()
    assert "gap to the optimum" in report and (run.path / "plots" / "gantt_policy.png").exists()
    assert (run.path / "plots" / "learning_curve.png").exists()
    # the run schedules a new instance file, through the CLI
    other = tmp_path / "new.json"
    other.write_text(json.dumps({"mine": random_instance(5, 6, np.random.default_rng(3)).to_json()}))
    out = subprocess.run([sys.executable, "-m", "modelfoundry.cli", "predict", str(run.path), str(other)],
                         capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                                                              "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "instance,job,operation,machine,start,end" and len(lines) == 1 + 30
    from modelfoundry.predictor import Predictor

    with pytest.raises(ValueError, match="a schedule run"):
        Predictor.load(run.path)
    probe = ("import sys; from modelfoundry.schedule.run import schedule_instances; "
             f"schedule_instances({str(run.path)!r}, {str(other)!r}); print('tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "False", done.stderr[-2000:]  # stable-baselines3 without TensorFlow's import


@pytest.mark.slow
def test_ppo_learns_to_dispatch_better_than_its_start(tmp_path):
    cfg = _config(tmp_path, train={"jobs": 6, "machines": 6, "low": 5, "high": 50}, timesteps=12000, eval_every=4000,
                  val_instances=20, envs=2, hidden=32, rules=["mwkr", "spt"], scheme="active")
    run = train(cfg)
    history = run.history()
    assert history[-1]["best_val_makespan"] < 0.93 * history[0]["val_makespan"]
    m = json.loads((run.path / "metrics.json").read_text())
    assert set(m["baselines"]) == {"mwkr", "spt"} and m["scheme"] == "active"
    assert json.loads((run.path / "model" / "policy.json").read_text())["hidden"] == 32


def test_schedule_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="schedule: data.path is the instance file"):
        load_config({"name": "x", "data": {}, "schedule": {"test": ["a"]}})
    with pytest.raises(ConfigError, match="schedule: cannot be combined with federated"):
        load_config({"name": "x", "data": {"path": "a.json"}, "schedule": {"test": ["a"]}, "federated": {}})
    with pytest.raises(ConfigError, match="low 50 is above high 10"):
        load_config({"name": "x", "data": {"path": "a.json"}, "schedule": {"test": ["a"], "train": {"low": 50,
                                                                                                       "high": 10}}})
    with pytest.raises(InstanceError, match="several shapes"):
        train(_config(tmp_path, test=["ft06", "ft10"]))
    with pytest.raises(InstanceError, match="ft10 have more than schedule.train.jobs = 6"):
        train(_config(tmp_path, test=["ft06", "ft10"], train={"jobs": 6, "machines": 6}))
    with pytest.raises(ValueError, match="schedule.ppo: MaskablePPO rejected .*learning_rat"):
        train(_config(tmp_path, ppo={"learning_rat": 0.1}))
