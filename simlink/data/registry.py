"""The dataset registry: names, descriptions, splits, and the one entry point :func:`load_dataset`.

A new dataset is one :class:`DatasetSpec` given to :func:`register_dataset`."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from simlink.data import synthetic
from simlink.data.base import ImageSet
from simlink.registry import Registry
from simlink.data.loaders import camvid, cifar10, cityscapes, folder, npz, stl10
from simlink.data.loaders.transforms import normalize_size


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    Attributes:
        name: registry key, e.g. ``"cifar10"``.
        description: one line for ``simlink list``.
        splits: accepted split names; empty when any name is accepted (``folder`` ignores it,
            ``npz`` reads ``<split>.npz``).
        has_labels: images carry class labels (``None``: depends on the files).
        has_masks: images carry segmentation masks (``None``: depends on the files).
        loader: ``loader(split, n_images, image_size, root, seed, download) -> ImageSet``;
            ``image_size`` is ``None``, an int or an ``(H, W)`` tuple.
        downloadable: ``download=True`` can fetch it.
        sizes: the ``image_size`` values the loader accepts (empty: any), each an int ``s``
            (``s x s``) or ``(H, W)``; compared after normalising (``[s, s]`` matches ``s``), when
            a scenario is validated and in :func:`load_dataset`.
        split_sizes: images per split for data of fixed size (embedded or generated); a scenario's
            ``n_images`` (and ``task.train.n_images``) above it is a validation error. Empty:
            unknown until the files are read.
        options: extra keyword options the loader accepts beyond the six above (scenario
            ``dataset:`` keys, e.g. ``"skip_unreadable"``); asking another dataset for one is an error.
    """

    name: str
    description: str
    splits: tuple[str, ...]
    has_labels: bool | None
    has_masks: bool | None
    loader: Callable[..., ImageSet]
    downloadable: bool = False
    sizes: tuple[int | tuple[int, int], ...] = ()
    split_sizes: Mapping[str, int] = field(default_factory=dict)
    options: tuple[str, ...] = ()


#: Every dataset by its scenario name (``dataset.name``), in registration order.
DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a :class:`DatasetSpec` under its ``name`` (a name registered twice is an error)."""
    return DATASETS.add(spec.name, spec)


for _spec in [
    DatasetSpec("synthetic",
                "embedded procedural shapes on textures, 32x32 or 64x64, 8 classes + masks, no files",
                tuple(synthetic.SPLIT_SIZES), True, True, synthetic.load_synthetic,
                sizes=synthetic.ALLOWED_SIZES, split_sizes=dict(synthetic.SPLIT_SIZES)),
    DatasetSpec("cifar10", "CIFAR-10, 32x32, 10 classes (official python batches or packed npz)",
                cifar10.SPLITS, True, False, cifar10.load_cifar10, downloadable=True),
    DatasetSpec("stl10", "STL-10, 96x96, 10 classes (official binary)",
                stl10.SPLITS, True, False, stl10.load_stl10, downloadable=True),
    DatasetSpec("camvid", "CamVid road scenes, 480x360, 11 classes + void (SegNet folders or packed npz)",
                camvid.SPLITS, False, True, camvid.load_camvid),
    DatasetSpec("cityscapes", "Cityscapes, 2048x1024, 19 train-id classes (official leftImg8bit + gtFine)",
                cityscapes.SPLITS, False, True, cityscapes.load_cityscapes),
    DatasetSpec("folder", "every image file in `root` sorted by name (e.g. Kodak), no labels",
                (), False, False, folder.load_folder, options=("skip_unreadable",)),
    DatasetSpec("npz", "any packed offline .npz (`root` = file, or folder with <split>.npz)",
                (), None, None, npz.load_npz),
]:
    register_dataset(_spec)


def list_datasets() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every registered dataset, in registry order."""
    return [(s.name, s.description) for s in DATASETS.values()]


