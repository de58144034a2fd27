"""The `federated:` section: the same model trained across sites that keep their data, on Flower (flwr). Flower's
strategy options pass through `options:` (as `model.adapter` passes through to PEFT) and Flower validates them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..core.schema import Section

STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedmedian", "krum", "trimmed_mean")
SECURE_STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedyogi")
"""The strategies that work on the weighted sum of the sites' weights alone (what secure aggregation reveals)."""


class PartitionConfig(Section):
    """How the training rows are spread over the sites (engine local, and `foundry federated join` without --data)."""

    method: Literal["iid", "dirichlet", "column"] = "iid"
    """iid: shuffled, equal shares; dirichlet: each class spread over the sites by Dirichlet(alpha) proportions (small
    alpha: each site sees few classes); column: one site per value of `column` (a hospital, a branch, a machine)."""
    alpha: float = Field(0.5, gt=0)
    """Dirichlet concentration (method dirichlet)."""
    column: str | None = None
    """The column whose values are the sites (method column). It is not a model input (data.types sets it to ignore)."""

    @model_validator(mode="after")
    def _column_given(self) -> PartitionConfig:
        if (self.method == "column") != (self.column is not None):
            raise ValueError("column: give it with method column (and only then)")
        return self


class PrivacyConfig(Section):
    """Local differential privacy on every site's update (Flower's LocalDpMod): the update (new weights minus the
    round's global weights) is clipped to L2 norm `clip`, then Gaussian noise for (epsilon, delta) per round is added
    before it leaves the site. Over R rounds the budget composes to at most (R x epsilon, R x delta)."""

    clip: float = Field(1.0, gt=0)
    """L2 norm bound of one site's update (also the noise's sensitivity)."""
    epsilon: float = Field(gt=0)
    """Privacy loss per round (the Gaussian mechanism's bound holds for epsilon < 1; larger values add less noise
    than that bound needs and are reported as given)."""
    delta: float = Field(1e-5, gt=0, lt=1)


class SecureAggregationConfig(Section):
    """Secure aggregation with Flower's SecAgg+ (SecAggPlusWorkflow on the server, secaggplus_mod on every site):
    each site masks its weights with pairwise and private random masks before they leave it, so the server learns
    only the weighted sum of the sampled sites' weights, never one site's. A site that drops out after sharing its
    keys is recovered from the others' secret shares (at least `reconstruction_threshold` of them must answer).
    The parameter names are Flower's; Flower validates them. Weights are quantized in [-clipping_range,
    clipping_range] on the way (a site whose weights do not fit is refused, not clipped)."""

    num_shares: int | float = 1.0
    """Into how many shares each site's secrets are split: an int > 2, or a share of the sampled sites (1.0: all,
    plain SecAgg; smaller: SecAgg+'s sparser graph, cheaper for many sites)."""
    reconstruction_threshold: int | float = 0.67
    """How many shares rebuild a secret: an int below num_shares, or a share of num_shares (at least 2). Fewer
    answering sites than this end the round without a model update (the next round starts from the last)."""
    clipping_range: float = Field(8.0, gt=0)
    """Weights (times the site's row share) must lie in [-clipping_range, clipping_range]."""
    max_weight: float | None = Field(None, gt=0)
    """The largest training-row count a site may weigh with (FedAvg's weights travel inside the masked sum); null:
    the training rows of the data the server reads (every partition's rows fit under it)."""
    quantization_range: int = Field(4194304, gt=0)
    """Quantization levels over [-clipping_range, clipping_range] (2^22: steps of ~4e-6 at the default range)."""
    modulus_range: int = Field(4294967296, gt=0)
    """The masked sums are computed modulo this power of two."""


class PoisonConfig(Section):
    """A test switch: sites that attack the federation, to measure what robust aggregation buys."""

    sites: list[int] = Field(min_length=1)
    """Site indices (0-based) that attack."""
    method: Literal["scale", "flip"] = "scale"
    """scale: the site sends global + factor x (its update); flip: its training labels are permuted (classification)."""
    factor: float = 10.0
    """method scale: how far the site pushes its update (-10: ten times the other way)."""


class FailConfig(Section):
    """A test switch: a site that dies in a round (its reply is an error; the round completes with the others)."""

    site: int = Field(ge=0)
    rounds: list[int] = Field(min_length=1)
    """The rounds (1-based) in which the site fails."""


class FederatedConfig(Section):
    clients: int | None = Field(None, ge=1)
    """Number of sites. With partition.method column: the number of the column's values (give it or leave it out)."""
    rounds: int = Field(10, ge=1)
    """Aggregation rounds: in each, the sampled sites train from the global model, the server aggregates their
    weights, the sites score the new global model on their validation rows."""
    local_epochs: int = Field(1, ge=1)
    """Epochs each site trains on its rows per round (train.epochs does not apply; train.lr, batch_size, optimizer do)."""
    fraction: float = Field(1.0, gt=0, le=1)
    """Share of the sites sampled to train (and to evaluate) in a round."""
    strategy: Literal[STRATEGIES] = "fedavg"
    """Flower's aggregation: FedAvg, FedProx (options.proximal_mu: the sites add mu/2 ||w - w_global||^2 to their
    loss), FedAdam, FedYogi, FedMedian, Krum (options.num_malicious_nodes), FedTrimmedAvg (options.beta)."""
    options: dict[str, Any] = {}
    """Keyword arguments of Flower's strategy class, passed through (Flower validates them)."""
    partition: PartitionConfig = PartitionConfig()
    engine: Literal["local", "deployment"] = "local"
    """local: every site in this process (Flower's strategy and ClientApp, messages passed in memory); deployment:
    Flower's SuperLink and one SuperNode per site over gRPC (here on loopback; real sites `foundry federated join`)."""
    superlink: str = "127.0.0.1:9092"
    """engine deployment: the SuperLink's Fleet API address (host:port) the sites connect to; its Control API listens
    on the next port."""
    start_sites: bool = True
    """engine deployment: `foundry train` starts every site's SuperNode on this machine too (a loopback federation);
    false: it starts the SuperLink, prints each site's `foundry federated join` command and waits for them."""
    privacy: PrivacyConfig | None = None
    secure_aggregation: SecureAggregationConfig | None = None
    """Flower's SecAgg+: the server sees only the sum of the sites' weights (strategies fedavg, fedprox, fedadam,
    fedyogi: the robust ones need every site's update)."""
    poison: PoisonConfig | None = None
    fail: FailConfig | None = None

    @model_validator(mode="after")
    def _secure_needs_a_sum(self) -> FederatedConfig:
        if self.secure_aggregation is not None and self.strategy not in SECURE_STRATEGIES:
            raise ValueError(f"secure_aggregation: strategy {self.strategy} needs every site's update, which secure "
                             f"aggregation hides from the server (it sees only their sum); use one of "
                             f"{', '.join(SECURE_STRATEGIES)}")
        return self
