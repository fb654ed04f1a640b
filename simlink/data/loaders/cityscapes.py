"""Cityscapes (Cordts et al. 2016), fine annotations: ``train`` (2,975), ``val`` (500), ``test`` (1,525).

Official layout in the dataset folder: ``leftImg8bit/<split>/<city>/<id>_leftImg8bit.png`` and
``gtFine/<split>/<city>/<id>_gtFine_labelIds.png``. The label ids are mapped to the 19
standard train ids (``CLASSES``); every other id becomes 255 (``ignore_index``). Images are
2048x1024: set ``image_size`` to keep memory reasonable. No automatic download (the
licence needs a login at cityscapes-dataset.com).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simlink.data.base import ImageSet
from simlink.data.loaders.locate import Layout, locate
from simlink.data.loaders.transforms import (decode_rgb, read_mask, resize_crop, select_indices, size_record,
                                             stack)

NAME = "cityscapes"
SPLITS = ("train", "val", "test")
CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
           "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
           "motorcycle", "bicycle"]
IGNORE_INDEX = 255
# labelId -> trainId for the 19 evaluated classes (cityscapesScripts labels.py); the rest -> 255.
_ID_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LABEL_TO_TRAIN = np.full(256, IGNORE_INDEX, dtype=np.uint8)
LABEL_TO_TRAIN[list(_ID_TO_TRAIN)] = list(_ID_TO_TRAIN.values())

_IMG_SUFFIX = "_leftImg8bit.png"
_GT_SUFFIX = "_gtFine_labelIds.png"


def layouts(split: str) -> list[Layout]:
    """The official layout for ``split``."""
    return [Layout("official leftImg8bit + gtFine", (f"leftImg8bit/{split}/", f"gtFine/{split}/"))]


def list_pairs(folder: Path, split: str) -> list[tuple[Path, Path]]:
    """``(image, labelIds)`` paths of ``split``, sorted by city then file name.

    Raises:
        ValueError: no images, or an image whose ``gtFine`` file is missing (the first one is named).
    """
    images = sorted((folder / "leftImg8bit" / split).glob(f"*/*{_IMG_SUFFIX}"))
    if not images:
        raise ValueError(f"{folder / 'leftImg8bit' / split}: no <city>/*{_IMG_SUFFIX} files")
    pairs = []
    for p in images:
        gt = folder / "gtFine" / split / p.parent.name / (p.name[: -len(_IMG_SUFFIX)] + _GT_SUFFIX)
        if not gt.is_file():
            raise ValueError(f"{p}: label file {gt} is missing")
        pairs.append((p, gt))
    return pairs


def load_cityscapes(split: str = "val", n_images: int | None = None, image_size: int | tuple[int, int] | None = None,
                    root: str | Path | None = None, seed: int = 0, download: bool = False) -> ImageSet:
    """Load Cityscapes ``split``: ``uint8[n, 1024, 2048, 3]`` images and ``uint8[n, 1024, 2048]``
    train-id masks, or ``H x W`` for ``image_size`` an int ``s`` (``s x s``) or ``(H, W)``
    (scaled to cover, then centre-cropped; e.g. ``(512, 1024)`` keeps the full frame). Frames of
    other sizes mixed in without ``image_size`` give a mixed-size :class:`ImageSet`."""
    folder, layout = locate(NAME, split, root, layouts(split), downloadable=False, download=download)
    pairs = list_pairs(folder, split)
    idx = select_indices(len(pairs), n_images, seed, f"{NAME}/{split}")
    imgs, masks = [], []
    for i in idx:
        img_path, gt_path = pairs[i]
        img, mask = decode_rgb(img_path), LABEL_TO_TRAIN[read_mask(gt_path)]
        if mask.shape != img.shape[:2]:
            raise ValueError(f"{gt_path}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                             f"image is {img.shape[1]}x{img.shape[0]}")
        img, mask = resize_crop(img, mask, image_size)
        imgs.append(img)
        masks.append(mask)
    images, masks_arr = stack(imgs, masks, f"{NAME}/{split}", allow_mixed=True)
    return ImageSet(images=images, masks=masks_arr, classes=list(CLASSES), name=NAME, split=split,
                    ignore_index=IGNORE_INDEX,
                    meta={"root": str(folder), "layout": layout.name, "n_available": len(pairs), "seed": seed,
                          "image_size": size_record(image_size), "files": [pairs[i][0].name for i in idx]})
