"""Full-reference image quality: PSNR, SSIM and MS-SSIM, per image, batched with torch.

Conventions shared by all three functions:

* Inputs ``x`` (reference) and ``y`` (distorted) are numpy arrays of the same shape,
  ``[N, H, W, C]`` (a batch) or ``[H, W, C]`` (one image), normally ``uint8`` RGB; any real dtype
  is accepted and read as values on the ``0..data_range`` scale (no rescaling is done).
* The output is always ``float64[N]`` (``N = 1`` for a single image), one value per image; the
  channels are averaged per image as is standard for RGB.
* Computation is in ``float64`` on ``device`` (a torch device, CPU by default), ``batch_size``
  images at a time (None: chunks of about :data:`CHUNK_ELEMENTS` array elements). Results do
  not depend on the chunking.

Definitions:

* **PSNR** (dB): ``10 log10(data_range**2 / MSE)`` with the MSE over all pixels and channels
  of the image. Identical images have MSE 0 and infinite PSNR, which breaks averages, so the
  value is capped at :data:`PSNR_MAX_DB` = 100 dB.
* **SSIM** (Wang et al. 2004): Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03,
  population (biased) local statistics, *valid* filtering (no padding; the map is
  ``(H-10) x (W-10)``), map mean per channel, then mean over channels. This equals
  ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=-1)``. Needs ``H, W >= 11``.
* **MS-SSIM** (Wang, Simoncelli & Bovik 2003): weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333);
  between scales 2x2 average pooling with stride 2 (an odd last row / column is dropped).
  At scales 1..M-1 the mean contrast-structure term ``cs`` is used, at scale M the full SSIM;
  per channel ``MS-SSIM = prod_j relu(cs_j)**w_j * relu(ssim_M)**w_M``, then mean over
  channels. The ``relu`` (clamp at 0, as in common implementations such as pytorch-msssim)
  avoids negative bases with fractional exponents, which would be undefined.
  **Small images:** five scales need the smallest scale to keep at least 11 px, i.e.
  ``min(H, W) // 16 >= 11`` (min side >= 176). Smaller images use as many scales M as fit
  (``min(H, W) // 2**(M-1) >= 11``) and the first M weights renormalised to sum to one:
  32x32 images get 2 scales (32 -> 16; 8 would be too small), 64x64 get 3.
"""

from __future__ import annotations

import numpy as np
import torch

PSNR_MAX_DB = 100.0
"""Cap on PSNR in dB (reached by identical images, whose PSNR would be +inf)."""

SSIM_WIN = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _as_batch(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``[N, H, W, C]`` views of ``x`` and ``y``."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape; got {x.shape} and {y.shape}")
    if x.ndim == 3:
        x, y = x[None], y[None]
    if x.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C] or [H, W, C]; got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise ValueError(f"images must be numeric; got {x.dtype} and {y.dtype}")
    return x, y


