"""The federated stage: one config trains across sites that keep their data, on Flower (config, partition,
strategies, site, apps, local engine, deployment, report)."""

from .config import FederatedConfig
from .run import federated

__all__ = ["FederatedConfig", "federated"]
