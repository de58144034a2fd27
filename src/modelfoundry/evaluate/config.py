"""The `evaluate:` section: metrics, k-fold, baselines, the report."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..core.schema import Section


class CVConfig(Section):
    folds: int = Field(5, ge=2)
    """Stratified (classification) k-fold over the train+val rows; mean ± std per metric."""


class FairnessConfig(Section):
    """Group fairness (fairlearn) on the held-out split: each metric per group, demographic parity and equalized odds
    (difference and ratio, as fairlearn names them), selection rates; and optional mitigation."""

    sensitive: list[str] = Field(min_length=1)
    """Columns that define groups (`[sex, age]`). A numeric column is banded (`bins`, else `quantiles`)."""
    groups: dict[str, dict[str, str]] = {}
    """Recode a column's values into named groups before grouping: `{personal_status: {A91: male, A92: female}}`;
    values not listed keep their own name."""
    bins: dict[str, list[float]] = {}
    """Band edges for a numeric sensitive column: `{age: [25, 40, 60]}` gives <25, 25-40, 40-60, >=60."""
    quantiles: int = Field(3, ge=2)
    """A numeric sensitive column without `bins` is banded at these quantiles of the training rows."""
    min_group_size: int = Field(20, ge=1)
    """A group with fewer held-out rows is listed (under small_groups) but left out of the differences and ratios:
    its rates are noise."""
    use_as_feature: bool = True
    """false = the sensitive columns are audited only: never a model input (data.types gets them as ignore)."""
    positive: str | None = None
    """The favourable class of a binary target (approved, good, 1), whose rate is the selection rate; default the
    second class in sorted order."""
    mitigate: Literal["none", "threshold_optimizer", "reweigh"] = "none"
    """threshold_optimizer = fairlearn's ThresholdOptimizer, fitted on the validation split's scores: a threshold
    per group (randomised between two where needed) that meets `constraint`. Saved as model/fairness.json; Predictor
    and serve apply it (the same row always gets the same decision). Binary classification only.
    reweigh = in training: each training row's loss is weighted by P(group) P(label) / P(group, label) (Kamiran &
    Calders), so that group and label look independent to the model; classification, one-machine training."""
    constraint: Literal["equalized_odds", "demographic_parity", "true_positive_rate_parity",
                        "false_negative_rate_parity", "true_negative_rate_parity",
                        "false_positive_rate_parity"] = "equalized_odds"
    """What the mitigation equalises across groups (fairlearn's constraint names)."""
    objective: Literal["accuracy_score", "balanced_accuracy_score"] = "accuracy_score"
    """What the mitigation maximises under the constraint."""


class ExplainConfig(Section):
    """Explanations written with every run (metrics.json `explanations`, the report, the card), and what
    `foundry explain` starts from."""

    importance: bool = True
    """Permutation importance of each input column on the held-out rows (scikit-learn): the drop in accuracy (rmse
    for regression) when that column's values are shuffled."""
    repeats: int = Field(3, ge=1)
    """Shuffles per column."""
    max_rows: int = Field(1000, ge=10)
    """Held-out rows the importance is measured on (a fixed sample when there are more)."""
    shap_rows: int = Field(0, ge=0)
    """Tables: also mean |SHAP value| per column over this many held-out rows (0 = off; needs the explain extra; shap
    compiles its kernels the first time, ~8 s)."""
    background_rows: int = Field(100, ge=0)
    """Training rows kept in the run (explain_background.json, beside the model, not in it) that SHAP removes a column
    with: it takes their values. 0 = keep no training rows in the run; `foundry explain` then needs --background."""


class PortfolioConfig(Section):
    """data.task forecast with several series (prices): a portfolio on the backtest's forecasts, beside equal weights.
    A demonstration of what forecasts feed, not investment advice."""

    methods: list[Literal["mean_variance", "risk_parity"]] = ["mean_variance", "risk_parity"]
    """mean_variance = long-only max mu'w - risk_aversion/2 w'Sigma w on the forecast returns; risk_parity = equal risk
    contributions from the trailing covariance (ignores the forecasts: the risk-only reference)."""
    lookback: int = Field(60, ge=5)
    """Trailing steps of returns the covariance is estimated from, at each origin."""
    risk_aversion: float = Field(5.0, gt=0)
    """mean_variance's penalty on variance."""
    max_weight: float = Field(1.0, gt=0, le=1)
    """The most one asset may hold."""


class EvaluateConfig(Section):
    metrics: list[str] | None = None
    """Metrics to report; default: all for the task."""
    cv: CVConfig | None = None
    baselines: bool = True
    """Train majority/mean, linear and HistGradientBoosting baselines beside the model (anomaly: Isolation Forest and
    the Local Outlier Factor)."""
    report: bool = True
    """Write report.html with plots."""
    language: Literal["en", "zh"] = "en"
    """The model card's language: zh writes MODEL_CARD.zh.md beside the English MODEL_CARD.md."""
    explain: ExplainConfig = ExplainConfig()
    fairness: FairnessConfig | None = None
    """Group fairness metrics and mitigation (classification and regression; parity metrics need a binary target)."""
    portfolio: PortfolioConfig | None = None
    """data.task forecast: backtest a portfolio built on the forecasts (two or more price series)."""
    alert_budget: float = Field(0.01, gt=0, lt=1)
    """data.task anomaly: the share of rows a review team can look at. The alert threshold is the training scores'
    (1 - this) quantile; metrics.json `alerts` reports the flagged share and recall / precision at it on the held-out
    rows, and predict / serve flag a row (`prediction` true) above it."""


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
