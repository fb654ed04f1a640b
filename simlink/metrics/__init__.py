"""Quality metrics (:mod:`simlink.metrics.image`), confidence intervals (:mod:`simlink.metrics.stats`),
Bjøntegaard deltas (:mod:`simlink.metrics.bd`) and neural mutual-information estimators
(:mod:`simlink.metrics.mutual_info`)."""

from simlink.metrics.bd import bd_metric, bd_rate
from simlink.metrics.image import MS_SSIM_WEIGHTS, PSNR_MAX_DB, ms_ssim, ms_ssim_scales, psnr, ssim
from simlink.metrics.mutual_info import MIEstimate, estimate_mi, gaussian_mi
from simlink.metrics.stats import mean_ci, proportion_ci

__all__ = [
    "MIEstimate",
    "MS_SSIM_WEIGHTS",
    "PSNR_MAX_DB",
    "bd_metric",
    "bd_rate",
    "estimate_mi",
    "gaussian_mi",
    "mean_ci",
    "ms_ssim",
    "ms_ssim_scales",
    "proportion_ci",
    "psnr",
    "ssim",
]
