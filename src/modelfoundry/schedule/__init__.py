"""Scheduling with reinforcement learning: a job shop dispatched by a policy trained with MaskablePPO, beside the
dispatching rules and the instances' optima (config section `schedule:`, extra `modelfoundry[scheduling]`). The
stage's modules import gymnasium and stable-baselines3, which only the extra installs: they load when called."""

from __future__ import annotations


def schedule(cfg, **kwargs):
    """Train and evaluate a dispatching policy (run.schedule)."""
    from .run import schedule as _schedule

    return _schedule(cfg, **kwargs)


def schedule_instances(run_dir, path):
    """Every instance of a file scheduled by a schedule run's policy (run.schedule_instances)."""
    from .run import schedule_instances as _schedule_instances

    return _schedule_instances(run_dir, path)


__all__ = ["schedule", "schedule_instances"]
