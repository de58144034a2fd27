"""The tune stage: an Optuna study over any config field (`tune:` section, `foundry tune`).

Each trial is an ordinary training run (its own Run directory under the study's `trials/`), scored on a
validation metric at its best epoch (or the k-fold mean). Workers on one machine are processes sharing
the study through Optuna's journal file (the default storage; Optuna advises against SQLite for parallel
work); machines share it through an RDB URL such as postgresql://. The study resumes where it stopped:
trials whose process died are marked failed and run again. Results: leaderboard.csv, best.yaml (a
config ready for `foundry train`), summary.json and plots/, and with `refit` the best config trained on
train+val and evaluated on the test split.

One study's life in the order it happens (storage, samplers and pruners, the objective, workers, the
summary, plots and the refit), over ~400 lines on purpose: the pieces share the study directory's layout.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.plots import save_figure
from ..core.progress import bar
from ..core.runs import Run, atomic_write_text, csv_text, write_json
from ..evaluate.metrics import metric_mode
from ..train import train
from ..train.track import PARENT_ENV, _mlflow, study_parent
from .config import SpaceParam

__all__ = ["tune", "open_storage", "mask_url", "study_dir_for", "STORAGE_ENV"]

STORAGE_ENV = "FOUNDRY_TUNE_STORAGE"
"""The study storage (a journal path or an RDB URL) when --storage is not given; how workers receive it."""

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config


class Pruned(Exception):
    """Raised from the epoch callback when the pruner stops a trial; the run ends with status 'pruned'."""

    run_status = "pruned"


class TrialError(Exception):
    """A trial's training failed: recorded as a failed trial, and the study goes on."""


class MetricMissing(ValueError):
    """The tuned metric is not one the run reports: every trial would fail the same way, so the study stops."""


def mask_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def study_dir_for(cfg: Config, study: str) -> Path:
    return Path(cfg.output_dir) / cfg.name / f"study-{study}"


def open_storage(storage: str | None, study_dir: Path):
    """None -> the journal file in the study directory; a path -> that journal file; a URL -> RDB (fail fast)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if storage is None or "://" not in storage:
        path = Path(storage) if storage else study_dir / "journal.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path), JournalFileOpenLock(str(path))))
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if storage.startswith(("postgresql", "mysql")):
        kwargs["connect_args"] = {"connect_timeout": 10}
    if storage in _RDB_OPEN:  # one engine per process: the study and its worker loop share it
        return _RDB_OPEN[storage]
    import sqlalchemy.exc

    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # heartbeats: a trial whose machine died is failed after the grace period, so others need not wait
                _RDB_OPEN[storage] = optuna.storages.RDBStorage(storage, engine_kwargs=kwargs, heartbeat_interval=30,
                                                                grace_period=120)
            return _RDB_OPEN[storage]
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            # two processes creating Optuna's tables at the same moment: PostgreSQL's CREATE TABLE is not
            # idempotent under concurrency (duplicate key in pg_type); the loser retries and finds the tables
            error = exc
            time.sleep(0.2 * (attempt + 1))
        except Exception as exc:  # sqlalchemy/driver errors: say where, never the password
            error = exc
            break
    reason = str(error).splitlines()[0][:300].replace(storage, mask_url(storage))
    raise ValueError(f"--storage {mask_url(storage)}: cannot open the study storage ({type(error).__name__}: {reason})") from None


_RDB_OPEN: dict[str, Any] = {}


def _direction(cfg: Config) -> str:
    if cfg.tune.direction != "auto":
        return cfg.tune.direction
    return "minimize" if metric_mode(cfg.tune.metric.removeprefix("cv_")) == "min" else "maximize"


def _sampler(cfg: Config, worker: int):
    import optuna

    t = cfg.tune
    seed = t.seed + worker  # workers explore different points
    opts = dict(t.sampler_options)
    if t.sampler == "grid":  # one seed for all: Optuna gives trial n the n-th point of the grid it shuffles
        space = {k: [json.dumps(v) for v in p.grid()] for k, p in t.space.items()}
        return optuna.samplers.GridSampler(space, seed=t.seed)
    classes = {"random": "RandomSampler", "tpe": "TPESampler", "cmaes": "CmaEsSampler", "gp": "GPSampler",
               "qmc": "QMCSampler", "bruteforce": "BruteForceSampler"}
    if t.sampler == "tpe":
        opts.setdefault("constant_liar", True)  # parallel workers do not all probe the same spot
    try:
        return getattr(optuna.samplers, classes[t.sampler])(seed=seed, **opts)
    except (TypeError, ImportError, ModuleNotFoundError) as exc:
        raise ValueError(f"tune.sampler '{t.sampler}' with options {opts}: {exc}") from None


def _pruner(cfg: Config):
    import optuna

    if cfg.tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if cfg.tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cfg.train.epochs)
    return optuna.pruners.NopPruner()


def _suggest(trial, name: str, p: SpaceParam, grid: bool) -> Any:
    if grid or p.choice is not None:  # choices may be lists: Optuna stores them as JSON strings
        values = p.grid() if grid else p.choice
        return json.loads(trial.suggest_categorical(name, [json.dumps(v) for v in values]))
    if p.kind == "int":
        return trial.suggest_int(name, p.int_[0], p.int_[1], step=int(p.step or 1))
    if p.kind == "log_uniform":
        return trial.suggest_float(name, p.log_uniform[0], p.log_uniform[1], log=True)
    return trial.suggest_float(name, p.uniform[0], p.uniform[1], step=p.step)


def trial_config(cfg: Config, params: dict[str, Any]) -> Config:
    """The base config with the trial's values at their dotted paths, validated like any config."""
    # trials are not registered; a refit model may be
    return cfg.override({"tune": None, "track.registry_name": None, **params}, source="trial config")


