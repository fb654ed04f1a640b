"""Quality metrics (:mod:`simlink.metrics.image`), confidence intervals (:mod:`simlink.metrics.stats`)
and Bjøntegaard deltas (:mod:`simlink.metrics.bd`)."""

from simlink.metrics.bd import bd_metric, bd_rate
from simlink.metrics.image import MS_SSIM_WEIGHTS, PSNR_MAX_DB, ms_ssim, ms_ssim_scales, psnr, ssim
from simlink.metrics.stats import mean_ci, proportion_ci

__all__ = [
    "MS_SSIM_WEIGHTS",
    "PSNR_MAX_DB",
    "bd_metric",
    "bd_rate",
    "mean_ci",
    "ms_ssim",
    "ms_ssim_scales",
    "proportion_ci",
    "psnr",
    "ssim",
]
