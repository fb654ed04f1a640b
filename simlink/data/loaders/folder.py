"""A plain folder of images (e.g. the 24 Kodak PNGs): no labels, no masks.

Every ``.png .jpg .jpeg .bmp .ppm .tif .tiff`` file directly in ``root`` (not in sub-folders),
sorted by file name, decoded to RGB. ``root`` is required; ``split`` is ignored (kept in the
result). Images load at their native size when ``image_size`` is ``None``: one size gives the usual
``uint8[n, H, W, 3]`` array; different sizes (Kodak mixes 768x512 and 512x768) give a mixed-size
:class:`~simlink.data.base.ImageSet` whose ``images`` is a list of ``uint8[H_i, W_i, 3]`` (see
``ImageSet.shapes`` / ``shape_groups()``). With ``image_size`` (an int ``s`` for ``s x s``, or
``[H, W]``) every image is scaled to cover ``H x W`` (aspect ratio kept) and centre-cropped to it.

A file that cannot be decoded (corrupt, truncated, not an image) is a one-line
:class:`~simlink.data.base.DatasetError` naming it, raised while loading (before any sweep work).
With ``skip_unreadable=True`` (scenario key ``dataset.skip_unreadable``) every file is decoded
first, unreadable ones are skipped with one warning each and listed in ``ImageSet.skipped``, and
``n_images`` is drawn from the readable files only.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from simlink.data.base import DatasetError, ImageSet
from simlink.data.loaders.transforms import decode_rgb, resize_crop, select_indices, size_record, stack
from simlink.errors import DatasetNotFoundError

NAME = "folder"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")


def list_images(root: Path) -> list[Path]:
    """Image files directly in ``root``, sorted by name (extension matched case-insensitively)."""
    return sorted((p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
                  key=lambda p: p.name)


def load_folder(split: str = "test", n_images: int | None = None, image_size: int | tuple[int, int] | None = None,
                root: str | Path | None = None, seed: int = 0, download: bool = False,
                skip_unreadable: bool = False) -> ImageSet:
    """Load the images in ``root``; ``meta["files"]`` lists their names.

    ``skip_unreadable``: skip (with a warning) files that cannot be decoded instead of failing;
    their names are in the result's ``skipped`` (and ``meta["skipped"]``).

    Returns:
        :class:`ImageSet` without labels or masks: ``images`` is ``uint8[n, H, W, 3]`` when every
        chosen image has one size (always so with ``image_size``: ``H x W`` as requested), else
        (``image_size=None``, mixed sizes) a list of ``uint8[H_i, W_i, 3]`` at native size.

    Raises:
        DatasetNotFoundError: ``root`` not given, not a folder, or holding no image files.
        DatasetError: a chosen file cannot be decoded (without ``skip_unreadable``), or
            ``n_images`` exceeds the (readable) image files.
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
    what = f"dataset 'folder': {folder}"
    skipped: list[str] = []
    if skip_unreadable:
        decoded: list[tuple[Path, np.ndarray]] = []
        for path in files:
            try:
                decoded.append((path, _decode(path, image_size)))
            except DatasetError as exc:
                warnings.warn(f"dataset 'folder': skipping unreadable image {path} ({_reason(exc.__cause__)})",
                              stacklevel=2)
                skipped.append(path.name)
        if n_images is not None and n_images > len(decoded):
            raise DatasetError(f"{what}: n_images={n_images} but only {len(decoded)} of the {len(files)} image files "
                               f"are readable ({len(skipped)} skipped)")
        if not decoded:
            raise DatasetError(f"{what}: none of the {len(files)} image files is readable")
        idx = select_indices(len(decoded), n_images, seed, what)
        chosen = [decoded[i][0] for i in idx]
        imgs = [decoded[i][1] for i in idx]
    else:
        if n_images is not None and n_images > len(files):
            raise DatasetError(f"{what}: n_images={n_images} but the folder holds only {len(files)} image files")
        idx = select_indices(len(files), n_images, seed, what)
        chosen = [files[i] for i in idx]
        imgs = [_decode(path, image_size) for path in chosen]
    images, _ = stack(imgs, None, f"folder {folder}", allow_mixed=True)
    meta = {"root": str(folder), "files": [p.name for p in chosen], "n_available": len(files) - len(skipped),
            "seed": seed, "image_size": size_record(image_size)}
    if skip_unreadable:
        meta["skipped"] = list(skipped)
    return ImageSet(images=images, name=NAME, split=split, meta=meta, skipped=skipped)


def _reason(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}" if exc is not None else "?"


def _decode(path: Path, image_size: int | tuple[int, int] | None) -> np.ndarray:
    """``path`` decoded to RGB (resized and cropped when ``image_size``); :class:`DatasetError`
    naming the file when Pillow cannot read it."""
    try:
        image = decode_rgb(path)
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ... on bad files
        raise DatasetError(f"dataset 'folder': {path}: cannot read image ({_reason(exc)}); fix or remove the file, "
                           "or set dataset.skip_unreadable: true to skip it") from exc
    return resize_crop(image, None, image_size)[0]
