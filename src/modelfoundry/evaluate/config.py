"""The `evaluate:` section: metrics, k-fold, baselines, the report."""

from __future__ import annotations

from pydantic import Field

from ..core.schema import Section


class CVConfig(Section):
    folds: int = Field(5, ge=2)
    """Stratified (classification) k-fold over the train+val rows; mean ± std per metric."""


class EvaluateConfig(Section):
    metrics: list[str] | None = None
    """Metrics to report; default: all for the task."""
    cv: CVConfig | None = None
    baselines: bool = True
    """Train majority/mean, linear and HistGradientBoosting baselines beside the model."""
    report: bool = True
    """Write report.html with plots."""


class CostConfig(Section):
    """What a run and its predictions cost (manifest.json `cost`, the report, the model card)."""

    price_per_core_hour: float = Field(0.05, gt=0)
    """US dollars per CPU core-hour (default 0.05: about an on-demand cloud vCPU-hour in 2026); money = wall time x
    threads x this."""
    watts_per_core: float = Field(10.0, gt=0)
    """Power drawn per busy core, for the energy estimate (kWh = core-hours x this / 1000)."""
    tolerance: float = Field(0.01, ge=0)
    """A baseline within this of the model (metric points: 0.01 = 1 point of F1; for an error metric such as rmse, a
    share of the model's error) that predicts for less is named in the verdict: consider it."""
