"""STL-10 (Coates et al. 2011): 96x96 RGB, 10 classes; splits ``train`` (5,000), ``test`` (8,000)
and ``unlabeled`` (100,000, no labels).

Official binary layout in the dataset folder: ``stl10_binary/<split>_X.bin`` (uint8, each
image 3x96x96 stored column-major, i.e. ``X.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)``
gives HWC), ``stl10_binary/<split>_y.bin`` (uint8 labels 1..10, mapped to 0..9) and
optionally ``stl10_binary/class_names.txt``. Only the selected images are read from disk
(memory-mapped). ``download=True`` fetches the official archive (2.6 GB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simlink.data.base import ImageSet
from simlink.data.loaders.locate import Layout, locate
from simlink.data.loaders.transforms import resize_crop_batch, select_indices, size_record

NAME = "stl10"
SPLITS = ("train", "test", "unlabeled")
CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
BIN_DIR = "stl10_binary"
SIDE = 96
_IMAGE_BYTES = 3 * SIDE * SIDE


def layouts(split: str) -> list[Layout]:
    """The official binary layout for ``split`` (``unlabeled`` has no ``_y.bin``)."""
    files = [f"{BIN_DIR}/{split}_X.bin"]
    if split != "unlabeled":
        files.append(f"{BIN_DIR}/{split}_y.bin")
    return [Layout("official binary", tuple(files))]


def read_class_names(folder: Path) -> list[str]:
    """Class names from ``stl10_binary/class_names.txt`` when present, else the standard list."""
    p = folder / BIN_DIR / "class_names.txt"
    if p.is_file():
        names = [line.strip() for line in p.read_text().splitlines() if line.strip()]
        if len(names) == len(CLASSES):
            return names
    return list(CLASSES)


def load_stl10(split: str = "test", n_images: int | None = None, image_size: int | tuple[int, int] | None = None,
               root: str | Path | None = None, seed: int = 0, download: bool = False) -> ImageSet:
    """Load STL-10 ``split``: ``uint8[n, 96, 96, 3]`` images, ``int64[n]`` labels 0..9 (``None`` for
    ``unlabeled``).

    ``image_size``: ``None`` (native 96x96), an int ``s`` or ``(H, W)``: images scaled to cover
    ``H x W`` and centre-cropped to it, ``uint8[n, H, W, 3]``."""
    folder, layout = locate(NAME, split, root, layouts(split), downloadable=True, download=download)
    x_path = folder / layout.files[0]
    size = x_path.stat().st_size
    if size % _IMAGE_BYTES:
        raise ValueError(f"{x_path}: size {size} is not a multiple of {_IMAGE_BYTES} bytes (3x96x96)")
    n_total = size // _IMAGE_BYTES
    labels = None
    if split != "unlabeled":
        y_path = folder / layout.files[1]
        raw = np.fromfile(y_path, dtype=np.uint8)
        if len(raw) != n_total or raw.min(initial=1) < 1 or raw.max(initial=1) > 10:
            raise ValueError(f"{y_path}: expected {n_total} labels in 1..10, got {len(raw)} "
                             f"in {raw.min(initial=0)}..{raw.max(initial=0)}")
        labels = raw.astype(np.int64) - 1
    idx = select_indices(n_total, n_images, seed, f"{NAME}/{split}", labels)
    x = np.memmap(x_path, dtype=np.uint8, mode="r", shape=(n_total, 3, SIDE, SIDE))
    images = np.ascontiguousarray(x[idx].transpose(0, 3, 2, 1))
    del x
    return ImageSet(
        images=resize_crop_batch(images, image_size),
        labels=None if labels is None else labels[idx],
        classes=read_class_names(folder), name=NAME, split=split,
        meta={"root": str(folder), "layout": layout.name, "n_available": n_total, "seed": seed,
              "image_size": size_record(image_size)},
    )
