"""`federated.strategy` -> Flower's strategy class (Message API, flwr.serverapp.strategy), built with
`federated.options` passed through; Flower validates them, and its complaint comes back with our config path."""

from __future__ import annotations

import math

from .config import FederatedConfig

CLASSES = {"fedavg": "FedAvg", "fedprox": "FedProx", "fedadam": "FedAdam", "fedyogi": "FedYogi",
           "fedmedian": "FedMedian", "krum": "Krum", "trimmed_mean": "FedTrimmedAvg"}


def build_strategy(cfg: FederatedConfig, sites: int):
    """Flower's strategy for `sites` sites: fraction and the minimum node counts follow federated.fraction and
    clients (every site must be connected before a round starts); `options` override them."""
    from flwr.serverapp import strategy as flower

    cls = getattr(flower, CLASSES[cfg.strategy])
    sampled = max(1, math.ceil(cfg.fraction * sites))
    kwargs = {"fraction_train": cfg.fraction, "fraction_evaluate": cfg.fraction, "min_train_nodes": sampled,
              "min_evaluate_nodes": sampled, "min_available_nodes": sites, **cfg.options}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"federated.options: Flower's {cls.__name__} rejected {cfg.options}: {exc}") from None