def metric_value(run: Run, metric: str) -> float:
    metrics = json.loads((run.path / "metrics.json").read_text())
    if metric.startswith("cv_"):
        summary = metrics.get("cv") or {}
        name = metric.removeprefix("cv_")
        if name not in summary:
            raise MetricMissing(f"tune.metric '{metric}': the k-fold summary has no '{name}'; "
                                f"available: {', '.join('cv_' + k for k in summary)}")
        return float(summary[name]["mean"])
    history = run.history()
    best = run.manifest().get("best_epoch") or len(history)
    record = history[best - 1] if history else {}
    if metric not in record or record[metric] is None:
        keys = [k for k in record if k not in ("epoch", "lr")]
        raise MetricMissing(f"tune.metric '{metric}' is not reported by this run; it reports: {', '.join(keys)}"
                            + ("" if any(k.startswith("val_") for k in keys) else
                               " (no val_ metrics: give data.split.val > 0)"))
    return float(record[metric])


def _objective(cfg: Config, study_dir: Path):
    space, grid, metric = cfg.tune.space, cfg.tune.sampler == "grid", cfg.tune.metric

    def objective(trial) -> float:
        import optuna

        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        params = {k: _suggest(trial, k, p, grid) for k, p in space.items()}
        try:
            tcfg = trial_config(cfg, params)
        except ValueError as exc:
            raise TrialError(f"trial {trial.number}: these values make an invalid config: {exc}") from None
        tcfg = tcfg.model_copy(update={"evaluate": tcfg.evaluate.model_copy(update={"report": False, "baselines": False})})
        run_dir = study_dir / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run", str(run_dir))

        def on_epoch(record: dict) -> None:
            value = record.get(metric)
            if value is None or cfg.tune.pruner == "none":
                return
            trial.report(float(value), record["epoch"])
            if trial.should_prune():
                raise Pruned(f"pruned at epoch {record['epoch']} ({metric}={value:.4f})")

        print(f"trial {trial.number}: " + ", ".join(f"{k}={v}" for k, v in params.items()), file=sys.stderr, flush=True)
        try:
            run = train(tcfg, run_dir=run_dir, on_epoch=on_epoch, cache_dir=study_dir / "cache")  # one for all trials
        except Pruned as exc:
            raise optuna.TrialPruned(str(exc)) from None
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except (MetricMissing, MemoryError):
            raise
        except Exception as exc:
            raise TrialError(f"trial {trial.number} failed: {type(exc).__name__}: {exc}") from exc
        value = metric_value(run, metric)
        trial.set_user_attr("best_epoch", run.manifest().get("best_epoch"))
        return value

    return objective


