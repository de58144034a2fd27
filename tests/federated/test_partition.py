"""Partitions: iid shares, Dirichlet label skew, one site per column value, and the errors that name what works."""

from __future__ import annotations

import numpy as np
import pytest

from modelfoundry.data import DataError
from modelfoundry.federated.config import PartitionConfig
from modelfoundry.federated.partition import label_codes, plan


def _skew(labels: np.ndarray, site: np.ndarray, n: int) -> float:
    """Mean total-variation distance between each site's label mix and the overall mix."""
    overall = np.bincount(labels, minlength=2) / len(labels)
    return float(np.mean([0.5 * np.abs(np.bincount(labels[site == s], minlength=2) / max((site == s).sum(), 1)
                                       - overall).sum() for s in range(n)]))


def test_iid_gives_equal_stratified_shares():
    labels = np.repeat([0, 1], [300, 100])
    p = plan(PartitionConfig(method="iid"), 4, labels, None, 0)
    site = p.assign(labels, None, 0)
    assert sorted(np.bincount(site).tolist()) == [100, 100, 100, 100]
    assert all(np.bincount(labels[site == s]).tolist() == [75, 25] for s in range(4))


def test_dirichlet_skews_labels_more_as_alpha_falls():
    labels = np.repeat([0, 1], [500, 500])
    skews = {}
    for alpha in (100.0, 0.1):
        p = plan(PartitionConfig(method="dirichlet", alpha=alpha), 10, labels, None, 0)
        skews[alpha] = _skew(labels, p.assign(labels, None, 0), 10)
    assert skews[100.0] < 0.1 < skews[0.1]


def test_column_partition_and_its_errors():
    values = np.array(["a", "b", "a", "c", "b", "c"])
    labels = np.zeros(6, dtype=int)
    p = plan(PartitionConfig(method="column", column="site"), None, labels, values, 0)
    assert p.names == ["a", "b", "c"] and p.assign(labels, values, 0).tolist() == [0, 1, 0, 2, 1, 2]
    with pytest.raises(DataError, match="one value"):
        plan(PartitionConfig(method="column", column="site"), None, labels, np.array(["a"] * 6), 0)
    with pytest.raises(DataError, match="has 3 values .* set it to 3"):
        plan(PartitionConfig(method="column", column="site"), 4, labels, values, 0)


def test_too_many_clients_names_the_number_that_works():
    labels = np.repeat([0, 1], [50, 7])
    with pytest.raises(DataError, match=r"class '1' has 7: use clients <= 7"):
        plan(PartitionConfig(method="iid"), 12, labels, None, 0, ["0", "1"])
    with pytest.raises(DataError, match="sites work"):
        plan(PartitionConfig(method="dirichlet", alpha=0.05), 20, labels, None, 0)


def test_regression_targets_are_binned_for_dirichlet():
    y = np.linspace(0, 1, 100)
    codes = label_codes(y, "regression")
    assert sorted(set(codes.tolist())) == [0, 1, 2, 3, 4] and np.all(np.diff(codes) >= 0)
