"""Distances between two sets of image features: the Fréchet distance (FID's formula) and the
kernel distance (KID's unbiased MMD² with the cubic polynomial kernel).

Why they are written here: torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance``
bundle the distance with torch-fidelity's Inception feature extractor, whose weights cannot be
had on every machine; simlink needs the same formulas on any backbone's pooled features (the
standard numbers only with the standard Inception features, the proxies under other names).
They follow pytorch-fid (Fréchet) and Bińkowski et al. 2018 / torch-fidelity (KID: subsets of
``subset_size`` drawn without replacement, mean and standard deviation over ``subsets``).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["frechet_distance", "frechet_distance_of_features", "kernel_distance", "mmd2_unbiased"]


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``:

        d² = ||mu1 - mu2||² + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})

    Args: ``mu* float[D]``, ``sigma* float[D, D]`` (symmetric positive semi-definite).
    Returns: ``d²`` (what FID reports), a float >= 0 up to rounding. A singular product gets
    ``1e-6`` added to both diagonals (as pytorch-fid does); a complex square root from rounding
    keeps its real part.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"frechet_distance: shapes {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape} do not fit")
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eps = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def frechet_distance_of_features(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`frechet_distance` of the Gaussians fitted to feature sets ``a float[n1, D]`` and
    ``b float[n2, D]`` (sample means, unbiased covariances). NaN when a set has no more images
    than feature dimensions (the covariance is then singular and the number meaningless)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance_of_features: expected float[n, D] twice, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) <= a.shape[1]:
        return float("nan")
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel ``k(x, y) = (x·y / D + 1)^3``."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased estimator of MMD² between samples ``x float[m, D]`` and ``y float[m, D]``
    under :func:`_poly_kernel` (diagonal terms left out of the within-set means)."""
    m = len(x)
    if m < 2 or len(y) != m:
        raise ValueError(f"mmd2_unbiased: needs two sets of equal size >= 2, got {len(x)} and {len(y)}")
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.mean())


def kernel_distance(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID: the mean and standard deviation of :func:`mmd2_unbiased` over ``subsets`` random
    subsets of ``min(subset_size, n1, n2)`` images drawn without replacement from each set.

    Args: ``a float[n1, D]``, ``b float[n2, D]``; ``seed`` seeds the subset draws.
    Returns: ``(mean, std)``; the standard error of the mean is ``std / sqrt(subsets)`` only if
    subsets did not overlap, so report ``std`` as torch-fidelity does.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"kernel_distance: expected float[n, D] twice, got {a.shape} and {b.shape}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"kernel_distance: needs at least 2 images per set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    values = np.array([mmd2_unbiased(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
                       for _ in range(int(subsets))])
    return float(values.mean()), float(values.std())
