"""Channel capacities, thresholds and the separation (OPTA) bound.

Conventions (as in :mod:`simlink.phy.snr`):

* SNR arguments ``snr_db`` are **Es/N0 in dB per complex channel use**. Symbols have unit
  average energy (``Es = 1``), so the complex noise variance is ``N0 = 10^(-snr_db / 10)``
  (``N0 / 2`` per real dimension).
* Capacities are in **bits per complex channel use**.
* Functions taking ``snr_db`` accept a scalar or an array and return a ``float`` for a scalar
  and a ``float64`` array of the same shape otherwise.

Contents:

* :func:`awgn_capacity` — Gaussian-input capacity ``log2(1 + SNR)``.
* :func:`qam_constellation`, :func:`qam_capacity`, :func:`bicm_capacity` — constrained
  (coded-modulation) and bit-interleaved (BICM) mutual information of uniform square Gray QAM,
  by 2-D Gauss-Hermite quadrature.
* :func:`rayleigh_ergodic_capacity`, :func:`rayleigh_outage_capacity` — Gaussian input over
  flat Rayleigh fading with perfect receiver CSI.
* :func:`snr_for_rate`, :func:`threshold_snr`, :func:`gap_to_capacity_db` — where curves cross.
* :func:`opta_distortion` — best metric of a separated source/channel scheme (OPTA bound).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq
from scipy.special import exp1

QAM_ORDERS = (4, 16, 64, 256)
"""Square QAM orders supported by :func:`qam_capacity` / :func:`bicm_capacity`."""

GH_POINTS = 32
"""Default Gauss-Hermite nodes per real dimension (``GH_POINTS**2`` noise samples)."""

_SNR_KEY_DECIMALS = 9
"""SNRs (dB) are rounded to this many decimals to key the quadrature cache."""

_CHUNK_ELEMENTS = 2_000_000
"""Approximate float64 elements per quadrature work array (bounds memory to ~16 MB)."""

_EXP1_ASYMPTOTIC_FROM = 50.0
"""``exp(x) E1(x)`` uses its asymptotic series for ``x`` above this (``exp(x)`` would overflow)."""


def _db_to_linear(snr_db) -> np.ndarray:
    """``10^(snr_db / 10)`` as float64 (array of the input's shape)."""
    return 10.0 ** (np.asarray(snr_db, dtype=np.float64) / 10.0)


def _like_input(out: np.ndarray):
    """Return ``float`` for 0-d results, the float64 array otherwise."""
    out = np.asarray(out, dtype=np.float64)
    return float(out) if out.ndim == 0 else out


def _map_scalar(fn, values):
    """Apply the scalar function ``fn`` element-wise to ``values`` (scalar or array)."""
    arr = np.asarray(values, dtype=np.float64)
    out = np.array([fn(float(v)) for v in arr.ravel()], dtype=np.float64).reshape(arr.shape)
    return _like_input(out)


# --------------------------------------------------------------------------------------------
# Gaussian input


def awgn_capacity(snr_db):
    """Shannon capacity of the complex AWGN channel, ``log2(1 + SNR)``.

    Inputs: ``snr_db`` Es/N0 in dB per complex channel use (scalar or array).
    Output: bits per complex channel use, float or float64 array of the input's shape.
    """
    return _like_input(np.log1p(_db_to_linear(snr_db)) / math.log(2.0))


def _exp_e1(x: np.ndarray) -> np.ndarray:
    """``exp(x) * E1(x)`` for ``x > 0`` without overflow (asymptotic series for large ``x``).

    For ``x > 50`` uses ``sum_{k=0}^{15} (-1)^k k! / x^(k+1)``, whose truncation error is below
    ``16! / x^17 < 3e-16 / x`` there.
    """
    x = np.asarray(x, dtype=np.float64)
    small = x <= _EXP1_ASYMPTOTIC_FROM
    xs = np.where(small, x, 1.0)
    direct = np.exp(xs) * exp1(xs)
    xl = np.where(small, _EXP1_ASYMPTOTIC_FROM + 1.0, x)
    series = np.zeros_like(xl)
    term = 1.0 / xl
    for k in range(16):
        series = series + term
        term = -term * (k + 1) / xl
    return np.where(small, direct, series)


def rayleigh_ergodic_capacity(snr_db):
    """Ergodic capacity of flat Rayleigh fading with receiver CSI and Gaussian input.

    ``C = E[log2(1 + |h|^2 SNR)]`` with ``|h|^2 ~ Exp(1)`` (unit mean power gain), in closed form
    ``log2(e) * exp(1/SNR) * E1(1/SNR)`` (``E1`` the exponential integral). By Jensen's
    inequality it is below :func:`awgn_capacity` at the same average SNR.

    Inputs: ``snr_db`` average Es/N0 in dB per complex channel use (scalar or array).
    Output: bits per complex channel use, float or float64 array of the input's shape.
    """
    return _like_input(_exp_e1(1.0 / _db_to_linear(snr_db)) / math.log(2.0))


def rayleigh_outage_capacity(snr_db, outage):
    """Outage capacity of flat Rayleigh fading (block fading, Gaussian input, receiver CSI).

    The rate ``R`` with ``P(log2(1 + |h|^2 SNR) < R) = outage`` for ``|h|^2 ~ Exp(1)``:
    ``R = log2(1 - SNR * ln(1 - outage))``.

    Inputs (broadcastable): ``snr_db`` average Es/N0 in dB per complex channel use;
    ``outage`` probability in ``(0, 1)``.
    Output: bits per complex channel use, float or float64 array of the broadcast shape.
    """
    eps = np.asarray(outage, dtype=np.float64)
    if np.any((eps <= 0.0) | (eps >= 1.0)):
        raise ValueError(f"outage must lie in (0, 1); got {outage}")
    gain = -np.log1p(-eps)  # the outage quantile of |h|^2 ~ Exp(1)
    return _like_input(np.log1p(_db_to_linear(snr_db) * gain) / math.log(2.0))


# --------------------------------------------------------------------------------------------
# Square QAM


def _check_order(order: int) -> int:
    if int(order) not in QAM_ORDERS:
        raise ValueError(f"QAM order must be one of {QAM_ORDERS}; got {order}")
    return int(order)


def qam_constellation(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform square M-QAM with unit average energy and Gray labels.

    Per axis the levels are ``2k + 1 - sqrt(M)`` for ``k = 0..sqrt(M)-1``, scaled by
    ``1 / sqrt(2 (M - 1) / 3)`` so that ``mean |x|^2 = 1``. Symbol ``s = kI * sqrt(M) + kQ`` has
    the label ``gray(kI) << (log2(M) / 2) | gray(kQ)`` with ``gray(k) = k ^ (k >> 1)`` (binary
    reflected Gray code per axis, so neighbouring points differ in one bit).

    Inputs: ``order`` M in :data:`QAM_ORDERS`.
    Output: ``(points, labels)``: ``complex128[M]`` points and ``int64[M]`` labels in ``0..M-1``.
    """
    order = _check_order(order)
    side = math.isqrt(order)
    k = np.arange(side)
    levels = (2 * k + 1 - side) / math.sqrt(2.0 * (order - 1) / 3.0)
    ki, kq = np.divmod(np.arange(order), side)
    points = levels[ki] + 1j * levels[kq]
    gray = k ^ (k >> 1)
    labels = (gray[ki] << (int(math.log2(order)) // 2)) | gray[kq]
    return points, labels.astype(np.int64)


def _gauss_hermite_2d(points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``t`` (complex, ``[points**2]``) and weights (sum 1) with
    ``E[f(n)] ~ sum_k w_k f(sqrt(N0) t_k)`` for ``n ~ CN(0, N0)``."""
    t, w = np.polynomial.hermite.hermgauss(points)
    nodes = (t[:, None] + 1j * t[None, :]).ravel()
    weights = (w[:, None] * w[None, :]).ravel() / math.pi
    return nodes, weights


@lru_cache(maxsize=4096)
def _qam_mi(order: int, snr_key: float, points: int, bicm: bool) -> float:
    """Cached quadrature behind :func:`qam_capacity` (``bicm=False``) and
    :func:`bicm_capacity` (``bicm=True``); ``snr_key`` is the rounded Es/N0 in dB.

    With ``d_ij = x_i - x_j`` and ``n = sqrt(N0) t``, the log-likelihood ratio terms are
    ``L_ij(n) = -(|x_i + n - x_j|^2 - |n|^2) / N0 = -|d_ij|^2 / N0 - 2 Re(d_ij conj(t)) / sqrt(N0)``.
    CM: ``I = log2 M - mean_i E_n[log2 sum_j exp L_ij]``.
    BICM: ``sum_b (1 - mean_i E_n[log2(sum_j exp L_ij / sum_{j: b_j = b_i} exp L_ij)])``.
    Only the first-quadrant symbols are averaged: reflections ``x -> -conj(x)``, ``x -> conj(x)``
    map the constellation, the Gaussian noise, the symmetric Gauss-Hermite rule and the
    reflected Gray labels (up to complementing one bit) onto themselves, so every quadrant
    gives the same average.
    """
    x, labels = qam_constellation(order)
    m = int(math.log2(order))
    side = math.isqrt(order)
    n0 = 10.0 ** (-snr_key / 10.0)
    nodes, weights = _gauss_hermite_2d(points)
    ki, kq = np.divmod(np.arange(order), side)
    tx = np.flatnonzero((ki >= side // 2) & (kq >= side // 2))
    bits = (labels[:, None] >> np.arange(m)[None, :]) & 1  # [M, m]
    # Columns: all symbols, then for each bit b the symbols with b = 0 and with b = 1.
    subsets = np.concatenate([np.ones((order, 1)), 1.0 - bits, bits], axis=1)  # [M, 1 + 2m]
    tr = (-2.0 / math.sqrt(n0) * nodes.real)[:, None]  # [K, 1]
    ti = (-2.0 / math.sqrt(n0) * nodes.imag)[:, None]
    chunk = max(1, _CHUNK_ELEMENTS // (order * nodes.size))
    total = 0.0
    for start in range(0, tx.size, chunk):
        idx = tx[start : start + chunk]
        d = x[idx, None, None] - x[None, None, :]  # [c, 1, M]
        llr = (d.real * tr + d.imag * ti) - (np.abs(d) ** 2) / n0  # [c, K, M]
        # llr <= |t|^2 <= 2 max(node)^2 and llr_ii = 0, so after subtracting the max every
        # subset containing x_i sums to at least exp(-2 max(node)^2) > 0: no underflow to 0.
        top = llr.max(axis=2)  # [c, K]
        llr -= top[:, :, None]
        np.exp(llr, out=llr)
        sums = (llr.reshape(-1, order) @ subsets).reshape(idx.size, nodes.size, -1)  # [c, K, 1+2m]
        log_all = np.log(sums[..., 0])
        if not bicm:
            total += float(((top + log_all) @ weights).sum())
            continue
        own = 1 + m * bits[idx] + np.arange(m)  # [c, m]: column of "bit b equal to x_i's"
        log_same = np.log(np.take_along_axis(sums, own[:, None, :], axis=2))  # [c, K, m]
        total += float(((log_all[..., None] - log_same).sum(axis=2) @ weights).sum())
    return m - total / (tx.size * math.log(2.0))


def _snr_key(snr_db: float) -> float:
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite; got {snr_db}")
    return round(snr_db, _SNR_KEY_DECIMALS)


def qam_capacity(order: int, snr_db, points: int = GH_POINTS):
    """Constrained (coded-modulation) capacity of uniform square M-QAM over complex AWGN.

    ``I(X; Y)`` for ``X`` uniform on :func:`qam_constellation` and ``Y = X + N``,
    ``N ~ CN(0, N0)``, evaluated by 2-D Gauss-Hermite quadrature with ``points`` nodes per real
    dimension (with the default 32 the quadrature error stays below about 5e-5 bits for all
    supported orders and SNRs, checked against adaptive 1-D integration of the equivalent pair
    of PAM channels). Results are cached
    per ``(order, snr_db rounded to 1e-9 dB, points)``. It lies below :func:`awgn_capacity`
    and tends to ``log2 M`` at high SNR.

    Inputs: ``order`` M in :data:`QAM_ORDERS`; ``snr_db`` Es/N0 in dB per complex channel use
    (scalar or array); ``points`` quadrature nodes per dimension.
    Output: bits per complex channel use, float or float64 array of ``snr_db``'s shape.
    """
    order = _check_order(order)
    return _map_scalar(lambda s: _qam_mi(order, _snr_key(s), int(points), False), snr_db)


def bicm_capacity(order: int, snr_db, points: int = GH_POINTS):
    """BICM capacity (sum of bit-wise mutual informations) of uniform square Gray M-QAM over
    complex AWGN: ``sum_b I(B_b; Y)`` for the labels of :func:`qam_constellation`.

    It is at most :func:`qam_capacity` (equal for 4-QAM, whose two Gray bits ride on
    independent axes). Same inputs, quadrature, caching and output as :func:`qam_capacity`.
    """
    order = _check_order(order)
    return _map_scalar(lambda s: _qam_mi(order, _snr_key(s), int(points), True), snr_db)


# --------------------------------------------------------------------------------------------
# Thresholds and gaps


def snr_for_rate(capacity_fn, rate, lo: float = -30.0, hi: float = 60.0, xtol: float = 1e-6):
    """Es/N0 (dB) at which an increasing capacity curve reaches ``rate``.

    Solves ``capacity_fn(snr_db) = rate`` on ``[lo, hi]`` by Brent's method (bracketing, so as
    safe as bisection, in far fewer capacity evaluations).

    Inputs: ``capacity_fn`` maps a scalar Es/N0 in dB to bits per complex channel use and is
    increasing; ``rate`` bits per complex channel use (scalar or array); ``lo``, ``hi`` the
    search bracket in dB; ``xtol`` the absolute tolerance in dB.
    Output: Es/N0 in dB (float or float64 array of ``rate``'s shape); NaN unless
    ``capacity_fn(lo) <= rate < capacity_fn(hi)`` (e.g. for ``rate >= log2 M`` with M-QAM, whose
    capacity only approaches ``log2 M``).
    """

    def solve(r: float) -> float:
        f_lo = float(capacity_fn(lo)) - r
        f_hi = float(capacity_fn(hi)) - r
        if f_lo > 0.0 or f_hi <= 0.0:
            return math.nan
        if f_lo == 0.0:
            return float(lo)
        return float(brentq(lambda s: float(capacity_fn(s)) - r, lo, hi, xtol=xtol))

    return _map_scalar(solve, rate)


def threshold_snr(snr_db, bler, target: float = 1e-2) -> float:
    """SNR at which a measured BLER-vs-SNR curve first falls to ``target``.

    The points are sorted by SNR; the first point with ``BLER <= target`` and its predecessor
    bracket the crossing, which is interpolated linearly in ``(snr_db, log10 BLER)``. A BLER of
    exactly 0 (no block error observed) has no logarithm: the crossing is then reported at that
    point's SNR (a conservative, i.e. upper, estimate).

    Inputs: ``snr_db`` float[n] Es/N0 in dB; ``bler`` float[n] block error rates in ``[0, 1]``,
    (mostly) decreasing with SNR; ``target`` BLER in ``(0, 1)``.
    Output: Es/N0 in dB (float); NaN if the curve never reaches ``target`` or is already at or
    below it at the lowest SNR without an exact hit (the crossing is outside the measured range).
    """
    snr = np.asarray(snr_db, dtype=np.float64).ravel()
    b = np.asarray(bler, dtype=np.float64).ravel()
    if snr.shape != b.shape or snr.size == 0:
        raise ValueError(f"snr_db and bler must be non-empty and equally long; got {snr.size}, {b.size}")
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must lie in (0, 1); got {target}")
    order = np.argsort(snr, kind="stable")
    snr, b = snr[order], b[order]
    below = np.flatnonzero(b <= target)
    if below.size == 0:
        return math.nan
    k = int(below[0])
    if b[k] == target:
        return float(snr[k])
    if k == 0:
        return math.nan
    if b[k] == 0.0:
        return float(snr[k])
    y0, y1, yt = np.log10(b[k - 1]), np.log10(b[k]), math.log10(target)
    return float(snr[k - 1] + (yt - y0) / (y1 - y0) * (snr[k] - snr[k - 1]))


def gap_to_capacity_db(threshold_db, order: int, code_rate: float, points: int = GH_POINTS):
    """Gap (dB) between a coded-modulation threshold and the QAM constrained-capacity limit.

    ``threshold_db - s*`` where ``qam_capacity(order, s*) = code_rate * log2(order)``.

    Inputs: ``threshold_db`` Es/N0 in dB (scalar or array, e.g. from :func:`threshold_snr`);
    ``order`` M in :data:`QAM_ORDERS`; ``code_rate`` in ``(0, 1)`` information bits per coded
    bit; ``points`` quadrature nodes as in :func:`qam_capacity`.
    Output: dB, float or float64 array of ``threshold_db``'s shape.
    """
    if not 0.0 < code_rate < 1.0:
        raise ValueError(f"code_rate must lie in (0, 1); got {code_rate}")
    limit = snr_for_rate(lambda s: qam_capacity(order, s, points), code_rate * math.log2(_check_order(order)))
    return _like_input(np.asarray(threshold_db, dtype=np.float64) - limit)


# --------------------------------------------------------------------------------------------
# Separation bound


def opta_distortion(rd_bpp, rd_metric, cpp, capacity, method: str = "pchip"):
    """Optimal performance theoretically attainable (OPTA) by separate source and channel coding.

    A channel of ``capacity`` bits per channel use, used ``cpp`` times per pixel, carries at most
    ``R = cpp * capacity`` bits per pixel error-free (source-channel separation theorem), so the
    best metric a given codec can reach is its rate-metric curve at ``R``. The codec curve is
    first made non-decreasing (running maximum over rate: a lower-rate operating point can
    always be used), then interpolated in rate by ``method``: ``"pchip"`` (monotone piecewise
    cubic, scipy's PchipInterpolator) or ``"linear"``.

    Inputs: ``rd_bpp`` float[n] codec rates in bits per pixel (distinct, n >= 2; sorted here);
    ``rd_metric`` float[n] quality at those rates (higher is better, e.g. PSNR in dB);
    ``cpp`` channel uses per pixel; ``capacity`` bits per channel use (e.g. from
    :func:`awgn_capacity`); ``cpp`` and ``capacity`` broadcast (scalars or arrays).
    Output: metric, float or float64 array of the broadcast shape: NaN where ``R`` is below the
    lowest measured rate, the highest metric where it is above the highest measured rate.
    """
    r = np.asarray(rd_bpp, dtype=np.float64).ravel()
    q = np.asarray(rd_metric, dtype=np.float64).ravel()
    if r.shape != q.shape or r.size < 2:
        raise ValueError(f"need at least 2 rate-metric points of equal count; got {r.size}, {q.size}")
    order = np.argsort(r, kind="stable")
    r, q = r[order], np.maximum.accumulate(q[order])
    if np.any(np.diff(r) <= 0.0):
        raise ValueError("rd_bpp values must be distinct")
    if method == "pchip":
        curve = PchipInterpolator(r, q, extrapolate=False)
    elif method == "linear":
        curve = lambda v: np.interp(v, r, q)  # noqa: E731
    else:
        raise ValueError(f"method must be 'pchip' or 'linear'; got {method!r}")
    rate = np.asarray(cpp, dtype=np.float64) * np.asarray(capacity, dtype=np.float64)
    inside = np.clip(rate, r[0], r[-1])
    out = np.where(rate < r[0], np.nan, np.where(rate > r[-1], q[-1], curve(inside)))
    return _like_input(out)
