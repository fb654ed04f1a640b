"""Quality metrics (:mod:`simlink.metrics.image`), the per-cell measurement of reconstructions and
task scores (:mod:`simlink.metrics.measure`), confidence intervals (:mod:`simlink.metrics.stats`),
Bjøntegaard deltas (:mod:`simlink.metrics.bd`) and neural mutual-information estimators
(:mod:`simlink.metrics.mutual_info`). Submodules load when their names are first used."""

from simlink.lazy import lazy_exports

_NAMES = {
    **dict.fromkeys(["bd_metric", "bd_rate"], "simlink.metrics.bd"),
    **dict.fromkeys(["MS_SSIM_WEIGHTS", "PSNR_MAX_DB", "ms_ssim", "ms_ssim_scales", "psnr", "ssim"],
                    "simlink.metrics.image"),
    **dict.fromkeys(["IMAGE_METRICS", "Measure", "image_metrics"], "simlink.metrics.measure"),
    **dict.fromkeys(["MIEstimate", "estimate_mi", "gaussian_mi"], "simlink.metrics.mutual_info"),
    **dict.fromkeys(["mean_ci", "proportion_ci"], "simlink.metrics.stats"),
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
