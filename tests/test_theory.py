"""Capacities, thresholds and the OPTA bound (simlink.theory.capacity) against closed forms,
independent 1-D numerical integration and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq

from simlink.theory import (
    QAM_ORDERS,
    awgn_capacity,
    bicm_capacity,
    gap_to_capacity_db,
    opta_distortion,
    qam_capacity,
    qam_constellation,
    rayleigh_ergodic_capacity,
    rayleigh_outage_capacity,
    snr_for_rate,
    threshold_snr,
)

# 256-QAM costs about 0.5 s per SNR: it is only evaluated at these (cached) SNRs.
SNR_256 = (-10.0, 10.0, 25.0, 40.0)


def pam_mi_quad(levels: np.ndarray, sigma2: float, labels: np.ndarray | None = None) -> float:
    """Independent reference: mutual information (bits per real channel use) of uniform PAM
    ``levels`` over real AWGN of variance ``sigma2``, by adaptive 1-D integration (scipy quad).

    ``labels`` None gives the coded-modulation value ``I(X; Y)``; integer labels give the BICM
    value ``sum_b I(B_b; Y)``.
    """
    levels = np.asarray(levels, dtype=np.float64)
    n_lv = levels.size
    sd = math.sqrt(sigma2)

    def expected(i: int, g) -> float:
        """``E_n[g(log-likelihoods of all levels given y = levels[i] + n)]`` for n ~ N(0, sigma2)."""

        def integrand(n: float) -> float:
            y = levels[i] + n
            ll = -((y - levels) ** 2) / (2.0 * sigma2)
            ll -= ll.max()
            return math.exp(-n * n / (2.0 * sigma2)) / math.sqrt(2.0 * math.pi * sigma2) * g(np.exp(ll), ll)

        return quad(integrand, -12.0 * sd, 12.0 * sd, limit=400, epsabs=1e-13, epsrel=1e-12)[0]

    if labels is None:
        # I = log2 L - E[log2(sum_j p(y|x_j) / p(y|x_i))]; with ll shifted, p(y|x_i) = exp(ll_i).
        return math.log2(n_lv) - sum(
            expected(i, lambda p, ll, i=i: math.log2(p.sum()) - ll[i] / math.log(2.0)) for i in range(n_lv)
        ) / n_lv
    n_bits = int(math.log2(n_lv))
    total = 0.0
    for b in range(n_bits):
        bit = (np.asarray(labels) >> b) & 1
        # I(B_b; Y) = 1 - E[log2(sum_j p(y|x_j) / sum_{j: b_j = b_i} p(y|x_j))]
        loss = sum(
            expected(i, lambda p, ll, same=bit == bit[i]: math.log2(p.sum() / p[same].sum())) for i in range(n_lv)
        )
        total += 1.0 - loss / n_lv
    return total


def square_qam_via_pam(order: int, snr_db: float, bicm: bool = False) -> float:
    """Square QAM = two independent sqrt(M)-PAMs (energy 1/2 each, noise N0/2 per dimension)."""
    side = math.isqrt(order)
    levels = (2 * np.arange(side) + 1 - side) / math.sqrt(2.0 * (order - 1) / 3.0)
    gray = np.arange(side) ^ (np.arange(side) >> 1)
    return 2.0 * pam_mi_quad(levels, 10.0 ** (-snr_db / 10.0) / 2.0, gray if bicm else None)


# --------------------------------------------------------------------------------------------
# AWGN


def test_awgn_capacity_values_and_shapes():
    assert awgn_capacity(0.0) == pytest.approx(1.0, abs=1e-15)
    assert awgn_capacity(10.0 * math.log10(3.0)) == pytest.approx(2.0, abs=1e-12)
    assert awgn_capacity(10.0 * math.log10(255.0)) == pytest.approx(8.0, abs=1e-12)
    assert awgn_capacity(-40.0) == pytest.approx(math.log2(1.0 + 1e-4), rel=1e-12)
    assert isinstance(awgn_capacity(3.0), float)
    grid = np.array([[0.0, 10.0], [20.0, 30.0]])
    out = awgn_capacity(grid)
    assert out.shape == grid.shape
    np.testing.assert_allclose(out, np.log2(1.0 + 10.0 ** (grid / 10.0)), rtol=1e-14)


# --------------------------------------------------------------------------------------------
# QAM


@pytest.mark.parametrize("order", QAM_ORDERS)
def test_qam_constellation_unit_energy_and_gray(order):
    points, labels = qam_constellation(order)
    assert points.shape == labels.shape == (order,)
    assert np.mean(np.abs(points) ** 2) == pytest.approx(1.0, abs=1e-14)
    assert sorted(labels.tolist()) == list(range(order))
    dmin = np.min(np.abs(points[:, None] - points[None, :])[~np.eye(order, dtype=bool)])
    for i in range(order):
        neighbours = np.flatnonzero(np.abs(np.abs(points - points[i]) - dmin) < 1e-12)
        assert neighbours.size >= 2
        for j in neighbours:
            assert bin(int(labels[i] ^ labels[j])).count("1") == 1


@pytest.mark.parametrize("order", QAM_ORDERS)
def test_qam_capacity_high_and_low_snr(order):
    m = math.log2(order)
    assert qam_capacity(order, 40.0) == pytest.approx(m, abs=1e-3)
    low = qam_capacity(order, -10.0)
    assert low == pytest.approx(awgn_capacity(-10.0), rel=0.02)
    assert low <= awgn_capacity(-10.0)


@pytest.mark.parametrize("order", QAM_ORDERS)
def test_qam_capacity_below_awgn_and_monotone(order):
    snr = np.array(SNR_256) if order == 256 else np.arange(-10.0, 41.0, 2.5)
    cap = qam_capacity(order, snr)
    assert cap.shape == snr.shape
    assert np.all(cap <= awgn_capacity(snr) + 1e-12)
    assert np.all(cap <= math.log2(order) + 1e-12)
    assert np.all(np.diff(cap) >= -1e-12)
    # strictly increasing until it saturates at log2 M
    rising = cap[:-1] < math.log2(order) - 1e-6
    assert np.all(np.diff(cap)[rising] > 0.0)


@pytest.mark.parametrize("snr_db", [-10.0, -3.0, 0.0, 3.0, 6.0, 10.0, 15.0])
def test_qpsk_is_two_bpsk_at_half_snr(snr_db):
    """4-QAM = two independent BPSK with Es/2 each: C_4QAM(s) = 2 C_BPSK(s - 3.01 dB), where the
    BPSK capacity (±1 over complex AWGN, only the real noise N0/2 matters) is computed here by
    adaptive 1-D integration, independently of the 2-D Gauss-Hermite code."""
    half = snr_db - 10.0 * math.log10(2.0)
    bpsk = pam_mi_quad(np.array([-1.0, 1.0]), 10.0 ** (-half / 10.0) / 2.0)
    assert qam_capacity(4, snr_db) == pytest.approx(2.0 * bpsk, abs=1e-4)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_16qam_against_two_4pam(snr_db):
    cm = qam_capacity(16, snr_db)
    ref = square_qam_via_pam(16, snr_db)
    print(f"16-QAM CM capacity at {snr_db:g} dB: {cm:.6f} bits (1-D quad reference {ref:.6f})")
    assert cm == pytest.approx(ref, abs=1e-4)


def test_bicm_capacity():
    snr = np.array([-5.0, 0.0, 5.0, 10.0])
    np.testing.assert_allclose(bicm_capacity(4, snr), qam_capacity(4, snr), atol=1e-12)  # Gray QPSK
    for order in (16, 64):
        grid = np.arange(-10.0, 31.0, 5.0)
        assert np.all(bicm_capacity(order, grid) <= qam_capacity(order, grid) + 1e-12)
    # the Gray-BICM loss of 16-QAM at 0 dB is real (~0.09 bit) and matches the 1-D reference
    ref = square_qam_via_pam(16, 0.0, bicm=True)
    print(f"16-QAM BICM capacity at 0 dB: {bicm_capacity(16, 0.0):.6f} bits (1-D quad reference {ref:.6f})")
    assert bicm_capacity(16, 0.0) == pytest.approx(ref, abs=1e-4)
    assert qam_capacity(16, 0.0) - bicm_capacity(16, 0.0) > 0.05
    assert bicm_capacity(256, 40.0) == pytest.approx(8.0, abs=1e-3)


def test_qam_rejects_unsupported_order():
    with pytest.raises(ValueError, match="QAM order"):
        qam_capacity(8, 10.0)


# --------------------------------------------------------------------------------------------
# Rayleigh


@pytest.fixture(scope="module")
def rayleigh_gains() -> np.ndarray:
    """1e6 samples of |h|^2 for h ~ CN(0, 1)."""
    rng = np.random.default_rng(2024)
    h = (rng.standard_normal(1_000_000) + 1j * rng.standard_normal(1_000_000)) / math.sqrt(2.0)
    return np.abs(h) ** 2


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 10.0, 20.0, 30.0])
def test_rayleigh_ergodic_against_monte_carlo(snr_db, rayleigh_gains):
    closed = rayleigh_ergodic_capacity(snr_db)
    mc = float(np.mean(np.log2(1.0 + rayleigh_gains * 10.0 ** (snr_db / 10.0))))
    print(f"ergodic Rayleigh at {snr_db:g} dB: closed form {closed:.5f}, Monte Carlo {mc:.5f}")
    assert closed == pytest.approx(mc, rel=5e-3)
    assert closed < awgn_capacity(snr_db)  # Jensen


def test_rayleigh_ergodic_extremes():
    # low SNR: E[log(1 + gS)] = S - E[g^2] S^2 / 2 + E[g^3] S^3 / 3 - ... = S - S^2 + 2 S^3 - ...
    s = 1e-5
    assert rayleigh_ergodic_capacity(-50.0) == pytest.approx((s - s * s + 2 * s**3) / math.log(2.0), rel=1e-12)
    # both sides of the switch to the asymptotic series (1/SNR = 50) agree
    edge = -10.0 * math.log10(50.0)
    below, above = rayleigh_ergodic_capacity(np.array([edge - 1e-9, edge + 1e-9]))
    assert below == pytest.approx(above, rel=1e-9)
    # high SNR: e^x E1(x) = -gamma - ln x + x (1 - gamma - ln x) + O(x^2 ln x) for x = 1/SNR -> 0
    snr = 1e6
    lead = math.log(snr) - np.euler_gamma
    assert rayleigh_ergodic_capacity(60.0) == pytest.approx((lead + (lead + 1.0) / snr) / math.log(2.0), abs=1e-9)


@pytest.mark.parametrize("outage", [0.01, 0.1, 0.5])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_rayleigh_outage_against_monte_carlo(outage, snr_db, rayleigh_gains):
    rate = rayleigh_outage_capacity(snr_db, outage)
    rates = np.log2(1.0 + rayleigh_gains * 10.0 ** (snr_db / 10.0))
    frac = float(np.mean(rates < rate))
    sigma = math.sqrt(outage * (1.0 - outage) / rates.size)
    assert abs(frac - outage) < 5.0 * sigma
    quantile = float(np.quantile(rates, outage))
    assert rate == pytest.approx(quantile, rel=0.03)
    assert rate < rayleigh_ergodic_capacity(snr_db) or outage == 0.5


def test_rayleigh_outage_rejects_bad_probability():
    with pytest.raises(ValueError, match="outage"):
        rayleigh_outage_capacity(10.0, 1.0)


# --------------------------------------------------------------------------------------------
# Thresholds and gaps


def test_snr_for_rate_inverts_awgn():
    rates = np.array([0.25, 1.0, 2.0, 4.0, 8.0])
    np.testing.assert_allclose(snr_for_rate(awgn_capacity, rates), 10.0 * np.log10(2.0**rates - 1.0), atol=1e-5)
    assert math.isnan(snr_for_rate(lambda s: qam_capacity(16, s), 4.0))  # log2 M is never reached
    assert math.isnan(snr_for_rate(awgn_capacity, 0.0, lo=0.0))  # below the bracket


def test_gap_to_capacity_against_independent_limit():
    # rate-2/3 coded 16-QAM carries 8/3 bit per channel use; find its SNR limit on the 1-D reference
    target = 2.0 / 3.0 * 4.0
    limit = brentq(lambda s: square_qam_via_pam(16, s) - target, 0.0, 20.0, xtol=1e-6)
    print(f"16-QAM constrained-capacity limit for rate 2/3: {limit:.4f} dB Es/N0")
    gaps = gap_to_capacity_db(np.array([limit + 1.0, limit + 2.5]), 16, 2.0 / 3.0)
    np.testing.assert_allclose(gaps, [1.0, 2.5], atol=2e-3)
    assert 7.0 < limit < 9.0


def test_threshold_snr_synthetic_curve():
    snr = np.arange(0.0, 13.0, 1.5)
    bler = np.minimum(1.0, 10.0 ** (-(snr - 5.0) / 2.0))  # log-linear: crosses 1e-2 at 9 dB
    assert threshold_snr(snr, bler, 1e-2) == pytest.approx(9.0, abs=1e-12)
    assert threshold_snr(snr, bler, 1e-1) == pytest.approx(7.0, abs=1e-12)
    shuffled = np.random.default_rng(0).permutation(snr.size)
    assert threshold_snr(snr[shuffled], bler[shuffled]) == pytest.approx(9.0, abs=1e-12)
    assert math.isnan(threshold_snr(snr, bler, 1e-6))  # never reached
    assert math.isnan(threshold_snr(snr + 20.0, np.full(snr.size, 1e-3)))  # already below everywhere
    assert threshold_snr([0.0, 3.0, 6.0], [1.0, 0.5, 0.0]) == 6.0  # zero BLER: conservative
    assert threshold_snr([0.0, 3.0, 6.0], [1.0, 1e-2, 1e-4]) == 3.0  # exact hit
    with pytest.raises(ValueError):
        threshold_snr([0.0, 1.0], [0.5])


# --------------------------------------------------------------------------------------------
# OPTA


def test_opta_distortion_synthetic_rd_curve():
    bpp = np.array([0.25, 0.5, 1.0, 2.0])
    psnr = np.array([25.0, 28.0, 31.0, 34.0])
    cpp = 0.5  # channel uses per pixel
    cap_nodes = bpp / cpp
    np.testing.assert_allclose(opta_distortion(bpp, psnr, cpp, cap_nodes), psnr, atol=1e-12)
    mids = (cap_nodes[:-1] + cap_nodes[1:]) / 2.0
    np.testing.assert_allclose(opta_distortion(bpp, psnr, cpp, mids, method="linear"), (psnr[:-1] + psnr[1:]) / 2.0)
    inner = opta_distortion(bpp, psnr, cpp, mids)
    assert np.all((inner > psnr[:-1]) & (inner < psnr[1:]))
    assert math.isnan(opta_distortion(bpp, psnr, cpp, 0.49))  # 0.245 bpp: below the codec's range
    assert opta_distortion(bpp, psnr, cpp, 10.0) == 34.0  # above the range: best measured point
    # unsorted input and a non-monotone (noisy) point: the running maximum is used
    # (sorted: 25, 24, 31, 34 -> envelope 25, 25, 31, 34; 0.75 bpp lies midway between 0.5 and 1)
    assert opta_distortion(bpp[::-1], [34.0, 31.0, 24.0, 25.0], cpp, 1.5, method="linear") == pytest.approx(28.0)
    # vectorised over capacity, monotone in SNR through the AWGN capacity
    snr = np.linspace(-5.0, 15.0, 41)
    curve = opta_distortion(bpp, psnr, cpp, awgn_capacity(snr))
    assert curve.shape == snr.shape
    finite = curve[np.isfinite(curve)]
    assert finite.size > 10 and np.all(np.diff(finite) >= 0.0)
    assert np.all(np.isnan(curve[: np.argmax(np.isfinite(curve))]))
