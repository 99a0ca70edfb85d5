"""Bootstrap confidence intervals against analytic intervals and naive resampling loops."""

from __future__ import annotations

import numpy as np
import pytest

from brainalign.evaluate.statistics import bootstrap_ci, bootstrap_distribution


def test_ci_contains_estimate_and_matches_normal_approximation():
    rng = np.random.default_rng(0)
    hits = (rng.random(500) < 0.3).astype(float)
    p = hits.mean()
    low, high = bootstrap_ci(hits, n_bootstrap=4000, seed=1)
    assert low < p < high
    half = 1.96 * np.sqrt(p * (1 - p) / len(hits))  # Wald interval of a proportion
    assert low == pytest.approx(p - half, abs=0.01)
    assert high == pytest.approx(p + half, abs=0.01)


def test_deterministic_under_a_seed():
    values = np.random.default_rng(2).standard_normal(97)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)
    np.testing.assert_array_equal(
        bootstrap_distribution(values, seed=np.random.default_rng(3)),
        bootstrap_distribution(values, seed=np.random.default_rng(3)),
    )


def test_distribution_matches_a_naive_loop_in_law():
    values = np.random.default_rng(4).exponential(size=60)
    fast = bootstrap_distribution(values, n_bootstrap=3000, seed=5)
    rng = np.random.default_rng(6)
    naive = np.array([rng.choice(values, size=60, replace=True).mean() for _ in range(3000)])
    assert fast.mean() == pytest.approx(naive.mean(), abs=0.02)
    assert fast.std() == pytest.approx(naive.std(), rel=0.08)
    assert fast.std() == pytest.approx(values.std() / np.sqrt(60), rel=0.08)


def test_median_and_callable_statistics():
    values = np.random.default_rng(8).standard_normal(201)
    low, high = bootstrap_ci(values, statistic="median", seed=0)
    assert low <= np.median(values) <= high
    low_c, high_c = bootstrap_ci(values, statistic=np.median, seed=0)
    assert (low_c, high_c) == (low, high)


def test_groups_resample_whole_clusters():
    rng = np.random.default_rng(9)
    cluster_values = rng.standard_normal(80)
    values = np.repeat(cluster_values, 3)  # three identical queries per stimulus
    groups = np.repeat(np.arange(80), 3)
    clustered = bootstrap_distribution(values, groups=groups, n_bootstrap=3000, seed=1)
    per_cluster = bootstrap_distribution(cluster_values, n_bootstrap=3000, seed=2)
    naive = bootstrap_distribution(values, n_bootstrap=3000, seed=3)
    # Resampling clusters gives the width of 80 independent values, not of 240.
    assert clustered.std() == pytest.approx(per_cluster.std(), rel=0.1)
    assert naive.std() < 0.7 * clustered.std()
    # The general path (median) expands the drawn clusters into their members.
    med = bootstrap_distribution(values, statistic="median", groups=groups, n_bootstrap=500)
    assert np.all(
        np.isin(med, np.r_[cluster_values, (cluster_values[:, None] + cluster_values).ravel() / 2])
    )
    # One query per group: the same law as without groups.
    single = bootstrap_distribution(cluster_values, groups=np.arange(80), n_bootstrap=3000, seed=4)
    assert single.std() == pytest.approx(per_cluster.std(), rel=0.1)


def test_ratio_estimator_for_unequal_clusters():
    values = np.array([1.0, 1.0, 1.0, 0.0])
    groups = np.array([0, 0, 0, 1])
    dist = bootstrap_distribution(values, groups=groups, n_bootstrap=2000, seed=0)
    # Draws of the 2 clusters: {0,0} → 1, {1,1} → 0, one of each → 3/4.
    assert set(np.round(dist, 12)) <= {0.0, 0.75, 1.0}
    assert np.mean(dist == 0.75) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"values": [[1, 2], [3, 4]]}, ValueError, r"'values' must be a 1-D array"),
        ({"values": []}, ValueError, r"'values' is empty"),
        ({"values": [1.0, np.nan]}, ValueError, r"'values' contains NaN .*positions \[1\]"),
        ({"ci": 95}, ValueError, r"'ci' must be a coverage strictly between 0 and 1 .*got 95"),
        ({"n_bootstrap": 0}, ValueError, r"'n_bootstrap' must be at least 1, got 0"),
        ({"n_bootstrap": 10.5}, TypeError, r"'n_bootstrap' must be an int, got float"),
        ({"statistic": "mode"}, ValueError, r"'statistic' parameter.*'mean', 'median'"),
        ({"groups": [0, 1]}, ValueError, r"'groups' must have one label per value \(3\)"),
    ],
)
def test_bad_input(kwargs, error, message):
    kwargs = {"values": [0.0, 1.0, 1.0], **kwargs}
    values = kwargs.pop("values")
    with pytest.raises(error, match=message):
        bootstrap_ci(values, **kwargs)
