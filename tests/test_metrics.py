"""Tests for image quality metrics and confidence intervals (simlink.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, stats
from skimage.metrics import structural_similarity

from simlink.metrics import MS_SSIM_WEIGHTS, PSNR_MAX_DB, mean_ci, ms_ssim, ms_ssim_scales, proportion_ci, psnr, ssim


def structured(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """``uint8[n, h, w, 3]``: gradients, a bright rectangle, a sinusoid, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        img = np.empty((h, w, 3))
        for c in range(3):
            a, b = rng.uniform(-2, 2, 2)
            img[..., c] = 120 + a * xx + b * yy + 40 * np.sin(xx / rng.uniform(2, 6) + c)
        img[h // 4 : h // 2, w // 3 : 2 * w // 3] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 3, img.shape)
        out[i] = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return out


def noisy(x: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(x + rng.normal(0, sigma, x.shape)), 0, 255).astype(np.uint8)


def sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)


# ---------------------------------------------------------------------------------------- PSNR


def test_psnr_constant_offset_closed_form():
    x = np.random.default_rng(0).integers(10, 240, (3, 20, 30, 3), dtype=np.uint8)
    for offset in (1, 5, 10):
        got = psnr(x, x + np.uint8(offset))
        np.testing.assert_allclose(got, 20 * np.log10(255.0 / offset), rtol=0, atol=1e-12)
    got = psnr(x, x + np.uint8(7), data_range=1.0)
    np.testing.assert_allclose(got, 20 * np.log10(1.0 / 7), atol=1e-12)


def test_psnr_identical_is_capped():
    x = structured(2, 16, 16, seed=1)
    np.testing.assert_array_equal(psnr(x, x), [PSNR_MAX_DB, PSNR_MAX_DB])
    assert PSNR_MAX_DB == 100.0


def test_psnr_single_image_and_shape_errors():
    x = structured(1, 16, 16, seed=2)
    y = noisy(x, 5)
    assert psnr(x[0], y[0]).shape == (1,)
    np.testing.assert_allclose(psnr(x[0], y[0]), psnr(x, y))
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, y[:, :8])
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        psnr(x[0, 0], y[0, 0])


# ---------------------------------------------------------------------------------------- SSIM


def test_ssim_identity_is_one():
    x = structured(2, 32, 40, seed=3)
    np.testing.assert_allclose(ssim(x, x), 1.0, atol=1e-12)
    np.testing.assert_allclose(ms_ssim(x, x), 1.0, atol=1e-12)


@pytest.mark.parametrize("shape", [(32, 32), (40, 57), (11, 11), (64, 48)])
def test_ssim_matches_skimage(shape):
    rng = np.random.default_rng(4)
    rand_x = rng.integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    rand_y = rng.integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    struct_x = structured(2, *shape, seed=5)
    for x, y in [(rand_x, rand_y), (struct_x, noisy(struct_x, 12)), (struct_x, structured(2, *shape, seed=6))]:
        ours = ssim(x, y)
        ref = np.array([sk_ssim(a, b) for a, b in zip(x, y)])
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


def test_ssim_too_small_raises():
    x = np.zeros((1, 10, 20, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="11x11"):
        ssim(x, x)
    with pytest.raises(ValueError, match="11x11"):
        ms_ssim(x, x)


# ------------------------------------------------------------------------------------- MS-SSIM


@pytest.mark.parametrize(("side", "m"), [(11, 1), (21, 1), (22, 2), (32, 2), (44, 3), (64, 3), (175, 4), (176, 5), (512, 5)])
def test_ms_ssim_scale_count(side, m):
    assert ms_ssim_scales(side, 2 * side) == m
    assert ms_ssim_scales(2 * side, side) == m


def test_ms_ssim_one_scale_equals_ssim():
    x = structured(3, 32, 32, seed=7)
    y = noisy(x, 10)
    np.testing.assert_allclose(ms_ssim(x, y, scales=1), ssim(x, y), atol=1e-12)
    small_x, small_y = x[:, :16, :20], y[:, :16, :20]  # too small for 2 scales
    np.testing.assert_allclose(ms_ssim(small_x, small_y), ssim(small_x, small_y), atol=1e-12)
    with pytest.raises(ValueError, match="scales"):
        ms_ssim(x, y, scales=3)


def _ref_ms_ssim(a: np.ndarray, b: np.ndarray, m: int) -> float:
    """Independent scipy implementation (skimage-style Gaussian filter, cropped borders)."""
    w = np.array(MS_SSIM_WEIGHTS[:m])
    w = w / w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    per_channel = []
    for c in range(3):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        terms = []
        for j in range(m):
            f = lambda z: ndimage.gaussian_filter(z, 1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731
            mx, my = f(x), f(y)
            vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
            cs = (2 * cxy + c2) / (vx + vy + c2)
            lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            terms.append((lum * cs).mean() if j == m - 1 else cs.mean())
            h2, w2 = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
            x = x[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3))
            y = y[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3))
        per_channel.append(np.prod(np.maximum(terms, 0.0) ** w))
    return float(np.mean(per_channel))


