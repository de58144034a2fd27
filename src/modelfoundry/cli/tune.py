"""`foundry tune`: an Optuna study over the config's `tune.space`; prints the study directory."""

from __future__ import annotations

import argparse
import os

from ..config import load_config
from ..tune import STORAGE_ENV, tune, work
from .common import add_set


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config")
    p.add_argument("--trials", type=int, help="trials in the study (default: tune.trials)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine sharing the study")
    p.add_argument("--storage", help="a journal file path, or an RDB URL (postgresql://user:pass@host/db) shared by "
                   "machines; FOUNDRY_TUNE_STORAGE is read when this is not given (keeps a password out of `ps`)")
    p.add_argument("--study", help="study name (default: the config's name); the same name resumes it")
    p.add_argument("--refit", action="store_true", help="train the best config on train+val, evaluate on test")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    add_set(p)


def run(args) -> int:
    if args.storage is None and os.environ.get(STORAGE_ENV):
        args.storage = os.environ[STORAGE_ENV]  # a URL with a password stays out of argv
    cfg = load_config(args.config, args.overrides)
    if cfg.tune is None:
        raise ValueError(f"{args.config}: no `tune` section; add one (see docs/config.md, section tune)")
    if args.worker:  # one of --workers N processes, started by the command below
        work(cfg, args.study or cfg.name, args.storage, args.trials or cfg.tune.trials, args.worker_index)
        return 0
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    sdir = tune(cfg, trials=args.trials, workers=args.workers, storage=args.storage, study=args.study, refit=args.refit)
    print(sdir)
    return 0
