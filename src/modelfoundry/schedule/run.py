"""The schedule stage (`foundry train` on a config with `schedule:`): train a dispatching policy with MaskablePPO on
random instances, keep the one that dispatches a fixed set of validation instances best, then schedule the held-out
instances with it and with every dispatching rule, and measure each makespan's gap to the instance's optimum."""

from __future__ import annotations

import html
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.html import page, table
from ..core.plots import pyplot, save_figure
from ..core.runs import Run, Timer, atomic_write_text, write_json
from ..data.prepare import data_files
from .env import JobShopEnv, Shop, by_rule, dispatch
from .instances import Instance, InstanceError, load_instances, random_instance, select
from .policy import choose_with, load_policy, policy_class, policy_kwargs, save_policy

if TYPE_CHECKING:
    from ..config import Config


def require_sb3() -> None:
    from ..train.loop import tensorboard_without_tensorflow

    tensorboard_without_tensorflow()  # stable-baselines3 imports TensorBoard, which imports TensorFlow when present
    try:
        import sb3_contrib  # noqa: F401
    except ImportError:
        raise ImportError("schedule: needs stable-baselines3 and sb3-contrib: pip install 'modelfoundry[scheduling]'"
                          ) from None


def gap(makespan: float, inst: Instance) -> float | None:
    ref = inst.reference
    return None if ref is None else makespan / ref - 1


def shape(cfg: Config, test: list[Instance]) -> tuple[int, int]:
    """The training instances' (jobs, machines): schedule.train's, else the test instances' one shape."""
    t = cfg.schedule.train
    shapes = sorted({(i.jobs, i.num_machines) for i in test})
    if (t.jobs is None or t.machines is None) and len(shapes) > 1:
        raise InstanceError(f"schedule.train: the test instances have several shapes {shapes} (jobs, machines); give "
                            "schedule.train.jobs and machines")
    jobs, machines = t.jobs or shapes[0][0], t.machines or shapes[0][1]
    big = [i.name for i in test if i.jobs > jobs]
    if big:
        raise InstanceError(f"schedule.test: {', '.join(big)} have more than schedule.train.jobs = {jobs} jobs; the "
                            "policy scores at most that many")
    return jobs, machines


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(float(np.mean(xs)), 6) if xs else None