@pytest.mark.parametrize("shape", [(32, 32), (45, 70)])
def test_ms_ssim_matches_reference(shape):
    x = structured(2, *shape, seed=8)
    y = noisy(x, 15)
    m = ms_ssim_scales(*shape)
    ref = [_ref_ms_ssim(a, b, m) for a, b in zip(x, y)]
    np.testing.assert_allclose(ms_ssim(x, y), ref, rtol=0, atol=1e-9)


def test_quality_monotone_under_noise():
    x = structured(1, 64, 64, seed=9)
    sigmas = [2, 5, 10, 20, 40]
    ys = [noisy(x, s, seed=1) for s in sigmas]
    for metric in (psnr, ssim, ms_ssim):
        vals = [metric(x, y)[0] for y in ys]
        assert np.all(np.diff(vals) < 0), (metric.__name__, vals)


@pytest.mark.parametrize("metric", [psnr, ssim, ms_ssim])
def test_batch_equals_per_image(metric):
    x = structured(5, 48, 40, seed=10)
    y = noisy(x, 8)
    batched = metric(x, y, batch_size=2)
    single = np.array([metric(a, b)[0] for a, b in zip(x, y)])
    assert batched.shape == (5,) and batched.dtype == np.float64
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------- stats


def test_mean_ci_student_t():
    v = np.array([31.2, 29.8, 30.5, 33.1, 28.7, 30.0, 32.4])
    mean, half = mean_ci(v)
    n = len(v)
    expected = stats.t.ppf(0.975, n - 1) * np.std(v, ddof=1) / math.sqrt(n)
    assert mean == pytest.approx(v.mean(), abs=1e-12)
    assert half == pytest.approx(expected, rel=1e-12)
    _, half90 = mean_ci(v, confidence=0.90)
    assert half90 == pytest.approx(stats.t.ppf(0.95, n - 1) * np.std(v, ddof=1) / math.sqrt(n), rel=1e-12)


def test_mean_ci_edge_cases():
    mean, half = mean_ci([4.5])
    assert mean == 4.5 and math.isnan(half)
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])
    with pytest.raises(ValueError, match="finite"):
        mean_ci([1.0, float("inf")])
    with pytest.raises(ValueError, match="finite"):
        mean_ci([1.0, float("nan")])


def test_wilson_interval_by_hand():
    z = 1.959963984540054  # 97.5 % normal quantile
    for k, n in [(8, 10), (0, 10), (10, 10), (37, 120), (1, 1)]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        got_p, low, high = proportion_ci(k, n)
        assert got_p == p
        assert low == pytest.approx(max(0.0, centre - half), abs=1e-12)
        assert high == pytest.approx(min(1.0, centre + half), abs=1e-12)
        assert 0.0 <= low <= p <= high <= 1.0
    # 0 successes: the interval is [0, z^2 / (n + z^2)]
    _, low, high = proportion_ci(0, 10)
    assert low == 0.0 and high == pytest.approx(z * z / (10 + z * z), abs=1e-12)


def test_proportion_ci_errors():
    with pytest.raises(ValueError, match="n >= 1"):
        proportion_ci(0, 0)
    with pytest.raises(ValueError, match="0..n"):
        proportion_ci(11, 10)
    with pytest.raises(ValueError, match="integers"):
        proportion_ci(2.5, 10)