def _counted(study) -> int:
    """Trials that use up the budget: finished ones and running ones, not those interrupted or whose process died."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state != TrialState.WAITING and not t.user_attrs.get("interrupted"))


def _fail_dead_trials(study) -> int:
    """RUNNING trials of this host whose process is gone (kill -9, a crash): mark them failed and interrupted,
    so the resumed study runs their share again."""
    from optuna.trial import TrialState

    host, n = socket.gethostname(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or pid is None or _alive(pid):
            continue
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        n += 1
    return n


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def space_signature(cfg: Config) -> str:
    return json.dumps({"space": {k: p.model_dump(mode="json", by_alias=True, exclude_none=True)
                                 for k, p in sorted(cfg.tune.space.items())},
                       "sampler": cfg.tune.sampler, "metric": cfg.tune.metric}, sort_keys=True)


def open_study(cfg: Config, study: str, storage: str | None, worker: int = 0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sdir = study_dir_for(cfg, study)
    st = open_storage(storage, sdir)
    s = optuna.create_study(study_name=study, storage=st, sampler=_sampler(cfg, worker), pruner=_pruner(cfg),
                            direction=_direction(cfg), load_if_exists=True)
    sig = space_signature(cfg)
    have = s.user_attrs.get("signature")
    if have is None:
        s.set_user_attr("signature", sig)
    elif have != sig:
        raise ValueError(f"study '{study}' in {mask_url(storage) if storage else sdir / 'journal.log'} was created "
                         f"with a different search: {have}; this config has {sig}. Use --study NEW_NAME for a new study")
    return s


def work(cfg: Config, study: str, storage: str | None, trials: int, worker: int = 0) -> None:
    """One worker: run trials of the shared study until it holds `trials` of them (or the timeout)."""
    import optuna

    s = open_study(cfg, study, storage, worker)
    sdir = study_dir_for(cfg, study)
    objective = _objective(cfg, sdir)
    start = time.monotonic()
    grid_size = math.prod(len(p.grid()) for p in cfg.tune.space.values()) if cfg.tune.sampler == "grid" else None
    budget = min(trials, grid_size) if grid_size else trials

    pb = bar(budget, f"study {study}" + (f" (worker {worker})" if worker else ""), unit="trial")
    pb.update(min(budget, _counted(s)))  # a resumed study starts where it stopped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        while _counted(s) < budget:
            if cfg.tune.timeout and time.monotonic() - start > cfg.tune.timeout:
                break
            s.optimize(objective, n_trials=1, catch=(TrialError,))
            pb.update(min(budget, _counted(s)) - pb.n)  # every worker's trials count
    pb.close()


def tune(cfg: Config, *, trials: int | None = None, workers: int = 1, storage: str | None = None,
         study: str | None = None, refit: bool = False) -> Path:
    """Run (or resume) the study the config's `tune` section describes; returns the study directory."""
    if cfg.tune is None:
        raise ValueError("tune: this config has no `tune` section (see docs/config.md#tune)")
    study = study or cfg.name
    trials = trials or cfg.tune.trials
    sdir = study_dir_for(cfg, study)
    sdir.mkdir(parents=True, exist_ok=True)
    s = open_study(cfg, study, storage)

    parent = study_parent(cfg, study)
    if parent:  # trials (in this process and in the workers) nest under the study's MLflow run
        os.environ[PARENT_ENV] = parent
    try:
        return _run_study(cfg, s, sdir, study, storage, trials, workers, refit, parent)
    finally:
        os.environ.pop(PARENT_ENV, None)


def _run_study(cfg: Config, s, sdir: Path, study: str, storage: str | None, trials: int, workers: int, refit: bool,
               parent: str | None) -> Path:
    revived = _fail_dead_trials(s)
    if revived:
        print(f"{revived} trial(s) whose process died are marked failed; their share runs again", file=sys.stderr)
    cfg_file = sdir / "config.yaml"
    atomic_write_text(cfg_file, (cfg).to_yaml())
    if workers <= 1:
        work(cfg, study, storage, trials)
    else:  # this process is worker 0; W-1 more processes join it on the same study
        threads = max(1, (os.cpu_count() or 1) // workers)
        # the storage URL (a database password) goes by the environment, never argv, where `ps` shows it to anyone
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               STORAGE_ENV: storage or str(sdir / "journal.log")}
        cmd = [sys.executable, "-m", "modelfoundry.cli", "tune", str(cfg_file), "--worker", "--study", study,
               "--trials", str(trials)]
        # started before this process imports torch and the data stack, so the workers' imports run beside ours
        procs = [subprocess.Popen(cmd + ["--worker-index", str(i)], env=env) for i in range(1, workers)]
        import torch
        from threadpoolctl import threadpool_limits

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:  # the workers got OMP_NUM_THREADS; here the BLAS and OpenMP pools already exist, so cap them
            with threadpool_limits(limits=threads):
                work(cfg, study, storage, trials)
            if any(p.poll() is None for p in procs):
                _plot_modules()  # this core is idle until the workers' last trials end: load the plotting code now
            codes = [p.wait() for p in procs]
        except BaseException:
            for p in procs:
                p.terminate()
            raise
        finally:
            torch.set_num_threads(before)
        if any(codes):
            raise RuntimeError(f"tune: worker exit codes {codes}; the study is kept, run the same command to resume")
    summary = summarize(cfg, s, sdir)
    if parent:
        _track_study(cfg, parent, summary, sdir)
    if refit:
        refit_best(cfg, s, sdir, parent)
    return sdir


