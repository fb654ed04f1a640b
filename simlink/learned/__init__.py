"""Machinery shared by every learned method: the model cache and the resumable training loop."""

from simlink.atomic import atomic_torch_save, atomic_write_json
from simlink.learned.cache import (
    CODE_VERSION,
    ModelCache,
    array_fingerprint,
    cache_root,
    fingerprint,
    module_fingerprint,
    safe_torch_load,
)
from simlink.learned.trainer import OptimSettings, TrainResult, save_finished, stages_report, train_or_load, train_resumable

__all__ = [
    "CODE_VERSION",
    "ModelCache",
    "OptimSettings",
    "TrainResult",
    "array_fingerprint",
    "atomic_torch_save",
    "atomic_write_json",
    "cache_root",
    "fingerprint",
    "module_fingerprint",
    "safe_torch_load",
    "save_finished",
    "stages_report",
    "train_or_load",
    "train_resumable",
]
