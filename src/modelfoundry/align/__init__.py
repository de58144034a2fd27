"""Alignment from feedback on TRL: SFT, reward models, DPO / IPO / ORPO / KTO, GRPO with composable rewards."""

from .config import METHODS, AlignConfig, GuardConfig, RewardSpec
from .rewards import RewardModel, distinct_n, repetition_rate
from .run import align

__all__ = ["METHODS", "AlignConfig", "GuardConfig", "RewardSpec", "RewardModel", "align", "distinct_n",
           "repetition_rate"]