def _track_study(cfg: Config, parent: str, summary: dict, sdir: Path) -> None:
    """The study's parent MLflow run gets the best value and the leaderboard; the best trial's run a tag."""
    mlflow = _mlflow(cfg)
    client = mlflow.MlflowClient()
    if "best_value" in summary:
        client.log_metric(parent, f"best_{cfg.tune.metric}", float(summary["best_value"]))
        best_dir = summary.get("best_run")
        for r in mlflow.search_runs(filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", output_format="list"):
            client.set_tag(r.info.run_id, "foundry.best", str(r.data.tags.get("foundry.run_dir") == best_dir).lower())
    client.log_artifact(parent, str(sdir / "leaderboard.csv"))


def summarize(cfg: Config, study, sdir: Path) -> dict:
    """leaderboard.csv, best.yaml, summary.json and plots/."""
    import pandas as pd
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        rows.append({"trial": t.number, "state": t.state.name.lower(), cfg.tune.metric: t.value,
                     "duration_s": round(dur, 2) if dur is not None else None, "best_epoch": t.user_attrs.get("best_epoch"),
                     **{k: _shown(v) for k, v in t.params.items()}, "run": t.user_attrs.get("run"),
                     "pid": t.user_attrs.get("pid")})
    board = pd.DataFrame(rows)
    if len(board):
        done = board[board["state"] == "complete"].sort_values(cfg.tune.metric, ascending=_direction(cfg) == "minimize")
        board = pd.concat([done, board[board["state"] != "complete"]])
    atomic_write_text(sdir / "leaderboard.csv", csv_text(board))  # summary.json holds the raw values
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    summary = {"study": study.study_name, "direction": _direction(cfg), "metric": cfg.tune.metric,
               "trials": len(rows), "states": board["state"].value_counts().to_dict() if len(board) else {}}
    if complete:
        best = study.best_trial
        params = {k: _decoded(cfg, k, v) for k, v in best.params.items()}
        atomic_write_text(sdir / "best.yaml", (trial_config(cfg, params)).to_yaml())
        summary.update(best_trial=best.number, best_value=best.value, best_params=params, best_run=best.user_attrs.get("run"),
                       best_epoch=best.user_attrs.get("best_epoch"))
        print(f"best trial {best.number}: {cfg.tune.metric}={best.value:.4f}  " +
              ", ".join(f"{k}={v}" for k, v in params.items()), file=sys.stderr)
        summary["plots"] = _plots(study, sdir)
    write_json(sdir / "summary.json", summary)
    return summary


def _shown(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.dumps(json.loads(v))
        except ValueError:
            return v
    return v


def _decoded(cfg: Config, name: str, v: Any) -> Any:
    p = cfg.tune.space[name]
    return json.loads(v) if isinstance(v, str) and (p.choice is not None or cfg.tune.sampler == "grid") else v


def _plot_modules():
    """matplotlib (headless), Optuna's matplotlib plots and the fANOVA importance evaluator (over a second
    to import on 2 cores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.importance  # noqa: F401  (plot_param_importances imports its evaluator lazily)
    from optuna.visualization import matplotlib as vis

    return plt, vis


def _plots(study, sdir: Path) -> list[str]:
    import optuna

    _, vis = _plot_modules()
    made = []
    (sdir / "plots").mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in (("optimization_history", vis.plot_optimization_history),
                         ("param_importances", vis.plot_param_importances),
                         ("parallel_coordinate", vis.plot_parallel_coordinate), ("slice", vis.plot_slice)):
            try:
                ax = fn(study)
            except (ValueError, RuntimeError, ZeroDivisionError, optuna.exceptions.OptunaError):
                continue  # e.g. importances need two finished trials and a varying parameter
            save_figure((ax.flat[0] if hasattr(ax, "flat") else ax).figure, sdir / "plots" / f"{name}.png")
            made.append(f"plots/{name}.png")
    return made


def refit_best(cfg: Config, study, sdir: Path, parent: str | None = None) -> Run:
    """The best trial's config trained on train+val for its best epoch count, evaluated on the test split."""
    best = study.best_trial
    params = {k: _decoded(cfg, k, v) for k, v in best.params.items()}
    bcfg = trial_config(cfg, params)
    # the chosen model is the one registered, in the study's experiment
    bcfg = bcfg.model_copy(update={"track": cfg.track.model_copy(update={"experiment": cfg.track.experiment or cfg.name})})
    epochs = best.user_attrs.get("best_epoch") or bcfg.train.epochs
    bcfg = bcfg.model_copy(update={
        "name": f"{cfg.name}-refit",
        "data": bcfg.data.model_copy(update={"split": bcfg.data.split.model_copy(update={"val": 0.0})}),
        "train": bcfg.train.model_copy(update={"epochs": int(epochs), "early_stopping": None})})
    run = train(bcfg, cache_dir=sdir / "cache")
    summary = json.loads((sdir / "summary.json").read_text())
    summary["refit"] = {"run": str(run.path), "epochs": int(epochs),
                        "test": json.loads((run.path / "metrics.json").read_text()).get("test")}
    write_json(sdir / "summary.json", summary)
    print(f"refit on train+val for {epochs} epoch(s): {run.path}", file=sys.stderr)
    return run