def train_policy(cfg: Config, run: Run, jobs: int, machines: int, out: Path) -> list[dict]:
    """MaskablePPO on random instances; every eval_every decisions the greedy policy dispatches the validation
    instances, a history line is written and the best policy saved to `out`. Returns the history."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    sc, seed = cfg.schedule, cfg.train.seed
    t = sc.train

    def sample(rng):
        return random_instance(jobs, machines, rng, low=t.low, high=t.high)

    envs = DummyVecEnv([lambda: JobShopEnv(sample, jobs, sc.scheme) for _ in range(sc.envs)])
    envs.seed(seed)
    ppo = {"n_steps": max(jobs * machines * 2, 64), "batch_size": max(jobs * machines, 64), "n_epochs": 4,
           "learning_rate": 1e-3, "gamma": 1.0, "gae_lambda": 0.95, "ent_coef": 0.01, **sc.ppo}
    try:
        model = MaskablePPO(policy_class(), envs, policy_kwargs=policy_kwargs(jobs, sc.hidden), seed=seed,
                            device="cpu", verbose=0, **ppo)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"schedule.ppo: MaskablePPO rejected {sc.ppo}: {exc}") from None
    # without a logger of its own, learn() makes an empty /tmp/SB3-<time> folder on every run (the run's history and
    # report are ours)
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(folder=None, output_formats=[]))
    rng = np.random.default_rng(seed + 1)
    val = [random_instance(jobs, machines, rng, f"val-{k}", t.low, t.high) for k in range(sc.val_instances)]
    mwkr = float(np.mean([dispatch(i, by_rule("mwkr"), sc.scheme).makespan for i in val]))
    history: list[dict] = []
    best = {"makespan": math.inf}
    settings = {"jobs": jobs, "machines": machines, "hidden": sc.hidden, "scheme": sc.scheme, "features": "env.FEATURES"}
    clock = {"t": time.perf_counter(), "start": time.perf_counter()}
    finished: list[int] = []

    def score(step: int) -> None:
        choose = choose_with(model.policy, jobs)
        makespan = float(np.mean([dispatch(i, choose, sc.scheme).makespan for i in val]))
        record = {"epoch": len(history) + 1, "timesteps": step, "val_makespan": round(makespan, 2),
                  "val_vs_mwkr": round(makespan / mwkr - 1, 6),
                  "train_makespan": round(float(np.mean(finished)), 2) if finished else None,
                  "episodes": len(finished), "seconds": round(time.perf_counter() - clock["t"], 2)}
        finished.clear()
        if makespan < best["makespan"]:
            best.update(makespan=makespan, timesteps=step)
            save_policy(model.policy, out, {**settings, "timesteps": step, "val_makespan": makespan})
        record["best_val_makespan"] = round(best["makespan"], 2)
        run.append_history(record)
        history.append(record)
        print(f"step {step:>8}/{sc.timesteps}  val makespan {makespan:8.1f} ({record['val_vs_mwkr']:+.1%} vs mwkr)"
              f"  best {best['makespan']:8.1f}  {time.perf_counter() - clock['start']:6.0f}s", file=sys.stderr,
              flush=True)
        clock["t"] = time.perf_counter()

    class Every(BaseCallback):
        def _on_step(self) -> bool:
            finished.extend(int(i["makespan"]) for i in self.locals["infos"] if "makespan" in i)
            if self.num_timesteps // sc.eval_every > (self.num_timesteps - envs.num_envs) // sc.eval_every:
                score(self.num_timesteps)
            return True

    torch.manual_seed(seed)
    score(0)
    model.learn(sc.timesteps, callback=Every())
    if not history or history[-1]["timesteps"] != model.num_timesteps:
        score(model.num_timesteps)
    return history


def evaluate_schedules(cfg: Config, test: list[Instance], jobs: int, model_dir: Path, run: Run) -> dict:
    sc = cfg.schedule
    policy, _ = load_policy(model_dir)
    rows, shops = [], {}
    rng = np.random.default_rng(cfg.train.seed)
    for inst in test:
        row = {"instance": inst.name, "jobs": inst.jobs, "machines": inst.num_machines, "optimum": inst.optimum,
               "reference": inst.reference}
        shop = dispatch(inst, choose_with(policy, jobs), sc.scheme)
        shops[inst.name] = {"policy": shop}
        row["policy"] = shop.makespan
        if sc.samples:
            sampled = [dispatch(inst, choose_with(policy, jobs, False, rng), sc.scheme) for _ in range(sc.samples)]
            row["policy_sampled"] = min(s.makespan for s in sampled)
        for rule in sc.rules:
            s = dispatch(inst, by_rule(rule), sc.scheme)
            shops[inst.name][rule] = s
            row[rule] = s.makespan
        rows.append(row)
        sdir = run.path / "schedules"
        sdir.mkdir(exist_ok=True)
        lines = ["job,operation,machine,start,end"] + [",".join(str(r[k]) for k in ("job", "operation", "machine",
                                                                                      "start", "end"))
                                                       for r in shop.schedule()]
        atomic_write_text(sdir / f"{inst.name}.csv", "\n".join(lines) + "\n")
    methods = ["policy"] + (["policy_sampled"] if sc.samples else []) + list(sc.rules)
    summary = {}
    for m in methods:
        gaps = [gap(r[m], i) for r, i in zip(rows, test, strict=True)]
        for r, g in zip(rows, gaps, strict=True):
            r[f"{m}_gap"] = None if g is None else round(g, 6)
        summary[m] = {"makespan_mean": _mean([r[m] for r in rows]), "gap_mean": _mean(gaps)}
    rules = {r: summary[r] for r in sc.rules}
    best_rule = min(rules, key=lambda r: (rules[r]["gap_mean"] if rules[r]["gap_mean"] is not None
                                          else rules[r]["makespan_mean"])) if rules else None
    result = {"task": "scheduling", "scheme": sc.scheme, "split": "test", "instances": len(test),
              "test": summary["policy"], "baselines": rules, "best_rule": best_rule, "per_instance": rows}
    if sc.samples:
        result["test_sampled"] = {**summary["policy_sampled"], "samples": sc.samples}
    if best_rule is not None and summary["policy"]["gap_mean"] is not None:
        result["comparison"] = {"gap_vs_best_rule": round(summary["policy"]["gap_mean"] - rules[best_rule]["gap_mean"], 6),
                                "beats_best_rule": summary["policy"]["gap_mean"] < rules[best_rule]["gap_mean"]}
    result["_shops"] = shops
    return result


def gantt(plt, shop: Shop, title: str):
    fig, ax = plt.subplots(figsize=(10, 0.35 * shop.ops + 1.2))
    cmap = plt.get_cmap("tab20")
    for r in shop.schedule():
        ax.barh(r["machine"], r["end"] - r["start"], left=r["start"], color=cmap(r["job"] % 20), edgecolor="white",
                linewidth=0.5)
        if r["end"] - r["start"] > shop.makespan / 40:
            ax.text((r["start"] + r["end"]) / 2, r["machine"], str(r["job"]), ha="center", va="center", fontsize=6)
    ax.set_yticks(range(shop.ops))
    ax.set_yticklabels([f"M{k}" for k in range(shop.ops)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time")
    ax.set_title(f"{title}: makespan {shop.makespan} (numbers: jobs)")
    return fig


def write_report(run: Run, cfg: Config, result: dict, history: list[dict], shops: dict) -> None:
    plt = pyplot()
    figures = []
    first = result["per_instance"][0]["instance"]
    best = result["best_rule"]
    for who in ("policy", best):
        if who is None:
            continue
        fig = gantt(plt, shops[first][who], f"{first}, {who}")
        name = f"gantt_{who}.png"
        save_figure(fig, run.path / "plots" / name)
        figures.append((f"Schedule of {first} by the {who if who == 'policy' else best + ' rule'}", f"plots/{name}"))
    if history:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot([h["timesteps"] for h in history], [h["val_makespan"] for h in history], marker="o", label="policy")
        mwkr = history[0]["val_makespan"] / (1 + history[0]["val_vs_mwkr"])
        ax.axhline(mwkr, color="grey", linestyle="--", label="mwkr rule")
        ax.set_xlabel("decisions trained on")
        ax.set_ylabel("mean makespan, validation instances")
        ax.legend()
        save_figure(fig, run.path / "plots" / "learning_curve.png")
        figures.append(("Learning curve", "plots/learning_curve.png"))
    methods = ["policy"] + (["policy_sampled"] if "test_sampled" in result else []) + list(result["baselines"])
    rows = [{"method": m, **(result["test"] if m == "policy" else result["test_sampled"] if m == "policy_sampled"
                             else result["baselines"][m])} for m in methods]
    per = [{k: v for k, v in r.items() if not k.endswith("_gap")} for r in result["per_instance"]]
    head = (f"<p>{result['instances']} held-out instances, scheme {result['scheme']}. The policy's mean gap to the "
            f"optimum: {_pct(result['test']['gap_mean'])}; the best rule ({html.escape(str(best))}): "
            f"{_pct(result['baselines'][best]['gap_mean']) if best else '-'}.</p>")
    parts = [head, "<h2>Makespan and gap to the optimum, beside the dispatching rules</h2>" + table(rows),
             "<h2>Per instance</h2>" + table(per)]
    parts += [f"<h2>{html.escape(t)}</h2><img src='{src}' alt='{html.escape(t)}'>" for t, src in figures]
    atomic_write_text(run.path / "report.html", page(f"{cfg.name} report", cfg.name, "\n".join(parts),
                                                     subtitle=run.path.name))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def schedule(cfg: Config, run_dir: str | Path | None = None) -> Run:
    """Train and evaluate a dispatching policy as the config's `schedule:` section says; returns the complete Run."""
    require_sb3()
    sc = cfg.schedule
    path = cfg.resolve_path(cfg.data.path)
    instances = load_instances(path)
    test = select(instances, sc.test, f"schedule.test ({path})")
    jobs, machines = shape(cfg, test)
    run = Run(Path(run_dir)) if run_dir is not None else Run.create(Path(cfg.output_dir), cfg.name)
    run.path.mkdir(parents=True, exist_ok=True)
    with run.lock(), run.recording():
        timer = Timer()
        run.start(cfg.to_yaml(), cfg.train.seed, data_files(cfg))
        profile = {"instances_file": str(path), "instances_in_file": len(instances),
                   "test": [{"name": i.name, "jobs": i.jobs, "machines": i.num_machines, "optimum": i.optimum, **i.bounds}
                            for i in test],
                   "train": {"random": True, "jobs": jobs, "machines": machines, "low": sc.train.low,
                             "high": sc.train.high, "decisions": sc.timesteps}}
        write_json(run.path / "data_profile.json", profile)
        t_fit = Timer()
        history = train_policy(cfg, run, jobs, machines, run.model_dir)
        fit_s = t_fit()
        result = evaluate_schedules(cfg, test, jobs, run.model_dir, run)
        shops = result.pop("_shops")
        write_json(run.path / "metrics.json", result)
        write_report(run, cfg, result, history, shops)
        print(f"test: policy gap {_pct(result['test']['gap_mean'])}  "
              + "  ".join(f"{r} {_pct(v['gap_mean'])}" for r, v in result["baselines"].items()), file=sys.stderr)
        params = sum(p.numel() for p in load_policy(run.model_dir)[0].parameters())
        run.finish("complete", timings={"fit_s": fit_s, "total_s": timer()}, epochs_run=len(history),
                   parameters=params, trainable_parameters=params)
    return run


def schedule_instances(run_dir: Path, path: Path) -> dict[str, list[dict]]:
    """`foundry predict` for a schedule run: every instance of a file scheduled by the run's policy."""
    policy, settings = load_policy(Path(run_dir) / "model")
    out = {}
    for name, inst in load_instances(path).items():
        if inst.jobs > settings["jobs"]:
            raise InstanceError(f"{path}: instance {name} has {inst.jobs} jobs; this policy schedules at most "
                                f"{settings['jobs']}")
        out[name] = dispatch(inst, choose_with(policy, settings["jobs"]), settings["scheme"]).schedule()
    return out

