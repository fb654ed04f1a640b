"""CamVid road scenes (Brostow et al. 2009), SegNet split: ``train`` (367), ``val`` (101), ``test`` (233).

Images 480x360 RGB; masks ``uint8[H, W]`` with ids 0..10 = ``CLASSES`` and 11 = void
(``ignore_index``; any id above 11 is mapped to 11). Accepted layouts in the dataset folder:

* SegNet folders: ``<split>/`` (RGB PNGs) and ``<split>annot/`` (class-id PNGs with the same
  file names), directly in the folder or under ``CamVid/`` (as in the SegNet tutorial);
* packed offline format: ``<split>.npz`` with ``masks`` (:mod:`simlink.data.loaders.packed`).

No automatic download (get it from the SegNet tutorial repository).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simlink.data.base import ImageSet
from simlink.data.loaders.locate import Layout, locate
from simlink.data.loaders.packed import load_packed
from simlink.data.loaders.transforms import (decode_rgb, read_mask, resize_crop, select_indices, size_record,
                                             stack)

NAME = "camvid"
SPLITS = ("train", "val", "test")
CLASSES = ["sky", "building", "pole", "road", "sidewalk", "tree", "sign_symbol", "fence", "car",
           "pedestrian", "bicyclist"]
IGNORE_INDEX = 11
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def layouts(split: str) -> list[Layout]:
    """SegNet folders (plain, then under ``CamVid/``), then packed npz."""
    return [
        Layout("SegNet folders", (f"{split}/", f"{split}annot/")),
        Layout("SegNet folders under CamVid/", (f"CamVid/{split}/", f"CamVid/{split}annot/")),
        Layout("packed npz", (f"{split}.npz",)),
    ]


def list_pairs(image_dir: Path, annot_dir: Path) -> list[tuple[Path, Path]]:
    """``(image, annotation)`` paths sorted by image name; annotations share the image's file name
    (or its stem with ``.png``).

    Raises:
        ValueError: no images, or an image without annotation (the first one is named).
    """
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not images:
        raise ValueError(f"{image_dir}: no images ({', '.join(IMAGE_EXTS)})")
    pairs = []
    for p in images:
        a = annot_dir / p.name
        if not a.is_file():
            a = annot_dir / (p.stem + ".png")
        if not a.is_file():
            raise ValueError(f"{p}: no annotation {annot_dir / p.name} in {annot_dir}")
        pairs.append((p, a))
    return pairs


def load_camvid(split: str = "test", n_images: int | None = None, image_size: int | tuple[int, int] | None = None,
                root: str | Path | None = None, seed: int = 0, download: bool = False) -> ImageSet:
    """Load CamVid ``split``: ``uint8[n, 360, 480, 3]`` images and ``uint8[n, 360, 480]`` masks,
    ``ignore_index = 11``.

    ``image_size``: ``None`` (native), an int ``s`` or ``(H, W)``; images and masks are scaled
    to cover ``H x W`` and centre-cropped to it (:func:`resize_crop`), giving
    ``uint8[n, H, W, 3]`` and ``uint8[n, H, W]`` (e.g. ``(184, 240)``: scaled to 245x184, then
    2 columns cropped on the left and 3 on the right). Frames of other sizes mixed in without ``image_size`` give a mixed-size
    :class:`ImageSet` (lists of per-image arrays)."""
    folder, layout = locate(NAME, split, root, layouts(split), downloadable=False, download=download)
    if layout.name == "packed npz":
        out = load_packed(folder / f"{split}.npz", name=NAME, split=split, n_images=n_images,
                          image_size=image_size, seed=seed, classes=CLASSES, ignore_index=IGNORE_INDEX,
                          meta={"root": str(folder)})
        for m in ([] if out.masks is None else [out.masks] if out.uniform else out.masks):
            np.minimum(m, IGNORE_INDEX, out=m)
        return out
    image_dir, annot_dir = (folder / f.rstrip("/") for f in layout.files)
    pairs = list_pairs(image_dir, annot_dir)
    idx = select_indices(len(pairs), n_images, seed, f"{NAME}/{split}")
    imgs, masks = [], []
    for i in idx:
        img_path, mask_path = pairs[i]
        img, mask = decode_rgb(img_path), read_mask(mask_path)
        if mask.shape != img.shape[:2]:
            raise ValueError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                             f"image {img_path.name} is {img.shape[1]}x{img.shape[0]}")
        img, mask = resize_crop(img, np.minimum(mask, IGNORE_INDEX), image_size)
        imgs.append(img)
        masks.append(mask)
    images, masks_arr = stack(imgs, masks, f"{NAME}/{split}", allow_mixed=True)
    return ImageSet(images=images, masks=masks_arr, classes=list(CLASSES), name=NAME, split=split,
                    ignore_index=IGNORE_INDEX,
                    meta={"root": str(folder), "layout": layout.name, "n_available": len(pairs), "seed": seed,
                          "image_size": size_record(image_size), "files": [pairs[i][0].name for i in idx]})
