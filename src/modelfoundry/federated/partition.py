"""Spread rows over sites: iid (stratified equal shares), Dirichlet(alpha) over the labels (non-iid), or one site per
value of a column (the natural split: a hospital, a branch). The training and validation rows are spread by the same
plan, so a site's validation rows look like its training rows; the test split stays with the server."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import DataError
from .config import PartitionConfig

MIN_ROWS = 2  # a site trains on at least this many rows


@dataclass
class Plan:
    """How rows go to sites: `shares[c, s]`, the share of class c that site s gets (iid, dirichlet), or `names`, the
    column value of each site (column)."""

    sites: int
    shares: np.ndarray | None = None
    names: list[str] | None = None

    def assign(self, labels: np.ndarray, values: np.ndarray | None, seed: int) -> np.ndarray:
        """The site of every row (-1: a column value no site has)."""
        if self.names is not None:
            index = {v: i for i, v in enumerate(self.names)}
            return np.array([index.get(str(v), -1) for v in values], dtype=np.int64)
        rng = np.random.default_rng(seed)
        site = np.empty(len(labels), dtype=np.int64)
        for c in range(self.shares.shape[0]):
            rows = rng.permutation(np.flatnonzero(labels == c))
            cuts = np.round(np.cumsum(self.shares[c])[:-1] * len(rows)).astype(int)
            for s, part in enumerate(np.split(rows, cuts)):
                site[part] = s
        return site


def label_codes(y: np.ndarray, task: str, bins: int = 5) -> np.ndarray:
    """Class ids for classification; quantile bins of the target for regression (Dirichlet spreads them)."""
    if task == "classification":
        return np.asarray(y, dtype=np.int64).reshape(len(y), -1)[:, 0]
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)[:, 0]
    edges = np.unique(np.quantile(y, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, y, side="right")


def label_mix(codes: np.ndarray, classes: list[str] | None) -> dict[str, int]:
    """Rows per class (or per target bin) of a site, for its profile."""
    return {str(classes[c] if classes else c): int(n) for c, n in enumerate(np.bincount(codes)) if n}


def plan(cfg: PartitionConfig, clients: int | None, labels: np.ndarray, values: np.ndarray | None, seed: int,
         classes: list[str] | None = None) -> Plan:
    """The partition plan for the training rows (`labels`: class ids or target bins, `values`: the partition
    column's value per row). Raises DataError naming the smallest / largest number of sites that works."""
    if cfg.method == "column":
        names = sorted({str(v) for v in values})
        if len(names) < 2:
            raise DataError(f"federated.partition.column '{cfg.column}': one value ({names[0] if names else 'none'!r}) "
                            "in the training rows; a federation needs at least two sites")
        if clients is not None and clients != len(names):
            raise DataError(f"federated.clients: {clients}, but partition.column '{cfg.column}' has {len(names)} "
                            f"values ({', '.join(names[:10])}); leave clients out or set it to {len(names)}")
        counts = {n: int(np.sum(np.asarray([str(v) for v in values]) == n)) for n in names}
        small = [n for n, k in counts.items() if k < MIN_ROWS]
        if small:
            raise DataError(f"federated.partition.column '{cfg.column}': site(s) {small} have fewer than {MIN_ROWS} "
                            "training rows")
        return Plan(len(names), names=names)
    n = clients or 2
    if n < 2:
        raise DataError("federated.clients: a federation needs at least 2 sites")
    k = int(labels.max()) + 1 if len(labels) else 0
    counts = np.bincount(labels, minlength=k)
    if cfg.method == "iid":
        smallest = int(counts[counts > 0].min())
        if n > smallest or n * MIN_ROWS > len(labels):
            most = min(smallest, len(labels) // MIN_ROWS)
            which = int(np.flatnonzero(counts == smallest)[0])
            name = classes[which] if classes else which
            raise DataError(f"federated.clients: {n} sites need at least {n} training rows of every class for an iid "
                            f"split; class {name!r} has {smallest}: use clients <= {most}")
        return Plan(n, shares=np.full((k, n), 1.0 / n))
    rng = np.random.default_rng(seed)
    for _ in range(50):  # as Flower Datasets' DirichletPartitioner: draw again until every site has enough rows
        shares = rng.dirichlet(np.full(n, cfg.alpha), size=k)
        sizes = (shares * counts[:, None]).sum(0)
        if sizes.min() >= MIN_ROWS:
            return Plan(n, shares=shares)
    works = next((m for m in range(n - 1, 1, -1) if _dirichlet_fits(m, cfg.alpha, counts, seed)), None)
    raise DataError(f"federated.clients: {n} sites: no Dirichlet(alpha={cfg.alpha}) draw in 50 gave every site at "
                    f"least {MIN_ROWS} of the {len(labels)} training rows"
                    + (f"; {works} sites work" if works else "") + "; or raise partition.alpha")


def _dirichlet_fits(n: int, alpha: float, counts: np.ndarray, seed: int) -> bool:
    rng = np.random.default_rng(seed)
    return any((rng.dirichlet(np.full(n, alpha), size=len(counts)) * counts[:, None]).sum(0).min() >= MIN_ROWS
               for _ in range(50))
