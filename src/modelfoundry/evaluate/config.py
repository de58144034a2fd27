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
