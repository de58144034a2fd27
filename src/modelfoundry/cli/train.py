"""`foundry train`: train and evaluate; prints the run directory last."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ..api import resume, train
from ..config import load_config
from ..core.runs import Run
from .common import add_set, summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or interrupted run from its last checkpoint")
    p.add_argument("--nproc", type=int, default=1, help="launch N processes with torchrun (DDP; gloo on CPU)")
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    add_set(p)


def run(args) -> int:
    if args.resume:
        run = resume(args.resume)
        print(run.path)
        return 0
    if args.config is None:
        raise ValueError("foundry train: give a CONFIG file (or --resume RUN_DIR)")
    cfg = load_config(args.config, args.overrides)
    if args.nproc and args.nproc > 1 and cfg.align is not None:
        raise ValueError("foundry train --nproc: an align: config runs in one process here (TRL under `accelerate "
                         "launch` is the way to several GPUs)")
    if args.nproc and args.nproc > 1 and cfg.federated is not None:
        raise ValueError("foundry train --nproc: a federated: config runs its sites as Flower's apps (engine local "
                         "or deployment), not under torchrun")
    if args.nproc and args.nproc > 1:
        run = Run.create(Path(cfg.output_dir), cfg.name)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               "-m", "modelfoundry.cli", "train", str(args.config), "--run-dir", str(run.path)]
        for o in args.overrides:
            cmd += ["--set", o]
        rc = subprocess.call(cmd, env=env)
        if rc != 0:
            print(f"error: {args.nproc} training processes failed (exit {rc}); see {run.path}", file=sys.stderr)
            return rc
        print(run.path)
        return 0
    run = train(cfg, run_dir=args.run_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        summary(run.path)
        print(run.path)
    return 0
