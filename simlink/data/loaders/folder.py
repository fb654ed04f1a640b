"""A plain folder of images (e.g. the 24 Kodak PNGs): no labels, no masks.

Every ``.png .jpg .jpeg .bmp .ppm .tif .tiff`` file directly in ``root`` (not in sub-folders),
sorted by file name, decoded to RGB. ``root`` is required; ``split`` is ignored (kept in the
result). Images load at their native size when ``image_size`` is ``None``: one size gives the usual
``uint8[n, H, W, 3]`` array; different sizes (Kodak mixes 768x512 and 512x768) give a mixed-size
:class:`~simlink.data.base.ImageSet` whose ``images`` is a list of ``uint8[H_i, W_i, 3]`` (see
``ImageSet.shapes`` / ``shape_groups()``). With ``image_size`` every image is resized (shorter
side) and centre-cropped to ``image_size x image_size``.
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
    """Load the images in ``root``; ``meta["files"]`` lists their names.

    Returns:
        :class:`ImageSet` without labels or masks: ``images`` is ``uint8[n, H, W, 3]`` when every
        chosen image has one size (always so with ``image_size``: ``H = W = image_size``), else
        (``image_size=None``, mixed sizes) a list of ``uint8[H_i, W_i, 3]`` at native size.

    Raises:
        DatasetNotFoundError: ``root`` not given, not a folder, or holding no image files.
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
    images, _ = stack(imgs, None, f"folder {folder}", allow_mixed=True)
    return ImageSet(images=images, name=NAME, split=split,
                    meta={"root": str(folder), "files": [files[i].name for i in idx], "n_available": len(files),
                          "seed": seed, "image_size": image_size})