def _to_torch(a: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """``[n, H, W, C]`` numpy -> ``float64[n, C, H, W]`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(device).permute(0, 3, 1, 2).contiguous()


CHUNK_ELEMENTS = 2**18
"""Default work-chunk size in array elements (``n * H * W * C``): small enough to stay in cache
(on CPU, one 512x768 image per chunk is several times faster than eight)."""


def _chunks(shape: tuple[int, ...], batch_size: int | None):
    """Slices over the batch axis of an ``[N, H, W, C]`` array, ``batch_size`` images each
    (None: as many as fit in :data:`CHUNK_ELEMENTS`, at least one)."""
    n = shape[0]
    if batch_size is None:
        batch_size = max(1, CHUNK_ELEMENTS // int(np.prod(shape[1:])))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 255.0, *, device: str | torch.device = "cpu", batch_size: int | None = None) -> np.ndarray:
    """Peak signal-to-noise ratio per image, in dB, capped at :data:`PSNR_MAX_DB`.

    Args:
        x, y: ``[N, H, W, C]`` or ``[H, W, C]`` arrays (normally ``uint8``), same shape.
        data_range: peak value (255 for 8-bit images).
        device: torch device to compute on; batch_size: images per chunk (None: automatic).

    Returns:
        ``float64[N]``: ``min(10 log10(data_range**2 / MSE), 100)``, MSE over pixels and channels.
    """
    x, y = _as_batch(x, y)
    out = np.empty(x.shape[0], dtype=np.float64)
    for s in _chunks(x.shape, batch_size):
        d = _to_torch(x[s], device) - _to_torch(y[s], device)
        mse = d.pow(2).mean(dim=(1, 2, 3)).cpu().numpy()
        with np.errstate(divide="ignore"):
            out[s] = 10.0 * np.log10(data_range**2 / mse)
    return np.minimum(out, PSNR_MAX_DB)


def _gaussian_kernel(device: str | torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian, ``float64[SSIM_WIN]``, sigma :data:`SSIM_SIGMA`."""
    r = SSIM_WIN // 2
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    g = torch.exp(-(t**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _filter(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, valid region only: ``[n, C, H, W] -> [n, C, H-10, W-10]``.

    Written as shifted multiply-adds (11 per direction): on CPU in float64 this is several
    times faster than ``conv2d``, which has no optimised double-precision path.
    """
    k = g.numel()
    h, w = a.shape[2] - k + 1, a.shape[3] - k + 1
    taps = g.tolist()
    rows = torch.mul(a[:, :, 0:h, :], taps[0])
    for i in range(1, k):
        rows.add_(a[:, :, i : i + h, :], alpha=taps[i])
    out = torch.mul(rows[:, :, :, 0:w], taps[0])
    for i in range(1, k):
        out.add_(rows[:, :, :, i : i + w], alpha=taps[i])
    return out


def _ssim_cs(a: torch.Tensor, b: torch.Tensor, data_range: float, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean SSIM and mean contrast-structure term, each ``float64[n, C]``."""
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_a, mu_b = _filter(a, g), _filter(b, g)
    var_a = _filter(a * a, g) - mu_a**2
    var_b = _filter(b * b, g) - mu_b**2
    cov = _filter(a * b, g) - mu_a * mu_b
    cs_map = (2 * cov + c2) / (var_a + var_b + c2)
    lum_map = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return (lum_map * cs_map).mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


def _pool2(a: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling, stride 2, an odd last row / column dropped: ``[n, C, H, W] -> [n, C, H//2, W//2]``."""
    h, w = a.shape[2] // 2 * 2, a.shape[3] // 2 * 2
    return (a[:, :, 0:h:2, 0:w:2] + a[:, :, 1:h:2, 0:w:2] + a[:, :, 0:h:2, 1:w:2] + a[:, :, 1:h:2, 1:w:2]) * 0.25


def _check_min_side(h: int, w: int) -> None:
    if min(h, w) < SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN} pixels; got {h}x{w}")


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 255.0, *, device: str | torch.device = "cpu", batch_size: int | None = None) -> np.ndarray:
    """Structural similarity per image (Gaussian 11x11 window, sigma 1.5, valid region).

    Args:
        x, y: ``[N, H, W, C]`` or ``[H, W, C]`` arrays (normally ``uint8``), same shape, ``H, W >= 11``.
        data_range: peak value (255 for 8-bit images).
        device: torch device to compute on; batch_size: images per chunk (None: automatic).

    Returns:
        ``float64[N]`` in [-1, 1]: the SSIM map mean per channel, averaged over channels.
    """
    x, y = _as_batch(x, y)
    _check_min_side(x.shape[1], x.shape[2])
    g = _gaussian_kernel(device)
    out = np.empty(x.shape[0], dtype=np.float64)
    for s in _chunks(x.shape, batch_size):
        val, _ = _ssim_cs(_to_torch(x[s], device), _to_torch(y[s], device), data_range, g)
        out[s] = val.mean(dim=1).cpu().numpy()
    return out


def ms_ssim_scales(h: int, w: int) -> int:
    """Number of MS-SSIM scales that fit an ``h x w`` image: the largest ``M <= 5`` with
    ``min(h, w) // 2**(M-1) >= 11`` (at least 1; raises if the image is smaller than 11 px)."""
    _check_min_side(h, w)
    m = 1
    while m < len(MS_SSIM_WEIGHTS) and min(h, w) // 2**m >= SSIM_WIN:
        m += 1
    return m


def ms_ssim(
    x: np.ndarray,
    y: np.ndarray,
    data_range: float = 255.0,
    *,
    scales: int | None = None,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
) -> np.ndarray:
    """Multi-scale SSIM per image (Wang 2003), with fewer, renormalised scales for small images.

    Args:
        x, y: ``[N, H, W, C]`` or ``[H, W, C]`` arrays (normally ``uint8``), same shape, ``H, W >= 11``.
        data_range: peak value (255 for 8-bit images).
        scales: number of scales M to use (1..5); default: as many as fit
            (:func:`ms_ssim_scales`). Asking for more than fit raises ``ValueError``.
        device: torch device to compute on; batch_size: images per chunk (None: automatic).

    Returns:
        ``float64[N]`` in [0, 1]: per channel ``prod_j relu(cs_j)**w_j * relu(ssim_M)**w_M`` with
        the first M weights of :data:`MS_SSIM_WEIGHTS` renormalised to sum to one, averaged over
        channels.
    """
    x, y = _as_batch(x, y)
    fit = ms_ssim_scales(x.shape[1], x.shape[2])
    m = fit if scales is None else int(scales)
    if not 1 <= m <= fit:
        raise ValueError(f"ms_ssim: {x.shape[1]}x{x.shape[2]} images allow 1..{fit} scales; asked for {scales}")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:m], dtype=torch.float64, device=device)
    weights = weights / weights.sum()
    g = _gaussian_kernel(device)
    out = np.empty(x.shape[0], dtype=np.float64)
    for s in _chunks(x.shape, batch_size):
        a, b = _to_torch(x[s], device), _to_torch(y[s], device)
        terms = []
        for j in range(m):
            val, cs = _ssim_cs(a, b, data_range, g)
            terms.append(val if j == m - 1 else cs)
            if j < m - 1:
                a, b = _pool2(a), _pool2(b)
        stacked = torch.relu(torch.stack(terms, dim=0))  # [m, n, C]
        per_channel = torch.prod(stacked ** weights.view(-1, 1, 1), dim=0)
        out[s] = per_channel.mean(dim=1).cpu().numpy()
    return out


__all__ = ["PSNR_MAX_DB", "MS_SSIM_WEIGHTS", "CHUNK_ELEMENTS", "psnr", "ssim", "ms_ssim", "ms_ssim_scales"]
