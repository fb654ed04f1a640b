"""Bjøntegaard deltas: average rate saving at equal quality and quality gain at equal rate.

Both deltas compare a *test* rate-metric curve with an *anchor* curve (a few operating points
each, e.g. bits per pixel and PSNR in dB; the metric can be any quality that grows with rate:
SSIM, accuracy, mIoU, ...). Each curve is turned into a function, both functions are integrated
over the interval where the curves overlap, and the mean difference is reported:

* :func:`bd_rate` models ``log10(rate)`` as a function of the metric and returns the average
  rate difference in percent, ``(10**mean_diff - 1) * 100`` (negative: the test needs less rate).
* :func:`bd_metric` models the metric as a function of ``log10(rate)`` and returns the mean
  metric difference (BD-PSNR in dB for PSNR).

Fitting ``method``:

* ``"cubic"``: least-squares cubic polynomial (``numpy.polyfit`` degree 3) through all points,
  integrated exactly — the original VCEG-M33 method. Needs >= 4 points per curve.
* ``"pchip"``: piecewise cubic Hermite interpolation through the points sorted by abscissa
  (``scipy.interpolate.PchipInterpolator``), as in the JVET common-test-conditions variant;
  monotone and without the overshoot of the global cubic. Needs >= 2 points per curve with
  distinct abscissae.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

BD_METHODS = ("cubic", "pchip")
_MIN_POINTS = {"cubic": 4, "pchip": 2}


def _curve(rate, metric, label: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one rate-metric curve; return ``(log10 rate, metric)`` as float64 1-D arrays."""
    if method not in BD_METHODS:
        raise ValueError(f"method must be one of {BD_METHODS}; got {method!r}")
    r = np.asarray(rate, dtype=np.float64).ravel()
    m = np.asarray(metric, dtype=np.float64).ravel()
    if r.size != m.size:
        raise ValueError(f"{label}: rate and metric lengths differ ({r.size} vs {m.size})")
    need = _MIN_POINTS[method]
    if r.size < need:
        raise ValueError(f"{method} BD needs at least {need} rate-metric points per curve; {label} has {r.size}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(m))) or np.any(r <= 0.0):
        raise ValueError(f"{label}: rates must be finite and > 0 and metrics finite")
    return np.log10(r), m


def _mean_over_overlap(x_a, y_a, x_t, y_t, method: str) -> float:
    """Mean of ``f_t - f_a`` over the overlap of the ``x`` ranges, where ``f`` is fitted to
    ``(x, y)`` by ``method``; NaN if the ranges do not overlap (or only touch)."""
    lo = max(x_a.min(), x_t.min())
    hi = min(x_a.max(), x_t.max())
    if not hi > lo:
        return float("nan")
    integrals = []
    for x, y in ((x_a, y_a), (x_t, y_t)):
        if method == "cubic":
            poly = np.polyint(np.polyfit(x, y, 3))
            integrals.append(np.polyval(poly, hi) - np.polyval(poly, lo))
        else:
            order = np.argsort(x, kind="stable")
            if np.any(np.diff(x[order]) <= 0.0):
                raise ValueError("pchip BD needs distinct abscissae (metric values for BD-rate, rates for BD-metric)")
            integrals.append(PchipInterpolator(x[order], y[order]).integrate(lo, hi))
    return float((integrals[1] - integrals[0]) / (hi - lo))


def bd_rate(rate_anchor, metric_anchor, rate_test, metric_test, method: str = "cubic") -> float:
    """Bjøntegaard delta rate: average rate change of the test curve at equal metric, in percent.

    Inputs: ``rate_*`` float[n] rates (> 0, any unit, the same for both curves, e.g. bpp);
    ``metric_*`` float[n] qualities at those rates (e.g. PSNR in dB); curves may have different
    point counts (>= 4 for ``"cubic"``, >= 2 for ``"pchip"``); ``method`` as in the module docstring.
    Output: percent (float); e.g. -10.0 means the test needs 10 % less rate on average over the
    common metric interval; NaN if the metric ranges do not overlap.
    """
    x_a, y_a = _curve(rate_anchor, metric_anchor, "anchor", method)[::-1]
    x_t, y_t = _curve(rate_test, metric_test, "test", method)[::-1]
    return float((10.0 ** _mean_over_overlap(x_a, y_a, x_t, y_t, method) - 1.0) * 100.0)


def bd_metric(rate_anchor, metric_anchor, rate_test, metric_test, method: str = "cubic") -> float:
    """Bjøntegaard delta metric (BD-PSNR for PSNR): average metric change of the test curve at
    equal rate, averaged over the common ``log10(rate)`` interval.

    Inputs as :func:`bd_rate`.
    Output: metric units (float, e.g. dB; positive means the test is better); NaN if the rate
    ranges do not overlap.
    """
    x_a, y_a = _curve(rate_anchor, metric_anchor, "anchor", method)
    x_t, y_t = _curve(rate_test, metric_test, "test", method)
    return _mean_over_overlap(x_a, y_a, x_t, y_t, method)
