"""Bjøntegaard deltas (simlink.metrics.bd): exact cases, antisymmetry, and an independent
numerical integration of the same fitted curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.interpolate import PchipInterpolator

from simlink.metrics import bd_metric, bd_rate

METHODS = ("cubic", "pchip")

# A concave PSNR-rate curve typical of an image codec (bpp, dB), and a different-looking test curve
# with its own rate points and a partially overlapping PSNR range.
RATE_A = np.array([0.10, 0.21, 0.40, 0.83, 1.60])
PSNR_A = np.array([27.1, 30.2, 33.0, 36.1, 38.9])
RATE_T = np.array([0.12, 0.25, 0.52, 1.05])
PSNR_T = np.array([28.6, 31.9, 35.0, 37.6])


@pytest.mark.parametrize("method", METHODS)
def test_identical_curves_give_zero(method):
    assert bd_rate(RATE_A, PSNR_A, RATE_A, PSNR_A, method) == pytest.approx(0.0, abs=1e-12)
    assert bd_metric(RATE_A, PSNR_A, RATE_A, PSNR_A, method) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_scaled_rate_and_shifted_metric_are_exact(method):
    """Every rate x 0.9 shifts log10(rate) by a constant: BD-rate is exactly -10 %. Every PSNR
    + 0.5 dB shifts the metric by a constant: BD-PSNR is exactly +0.5 dB."""
    value = bd_rate(RATE_A, PSNR_A, 0.9 * RATE_A, PSNR_A, method)
    print(f"{method}: BD-rate of the 0.9 x rate curve = {value:.12f} %")
    assert value == pytest.approx(-10.0, abs=1e-9)
    assert bd_metric(RATE_A, PSNR_A, RATE_A, PSNR_A + 0.5, method) == pytest.approx(0.5, abs=1e-9)
    assert bd_rate(RATE_A, PSNR_A, 1.25 * RATE_A, PSNR_A, method) == pytest.approx(25.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_parallel_log_linear_curves(method):
    """PSNR = a + b log10(rate) on both curves (different sample points, offset c): BD-PSNR = c and
    BD-rate = 10^(-c / b) - 1 exactly, since both fits reproduce straight lines."""
    a, b, c = 35.0, 9.0, 0.8
    r_a = np.array([0.07, 0.15, 0.33, 0.6, 1.4])
    r_t = np.array([0.1, 0.19, 0.5, 0.9])
    m_a, m_t = a + b * np.log10(r_a), a + c + b * np.log10(r_t)
    assert bd_metric(r_a, m_a, r_t, m_t, method) == pytest.approx(c, abs=1e-9)
    assert bd_rate(r_a, m_a, r_t, m_t, method) == pytest.approx((10.0 ** (-c / b) - 1.0) * 100.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_antisymmetry_and_order_invariance(method):
    forward = bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T, method)
    backward = bd_rate(RATE_T, PSNR_T, RATE_A, PSNR_A, method)
    assert (1.0 + forward / 100.0) * (1.0 + backward / 100.0) == pytest.approx(1.0, abs=1e-12)
    assert bd_metric(RATE_A, PSNR_A, RATE_T, PSNR_T, method) == pytest.approx(
        -bd_metric(RATE_T, PSNR_T, RATE_A, PSNR_A, method), abs=1e-12
    )
    perm = [3, 0, 4, 1, 2]
    assert bd_rate(RATE_A[perm], PSNR_A[perm], RATE_T, PSNR_T, method) == pytest.approx(forward, abs=1e-10)


def reference_mean_difference(x_a, y_a, x_t, y_t, method: str) -> float:
    """Mean of (test fit - anchor fit) over the overlap, integrated by scipy quad."""
    lo, hi = max(x_a.min(), x_t.min()), min(x_a.max(), x_t.max())
    if method == "cubic":
        f_a, f_t = np.poly1d(np.polyfit(x_a, y_a, 3)), np.poly1d(np.polyfit(x_t, y_t, 3))
        breaks = None
    else:
        ia, it = np.argsort(x_a), np.argsort(x_t)
        f_a, f_t = PchipInterpolator(x_a[ia], y_a[ia]), PchipInterpolator(x_t[it], y_t[it])
        breaks = np.concatenate([x_a, x_t])
        breaks = breaks[(breaks > lo) & (breaks < hi)]
    value, _ = quad(lambda v: float(f_t(v) - f_a(v)), lo, hi, points=breaks, epsabs=1e-13, epsrel=1e-13)
    return value / (hi - lo)


@pytest.mark.parametrize("method", METHODS)
def test_against_numerical_integration_of_the_fits(method):
    la, lt = np.log10(RATE_A), np.log10(RATE_T)
    expected_rate = (10.0 ** reference_mean_difference(PSNR_A, la, PSNR_T, lt, method) - 1.0) * 100.0
    expected_metric = reference_mean_difference(la, PSNR_A, lt, PSNR_T, method)
    got_rate = bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T, method)
    got_metric = bd_metric(RATE_A, PSNR_A, RATE_T, PSNR_T, method)
    print(
        f"{method}: BD-rate {got_rate:.6f} % (quad {expected_rate:.6f}), "
        f"BD-PSNR {got_metric:.6f} dB (quad {expected_metric:.6f})"
    )
    assert got_rate == pytest.approx(expected_rate, abs=1e-8)
    assert got_metric == pytest.approx(expected_metric, abs=1e-9)
    assert got_rate < 0.0 < got_metric  # the test curve is better everywhere


def test_cubic_and_pchip_agree_on_smooth_data():
    # both interpolate the same smooth curve closely; their BD values differ by a small amount only
    cubic = bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T, "cubic")
    pchip = bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T, "pchip")
    assert abs(cubic - pchip) < 2.0


def test_no_overlap_gives_nan():
    assert math.isnan(bd_rate(RATE_A, PSNR_A, RATE_A, PSNR_A + 20.0))
    assert math.isnan(bd_metric(RATE_A, PSNR_A, RATE_A * 100.0, PSNR_A, "pchip"))


def test_input_validation():
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(RATE_A[:3], PSNR_A[:3], RATE_T, PSNR_T, "cubic")
    assert np.isfinite(bd_rate(RATE_A[:2], PSNR_A[:2], RATE_A[:2] * 0.8, PSNR_A[:2], "pchip"))
    with pytest.raises(ValueError, match="at least 2"):
        bd_metric(RATE_A[:1], PSNR_A[:1], RATE_T, PSNR_T, "pchip")
    with pytest.raises(ValueError, match="lengths differ"):
        bd_rate(RATE_A, PSNR_A[:4], RATE_T, PSNR_T)
    with pytest.raises(ValueError, match="> 0"):
        bd_rate(np.r_[0.0, RATE_A[1:]], PSNR_A, RATE_T, PSNR_T)
    with pytest.raises(ValueError, match="distinct"):
        bd_rate(RATE_A, np.r_[PSNR_A[:4], PSNR_A[3]], RATE_T, PSNR_T, "pchip")
    with pytest.raises(ValueError, match="method"):
        bd_rate(RATE_A, PSNR_A, RATE_T, PSNR_T, "akima")
