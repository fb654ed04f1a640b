"""Subset selection and geometry shared by the real-data loaders.

* :func:`select_indices`: which images to load (deterministic, class-balanced shuffle by seed;
  first ``n``).
* :func:`resize_crop`: shorter side to ``size`` (bilinear for images, nearest for masks),
  then a centre crop to ``size x size``.
* :func:`stack`: list of per-image arrays to one batch; on mixed sizes either a clear error or
  (``allow_mixed=True``, what the loaders use) the per-image lists of a mixed-size ImageSet.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def select_indices(n_total: int, n_images: int | None, seed: int, what: str,
                   labels: np.ndarray | None = None) -> np.ndarray:
    """Indices of the images to load.

    Args:
        n_total: images available.
        n_images: ``None`` for all of them in their native order; else the first ``n_images``
            of a deterministic shuffle by ``seed`` (a smaller ``n`` gives a prefix of a larger one).
        seed: non-negative integer.
        what: dataset / split description for the error message.
        labels: ``int[n_total]`` class per image, or ``None``. With labels the shuffle is
            class-balanced: each class's images in random order, taken round-robin over the
            classes (in a random class order), so any prefix holds every class equally often
            (within one image) while classes last -- even when the files are ordered by class.

    Returns:
        ``int64[n]`` indices into ``0..n_total-1``.

    Raises:
        ValueError: ``n_images > n_total``.
    """
    if n_images is None:
        return np.arange(n_total, dtype=np.int64)
    if n_images > n_total:
        raise ValueError(f"{what}: n_images={n_images} requested but only {n_total} images are available")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_total)
    if labels is not None:
        lab = np.asarray(labels)[perm]
        classes, cls_id = np.unique(lab, return_inverse=True)
        class_pos = rng.permutation(len(classes))[cls_id]
        # Rank of each image within its class (in shuffled order), then order by (rank, class position).
        by_class = np.argsort(cls_id, kind="stable")
        starts = np.searchsorted(cls_id[by_class], np.arange(len(classes)))
        rank = np.empty(n_total, np.int64)
        rank[by_class] = np.arange(n_total) - starts[cls_id[by_class]]
        perm = perm[np.argsort(rank * len(classes) + class_pos, kind="stable")]
    return perm[:n_images].astype(np.int64)


def resize_crop(image: np.ndarray, mask: np.ndarray | None, size: int | None):
    """Resize the shorter side to ``size`` and centre-crop to ``size x size``.

    Args:
        image: ``uint8[H, W, 3]`` RGB.
        mask: ``uint8[H, W]`` class ids (same ``H, W``), or ``None``.
        size: target side in pixels, or ``None`` to return the inputs unchanged.

    Returns:
        ``(uint8[size, size, 3], uint8[size, size] or None)``. Images use bilinear (antialiased
        when shrinking) resampling, masks nearest-neighbour, both on the same geometry.
    """
    if size is None:
        return image, mask
    h, w = image.shape[:2]
    if mask is not None and mask.shape != (h, w):
        raise ValueError(f"mask shape {list(mask.shape)} does not match image {[h, w]}")
    if (h, w) == (size, size):
        return image, mask
    scale = size / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    box = (left, top, left + size, top + size)
    if (nw, nh) != (w, h):
        out = Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR)
    else:
        out = Image.fromarray(image)
    image = np.asarray(out.crop(box), dtype=np.uint8)
    if mask is not None:
        m = Image.fromarray(mask)
        if (nw, nh) != (w, h):
            m = m.resize((nw, nh), Image.Resampling.NEAREST)
        mask = np.asarray(m.crop(box), dtype=np.uint8)
    return image, mask


def resize_crop_batch(images: np.ndarray, size: int | None) -> np.ndarray:
    """:func:`resize_crop` over ``uint8[N, H, W, 3]``; returns the input itself when nothing changes."""
    if size is None or images.shape[1:3] == (size, size):
        return np.ascontiguousarray(images)
    return np.stack([resize_crop(np.ascontiguousarray(im), None, size)[0] for im in images])


def stack(images: list[np.ndarray], masks: list[np.ndarray] | None, what: str, *, allow_mixed: bool = False):
    """Stack per-image arrays into ``uint8[N, H, W, 3]`` (and ``uint8[N, H, W]``).

    Args:
        images: ``uint8[H_i, W_i, 3]`` per image.
        masks: ``uint8[H_i, W_i]`` per image (same sizes as ``images``), or ``None``.
        what: dataset / split description for error messages.
        allow_mixed: when the images do not all have one size, return them (and the masks) as
            lists of ``uint8`` arrays -- the mixed-size form of :class:`~simlink.data.base.ImageSet`
            -- instead of raising. Images of one size are stacked either way.

    Returns:
        ``(images, masks)``: ``uint8[N, H, W, 3]`` and ``uint8[N, H, W]`` (or ``None``) when all
        images share one size; with ``allow_mixed`` and mixed sizes, ``list[uint8[H_i, W_i, 3]]`` and
        ``list[uint8[H_i, W_i]]`` (or ``None``).

    Raises:
        ValueError: no images; a mask count or size that does not match the images; or (without
            ``allow_mixed``) images that do not all have one size (message names two sizes and suggests
            setting ``image_size``).
    """
    if not images:
        raise ValueError(f"{what}: no images")
    if masks is not None:
        if len(masks) != len(images):
            raise ValueError(f"{what}: {len(masks)} masks for {len(images)} images")
        for i, (im, m) in enumerate(zip(images, masks)):
            if m.shape != im.shape[:2]:
                raise ValueError(f"{what}: mask {i} is {m.shape[1]}x{m.shape[0]} "
                                 f"but its image is {im.shape[1]}x{im.shape[0]}")
    sizes = {im.shape for im in images}
    if len(sizes) > 1:
        if allow_mixed:
            return ([np.asarray(im, dtype=np.uint8) for im in images],
                    None if masks is None else [np.asarray(m, dtype=np.uint8) for m in masks])
        a, b = sorted(sizes)[:2]
        raise ValueError(
            f"{what}: images have different sizes (e.g. {a[1]}x{a[0]} and {b[1]}x{b[0]}); "
            "set image_size to resize and centre-crop them to one square size"
        )
    out = np.stack(images).astype(np.uint8, copy=False)
    return out, (None if masks is None else np.stack(masks).astype(np.uint8, copy=False))


def decode_rgb(data) -> np.ndarray:
    """Decode an encoded image (bytes, buffer or file path) with Pillow to ``uint8[H, W, 3]`` RGB."""
    src = io.BytesIO(bytes(data)) if isinstance(data, (bytes, bytearray, memoryview, np.ndarray)) else data
    with Image.open(src) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_mask(path) -> np.ndarray:
    """Read a single-channel class-id PNG to ``uint8[H, W]``.

    Raises:
        ValueError: the file is a colour image (a colour-coded label map, not class ids).
    """
    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"{path}: expected a single-channel class-id PNG, got mode {im.mode!r}")
        arr = np.asarray(im)
    if arr.dtype != np.uint8:
        if arr.max(initial=0) > 255:
            raise ValueError(f"{path}: class ids above 255")
        arr = arr.astype(np.uint8)
    return arr
