"""Confidence intervals for sweep results: means of per-image metrics and success proportions.

Inputs must be finite: non-finite values (NaN, +-inf) raise ``ValueError`` rather than being
silently dropped, because a dropped value would bias the estimate without anyone noticing
(cap values upstream instead, e.g. PSNR at :data:`simlink.metrics.image.PSNR_MAX_DB`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Sample mean and the half-width of its two-sided Student-t confidence interval.

    Args:
        values: 1-D array-like of finite real numbers, at least one.
        confidence: two-sided confidence level (default 95 %).

    Returns:
        ``(mean, half_width)`` as floats, with ``half_width = t_{(1+confidence)/2, n-1} * s / sqrt(n)``
        and ``s`` the sample standard deviation (ddof = 1). The interval is
        ``mean +- half_width``. For ``n = 1`` the half-width is ``nan`` (no spread estimate).

    Raises:
        ValueError: empty input, non-finite values, or confidence outside (0, 1).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"mean_ci needs finite values; got {int(np.sum(~np.isfinite(v)))} non-finite of {v.size}")
    _z(confidence)  # validates confidence
    mean = float(v.mean())
    n = v.size
    if n == 1:
        return mean, math.nan
    t = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))
    return mean, t * float(v.std(ddof=1)) / math.sqrt(n)


def proportion_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Observed proportion and its Wilson-score confidence interval.

    The Wilson interval is not symmetric around ``p = successes / n`` (it is pulled towards
    1/2 and stays inside [0, 1], also for 0 or n successes), so it is returned as explicit
    bounds rather than a half-width.

    Args:
        successes: number of successes, integer in ``0..n``.
        n: number of trials, integer >= 1.
        confidence: two-sided confidence level (default 95 %).

    Returns:
        ``(p, low, high)`` as floats: with ``z`` the normal quantile,
        centre ``c = (p + z^2/(2n)) / (1 + z^2/n)``, half-width
        ``h = z / (1 + z^2/n) * sqrt(p (1-p) / n + z^2 / (4 n^2))``, and ``low, high = c -+ h``
        (clipped to [0, 1]; exactly 0 when ``successes == 0`` and exactly 1 when
        ``successes == n``, where the formula gives these values up to rounding).

    Raises:
        ValueError: ``n < 1``, ``successes`` outside ``0..n`` or not an integer, bad confidence.
    """
    if int(n) != n or int(successes) != successes:
        raise ValueError(f"successes and n must be integers; got {successes}, {n}")
    n, successes = int(n), int(successes)
    if n < 1:
        raise ValueError(f"proportion_ci needs n >= 1; got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..n = 0..{n}; got {successes}")
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact bounds at the extremes
    high = 1.0 if successes == n else min(1.0, centre + half)
    return p, low, high
