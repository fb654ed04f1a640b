"""A plain folder of images (e.g. the 24 Kodak PNGs): no labels, no masks.

Every ``.png .jpg .jpeg .bmp .ppm .tif .tiff`` file directly in ``root`` (not in sub-folders),
sorted by file name, decoded to RGB. ``root`` is required; ``split`` is ignored (kept in the
result). Images of different sizes need ``image_size`` (resize + centre crop).
"""

from __future__ import annotations

from pathlib import Path

from simlink.data.base import ImageSet
from simlink.data.loaders.transforms import decode_rgb, resize_crop, select_indices, stack
from simlink.errors import DatasetNotFoundError

NAME = "folder"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")


def list_images(root: Path) -> list[Path]:
    """Image files directly in ``root``, sorted by name (extension matched case-insensitively)."""
    return sorted((p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
                  key=lambda p: p.name)


def load_folder(split: str = "test", n_images: int | None = None, image_size: int | None = None,
                root: str | Path | None = None, seed: int = 0, download: bool = False) -> ImageSet:
    """Load the images in ``root``: ``uint8[n, H, W, 3]``; ``meta["files"]`` lists their names.

    Raises:
        DatasetNotFoundError: ``root`` not given, not a folder, or holding no image files.
        ValueError: mixed image sizes without ``image_size``.
    """
    if root is None:
        raise DatasetNotFoundError(
            "dataset 'folder' needs `root:` in the scenario: a folder of images "
            f"({' '.join(IMAGE_EXTS)}), e.g. the Kodak set")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DatasetNotFoundError(f"dataset 'folder': root {folder} is not a folder; "
                                   "set `root:` in the scenario to a folder of images")
    files = list_images(folder)
    if not files:
        raise DatasetNotFoundError(f"dataset 'folder': no image files ({' '.join(IMAGE_EXTS)}) in {folder}; "
                                   "set `root:` in the scenario to a folder of images")
    idx = select_indices(len(files), n_images, seed, f"folder {folder}")
    imgs = [resize_crop(decode_rgb(files[i]), None, image_size)[0] for i in idx]
    images, _ = stack(imgs, None, f"folder {folder}")
    return ImageSet(images=images, name=NAME, split=split,
                    meta={"root": str(folder), "files": [files[i].name for i in idx], "n_available": len(files),
                          "seed": seed, "image_size": image_size})