def _check_int(name: str, value, minimum: int, allow_none: bool = True) -> int | None:
    """``value`` as ``int`` (or ``None`` when allowed); ``ValueError`` naming ``name`` otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _check_size(name: str, value) -> int | tuple[int, int] | None:
    """An ``image_size`` value as given when it is valid: ``None``, an int, or ``(H, W)`` for a pair
    (see :func:`~simlink.data.loaders.transforms.normalize_size`); ``ValueError`` naming ``name`` otherwise."""
    hw = normalize_size(value, name)
    if hw is None or isinstance(value, numbers.Integral):
        return None if hw is None else hw[0]
    return hw


def size_allowed(spec: DatasetSpec, image_size) -> bool:
    """``image_size`` (``None``, an int or ``[H, W]``) is one of ``spec.sizes`` after normalising
    both (``[s, s]`` is ``s``); always true when the spec declares no sizes or the size is ``None``."""
    hw = normalize_size(image_size)
    return not spec.sizes or hw is None or hw in {normalize_size(s) for s in spec.sizes}


def show_size(size) -> str:
    """``48`` or ``[184, 240]``, for messages."""
    return str(list(size)) if isinstance(size, tuple) else str(size)


def load_dataset(name: str, split: str = "test", n_images: int | None = None,
                 image_size: int | tuple[int, int] | list[int] | None = None,
                 root: str | Path | None = None, seed: int = 0, download: bool = False,
                 skip_unreadable: bool = False) -> ImageSet:
    """Load a registered dataset.

    Args:
        name: a key of ``DATASETS``.
        split: one of the dataset's ``splits``.
        n_images: ``None`` for the whole split in its native order, else the first ``n_images``
            after a deterministic shuffle by ``seed`` (synthetic: the first ``n_images`` generated).
        image_size: ``None`` (native size), an int ``s`` (``s x s``) or ``[H, W]`` / ``(H, W)``
            (height, width). Real data: scale with the aspect ratio kept until the image covers
            ``H x W`` (bilinear, antialiased when shrinking; masks nearest on the same geometry),
            then centre-crop to exactly ``H x W``. Synthetic: squares only, the generated side,
            32 (default) or 64 (``[s, s]`` is the same as ``s``).
        root: folder (or, for ``npz``, file) to look in first; see :mod:`simlink.data.loaders.locate`.
        seed: non-negative integer for the subset shuffle (synthetic: for generation).
        download: fetch the official archive into ``~/.cache/simlink/datasets/<name>`` when missing
            (cifar10, stl10).
        skip_unreadable: ``folder`` only: skip files that cannot be decoded, with a warning each;
            their names are in the result's ``skipped``.

    Returns:
        :class:`ImageSet`: ``uint8[N, H, W, 3]`` images, ``int64[N]`` labels or ``None``,
        ``uint8[N, H, W]`` masks or ``None`` (``H, W`` from ``image_size`` when set;
        ``meta["image_size"]`` records the request: an int as given, ``[H, W]`` for a pair).
        Exception: with ``image_size=None`` a dataset whose images differ in size (``folder`` on Kodak or CLIC, a packed ``npz`` without masks, ...)
        gives a mixed-size set: ``images`` is a list of ``uint8[H_i, W_i, 3]`` (masks, if any, a
        list of ``uint8[H_i, W_i]``), ``uniform`` is ``False``, ``image_shape`` / ``num_pixels``
        raise and ``shapes`` / ``pixels`` / ``shape_groups()`` give the per-image sizes and uniform
        subsets. Images of one size always come as one array (``uniform`` is ``True``).

    Raises:
        ValueError: unknown name or split (the allowed ones are listed), bad ``n_images`` /
            ``image_size`` / ``seed`` (or one not in the dataset's ``sizes``), ``n_images`` above
            what is available, an option the dataset does not take.
        DatasetNotFoundError: the files are missing (every place looked is listed).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if spec.splits and split not in spec.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; available: {', '.join(spec.splits)}")
    n_images = _check_int("n_images", n_images, 1)
    image_size = _check_size("image_size", image_size)
    seed = _check_int("seed", seed, 0, allow_none=False)
    if not size_allowed(spec, image_size):
        raise ValueError(f"dataset {name!r}: image_size {show_size(image_size)} is not one of "
                         f"{', '.join(map(show_size, spec.sizes))}")
    options = {"skip_unreadable": True} if skip_unreadable else {}
    for key in options:
        if key not in spec.options:
            raise ValueError(f"dataset {name!r} has no option {key!r}"
                             f"{'; it takes ' + ', '.join(spec.options) if spec.options else ''}")
    return spec.loader(split=split, n_images=n_images, image_size=image_size, root=root, seed=seed,
                       download=bool(download), **options)
