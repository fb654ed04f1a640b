"""Datasets: every loader returns an :class:`~simlink.data.base.ImageSet`.

>>> from simlink.data import load_dataset
>>> imgs = load_dataset("synthetic", split="test", n_images=100)   # no files needed

Registered names: ``synthetic`` (embedded default), ``cifar10``, ``stl10``, ``camvid``,
``cityscapes``, ``folder``, ``npz``. Real datasets are looked for in ``root``,
``$SIMLINK_DATA/<name>`` and ``~/.cache/simlink/datasets/<name>`` (see
:mod:`simlink.data.loaders.locate`).
"""

from simlink.data.base import ImageSet
from simlink.data.registry import DATASETS, DatasetSpec, list_datasets, load_dataset, register_dataset

__all__ = ["DATASETS", "DatasetSpec", "ImageSet", "list_datasets", "load_dataset", "register_dataset"]
