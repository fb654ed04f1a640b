"""Machinery shared by every learned method: the model cache, the training context and the one
resumable training loop (:mod:`simlink.learned.trainer`: the training-step protocol, cached stages).

Names are imported lazily (:mod:`simlink.lazy`), so ``import simlink.learned`` (and e.g.
``from simlink.learned import OptimSettings, cache_root``) needs no torch; the training loop's
names (:class:`TrainingStep`, :func:`train_resumable`, ...) import torch when first used.
Hashes (cache keys, data fingerprints) are in :mod:`simlink.hashing`.
"""

from simlink.lazy import lazy_exports

_NAMES = {
    **dict.fromkeys(["atomic_torch_save", "atomic_write_json"], "simlink.atomic"),
    **dict.fromkeys(["CODE_VERSION", "ModelCache", "cache_root", "safe_torch_load"], "simlink.learned.cache"),
    "OptimSettings": "simlink.learned.settings",
    "TrainingContext": "simlink.learned.context",
    **dict.fromkeys(["Batch", "LossFn", "LossStep", "NonFiniteLoss", "Stage", "TrainResult", "TrainingStep",
                     "load_finished", "save_finished", "stages_report", "train_or_load", "train_resumable",
                     "train_stages"], "simlink.learned.trainer"),
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
