"""Fréchet and kernel distances against closed forms and a direct O(n²) computation."""

import numpy as np
import pytest

from simlink.metrics.distribution import (frechet_distance, frechet_distance_of_features, kernel_distance,
                                          mmd2_unbiased)


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    """For commuting (here diagonal) covariances, d² = ||mu1-mu2||² + sum (sqrt(s1) - sqrt(s2))²."""
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.2, 3, d), rng.uniform(0.2, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)
    # a rotation of both distributions leaves the distance unchanged (non-diagonal covariances)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    got = frechet_distance(q @ mu1, q @ np.diag(v1) @ q.T, q @ mu2, q @ np.diag(v2) @ q.T)
    assert got == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mu1, np.diag(v1), mu1, np.diag(v1)) == pytest.approx(0, abs=1e-9)


def test_frechet_of_samples_converges_and_refuses_too_few_images():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, (20000, 3))
    b = rng.normal(0.5, 2.0, (20000, 3))
    expected = 3 * 0.5 ** 2 + 3 * (1 - 2) ** 2
    assert frechet_distance_of_features(a, b) == pytest.approx(expected, rel=0.03)
    assert np.isnan(frechet_distance_of_features(a[:3], b[:3]))  # n <= D: no meaningful covariance


def _mmd2_direct(x, y):
    """The unbiased MMD² written as explicit double loops."""
    m, d = len(x), x.shape[1]
    k = lambda u, v: (float(u @ v) / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd2_matches_a_direct_double_loop():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.3, 1.0, (12, 5))
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_direct(x, y), rel=1e-10)


def test_kernel_distance_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    c = rng.normal(1.0, 1.0, (300, 8))
    same, same_std = kernel_distance(a, b, subsets=20, subset_size=100)
    diff, _ = kernel_distance(a, c, subsets=20, subset_size=100)
    assert abs(same) < 3 * same_std + 1e-3 and diff > 10 * max(same_std, 1e-3)
    assert kernel_distance(a, c, subsets=5, subset_size=50, seed=7) == kernel_distance(a, c, subsets=5,
                                                                                        subset_size=50, seed=7)
    with pytest.raises(ValueError, match="at least 2"):
        kernel_distance(a[:1], c[:1])
