"""The `tune:` section: the search space (dotted config paths and their ranges), sampler, pruner, metric."""

from __future__ import annotations

import builtins
from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..core.schema import Section
from ..evaluate.metrics import reported_metric


class SpaceParam(Section):
    """One searched config field: exactly one of uniform, log_uniform, int, choice."""

    uniform: tuple[float, float] | None = None
    """A float drawn between [low, high]."""
    log_uniform: tuple[float, float] | None = None
    """A float drawn between [low, high] on a log scale (both > 0)."""
    int_: tuple[builtins.int, builtins.int] | None = Field(None, alias="int")
    """An integer between [low, high] inclusive (`int: [16, 128]`)."""
    choice: list[Any] | None = None
    """Any YAML values, lists included (`choice: [[64], [128, 64]]`)."""
    step: float | None = Field(None, gt=0)
    """A step for uniform/int ranges (grid search expands stepped ranges)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_kind(self) -> SpaceParam:
        kinds = [k for k in ("uniform", "log_uniform", "int_", "choice") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of uniform, log_uniform, int, choice"
                             + (f" (found {', '.join(k.rstrip('_') for k in kinds)})" if kinds else ""))
        if self.choice is not None and not self.choice:
            raise ValueError("choice: needs at least one value")
        for k in ("uniform", "log_uniform", "int_"):
            r = getattr(self, k)
            if r is not None and r[0] > r[1]:
                raise ValueError(f"{k.rstrip('_')}: low {r[0]} > high {r[1]}")
        if self.log_uniform is not None and self.log_uniform[0] <= 0:
            raise ValueError(f"log_uniform: bounds must be > 0, got {list(self.log_uniform)}")
        if self.step is not None and self.uniform is None and self.int_ is None:
            raise ValueError("step applies to uniform and int ranges")
        return self

    @property
    def kind(self) -> str:
        return next(k.rstrip("_") for k in ("uniform", "log_uniform", "int_", "choice") if getattr(self, k) is not None)

    def grid(self) -> list[Any] | None:
        """The values grid search tries: the choices, or a stepped range; None when the range is continuous."""
        if self.choice is not None:
            return list(self.choice)
        if self.int_ is not None:
            return list(range(self.int_[0], self.int_[1] + 1, builtins.int(self.step or 1)))
        if self.uniform is not None and self.step is not None:
            n = builtins.int(round((self.uniform[1] - self.uniform[0]) / self.step))
            return [round(self.uniform[0] + i * self.step, 12) for i in range(n + 1)]
        return None


Sampler = Literal["grid", "random", "tpe", "cmaes", "gp", "qmc", "bruteforce"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)


class TuneConfig(Section):
    sampler: Sampler = "tpe"
    """Optuna's sampler: grid (choices and stepped ranges), random, tpe (Bayesian), cmaes, gp, qmc, bruteforce."""
    sampler_options: dict[str, Any] = {}
    """Passed to the Optuna sampler (e.g. `{n_startup_trials: 5}` for tpe); `seed` comes from tune.seed."""
    trials: int = Field(20, gt=0)
    """Trials in the study (all workers together; a resumed study runs only the missing ones)."""
    timeout: float | None = Field(None, gt=0)
    """Stop starting new trials after this many seconds (per worker)."""
    metric: str = "val_loss"
    """The validation metric to optimise, as the run reports it (val_loss, val_accuracy, val_roc_auc, val_rmse,
    ...; the value at the run's best epoch), or `cv_<metric>` (e.g. cv_roc_auc) for the k-fold mean when
    evaluate.cv is set."""
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    """auto = minimize losses and errors, maximize the rest."""
    seed: int = 0
    pruner: Literal["none", "median", "hyperband"] = "none"
    """Stop unpromising trials early, fed the validation metric after every epoch."""
    space: dict[str, SpaceParam]
    """Dotted config paths and their ranges: `{train.lr: {log_uniform: [1e-4, 1e-1]}, model.hidden: {choice: [[64], [128, 64]]}}`."""

    @model_validator(mode="after")
    def _space(self) -> TuneConfig:
        if not self.space:
            raise ValueError("space is empty; add at least one dotted config path, "
                             "e.g. space: {train.lr: {log_uniform: [1.0e-4, 1.0e-1]}}")
        if self.sampler in ("grid", "bruteforce"):
            continuous = [k for k, p in self.space.items() if p.grid() is None]
            if continuous:
                raise ValueError(f"{self.sampler} search needs choice or stepped ranges (add step:); "
                                 f"continuous: {', '.join(continuous)}")
        return self

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        if v.startswith("test_"):
            raise ValueError(f"'{v}': tuning on the test split leaks it into the model choice; "
                             "use a val_ metric or cv_ with evaluate.cv")
        return reported_metric(v, ("val_", "cv_"))
