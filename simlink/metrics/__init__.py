"""Quality metrics (:mod:`simlink.metrics.image`) and confidence intervals (:mod:`simlink.metrics.stats`)."""

from simlink.metrics.image import MS_SSIM_WEIGHTS, PSNR_MAX_DB, ms_ssim, ms_ssim_scales, psnr, ssim
from simlink.metrics.stats import mean_ci, proportion_ci

__all__ = ["MS_SSIM_WEIGHTS", "PSNR_MAX_DB", "ms_ssim", "ms_ssim_scales", "psnr", "ssim", "mean_ci", "proportion_ci"]
