"""The Python API in one place, above every stage (`import modelfoundry` re-exports it):

    cfg = modelfoundry.load_config("config.yaml", ["train.lr=3e-4"])
    run = modelfoundry.train(cfg)                     # a complete Run directory
    run = modelfoundry.resume("runs/x/20261206-...")  # an interrupted run, from its last checkpoint
    small = modelfoundry.compress(run.path, modelfoundry.CompressConfig(quantize="int8"))
    pred = modelfoundry.Predictor.load(run.path)
    pred.predict(frame)

These read a run's own config for you; the stage functions below them take it as an argument."""

from __future__ import annotations

from pathlib import Path

from .align import align
from .compress import compress as _compress
from .compress.config import CompressConfig
from .config import Config, ConfigError, load_config, run_config
from .core.callable import make_callable
from .core.runs import Run
from .federated import federated
from .predictor import Predictor
from .schedule import schedule
from .train import train as _train
from .tune import tune

__all__ = ["Config", "ConfigError", "CompressConfig", "Predictor", "Run", "align", "compress", "federated", "load_config", "resume",
           "run_config", "schedule", "train", "tune"]


def train(cfg: Config, **kwargs) -> Run:
    """Train and evaluate what a config describes: the supervised / pretraining loop; for a config with an `align:`
    section, alignment on TRL; with a `federated:` section, federated learning on Flower; with `schedule:`, a
    dispatching policy trained by reinforcement learning. Returns the complete Run."""
    if cfg.schedule is not None:
        unknown = set(kwargs) - {"run_dir"}
        if unknown:
            raise ValueError(f"train(): {', '.join(sorted(unknown))} do not apply to a schedule: config")
        return schedule(cfg, **kwargs)
    if cfg.align is not None:
        unknown = set(kwargs) - {"run_dir"}
        if unknown:
            raise ValueError(f"train(): {', '.join(sorted(unknown))} do not apply to an align: config")
        return align(cfg, **kwargs)
    if cfg.federated is not None:
        unknown = set(kwargs) - {"run_dir"}
        if unknown:
            raise ValueError(f"train(): {', '.join(sorted(unknown))} do not apply to a federated: config")
        return federated(cfg, **kwargs)
    return _train(cfg, **kwargs)


make_callable("modelfoundry.train", train)  # the package is callable too: calling it now dispatches as above


def resume(run_dir: str | Path, **kwargs) -> Run:
    """Continue an interrupted or killed run from its last checkpoint, with its own config and data."""
    run = Run.open(run_dir)
    cfg = run_config(run)
    if cfg.federated is not None:
        raise ValueError(f"{run.path}: a federated run does not resume; start it again with `foundry train`")
    if cfg.schedule is not None:
        raise ValueError(f"{run.path}: a schedule run does not resume (PPO's rollout and optimizer state are not "
                         "saved; its best policy so far is in model/); start it again with `foundry train`")
    if cfg.align is not None:
        raise ValueError(f"{run.path}: an alignment run does not resume (TRL's checkpoints hold pickled state, which "
                         "this toolkit does not write); start it again with `foundry train`")
    return _train(cfg, resume=run.path, **kwargs)


def compress(run_dir: str | Path, settings: CompressConfig | None = None, output_dir: str | Path | None = None) -> Run:
    """Compress a complete run (`settings`, else its config's `compress:` section); returns the variant's Run."""
    run = Run.open(run_dir)
    return _compress(run.path, settings, output_dir, source=run_config(run))
