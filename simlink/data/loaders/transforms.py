"""Subset selection and geometry shared by the real-data loaders.

* :func:`select_indices`: which images to load (deterministic, class-balanced shuffle by seed;
  first ``n``).
* :func:`normalize_size`: an ``image_size`` value (``None``, an int ``s`` or ``[H, W]``) as
  ``(H, W)`` or ``None``, with a clear error for anything else; :func:`size_record` is what
  ``ImageSet.meta["image_size"]`` keeps.
* :func:`resize_crop`: scale (aspect ratio kept) so the image covers ``H x W`` (bilinear for
  images, nearest for masks), then a centre crop to exactly ``H x W``; an int ``s`` is ``s x s``.
* :func:`stack`: list of per-image arrays to one batch; on mixed sizes either a clear error or
  (``allow_mixed=True``, what the loaders use) the per-image lists of a mixed-size ImageSet.
"""

from __future__ import annotations

import io
import numbers

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


def _is_int(value) -> bool:
    """``value`` is an integer and not a boolean."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def normalize_size(size, what: str = "image_size") -> tuple[int, int] | None:
    """An image size as ``(H, W)``.

    Args:
        size: ``None`` (native size), an int ``s >= 1`` (meaning ``(s, s)``), or a list / tuple
            of exactly two ints ``[H, W]`` (height, width), each ``>= 1``. Booleans are refused.
        what: the field name used in the error message.

    Returns:
        ``(H, W)`` as a tuple of two Python ints, or ``None`` when ``size`` is ``None``.

    Raises:
        ValueError: anything else; the message names ``what``, the value and what is allowed.
    """
    if size is None:
        return None
    if _is_int(size) and size >= 1:
        return int(size), int(size)
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) and v >= 1 for v in size):
        return int(size[0]), int(size[1])
    shown = list(size) if isinstance(size, tuple) else size
    raise ValueError(f"{what} must be None, an integer >= 1 (a square side) or [H, W] (two integers >= 1, "
                     f"height then width), got {shown!r}")


def size_record(size) -> int | list[int] | None:
    """What ``ImageSet.meta["image_size"]`` records for a requested ``size``: an int as given
    (so metadata of square requests is what it always was), ``[H, W]`` for a pair, or ``None``.

    Raises:
        ValueError: ``size`` is not a valid size (see :func:`normalize_size`).
    """
    hw = normalize_size(size)
    if hw is None:
        return None
    return int(size) if _is_int(size) else list(hw)


def cover_geometry(h: int, w: int, out_h: int, out_w: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Resize and crop geometry that maps an ``h x w`` image onto ``out_h x out_w``.

    The image is scaled by ``max(out_h / h, out_w / w)`` (aspect ratio kept, the target is
    covered), to ``(round(w * scale), round(h * scale))`` but never smaller than the target,
    then centre-cropped (odd leftovers: one pixel more on the right / bottom).

    Returns:
        ``((new_w, new_h), (left, top, right, bottom))``: Pillow's resize size and crop box.
    """
    scale = max(out_h / h, out_w / w)
    nw, nh = max(out_w, round(w * scale)), max(out_h, round(h * scale))
    left, top = (nw - out_w) // 2, (nh - out_h) // 2
    return (nw, nh), (left, top, left + out_w, top + out_h)


def resize_crop(image: np.ndarray, mask: np.ndarray | None, size: int | tuple[int, int] | None):
    """Scale an image (and its mask) to cover ``H x W`` and centre-crop to exactly ``H x W``.

    Geometry: see :func:`cover_geometry` (scale ``max(H / h, W / w)``, aspect ratio kept).
    Images are resampled with Pillow's BILINEAR filter, which is antialiased when shrinking (the
    filter support widens with the scale factor, close to area averaging); masks with NEAREST on
    the same geometry, so they hold only ids of the input and stay aligned with the image.

    Args:
        image: ``uint8[h, w, 3]`` RGB.
        mask: ``uint8[h, w]`` class ids (same ``h, w``), or ``None``.
        size: ``None`` to return the inputs unchanged, an int ``s`` (``s x s``), or ``(H, W)``
            / ``[H, W]`` (height, width); see :func:`normalize_size`.

    Returns:
        ``(uint8[H, W, 3], uint8[H, W] or None)``; the inputs themselves when they already are
        ``H x W``.

    Raises:
        ValueError: an invalid ``size``, or a mask whose shape is not the image's.
    """
    hw = normalize_size(size)
    if hw is None:
        return image, mask
    h, w = image.shape[:2]
    if mask is not None and mask.shape != (h, w):
        raise ValueError(f"mask shape {list(mask.shape)} does not match image {[h, w]}")
    if (h, w) == hw:
        return image, mask
    new_size, box = cover_geometry(h, w, *hw)
    resize = new_size != (w, h)
    out = Image.fromarray(image)
    if resize:
        out = out.resize(new_size, Image.Resampling.BILINEAR)
    image = np.asarray(out.crop(box), dtype=np.uint8)
    if mask is not None:
        m = Image.fromarray(mask)
        if resize:
            m = m.resize(new_size, Image.Resampling.NEAREST)
        mask = np.asarray(m.crop(box), dtype=np.uint8)
    return image, mask


def resize_crop_batch(images: np.ndarray, size: int | tuple[int, int] | None) -> np.ndarray:
    """:func:`resize_crop` over a batch.

    Args:
        images: ``uint8[N, h, w, 3]``.
        size: ``None``, an int ``s`` or ``(H, W)``, as for :func:`resize_crop`.

    Returns:
        ``uint8[N, H, W, 3]`` (C-contiguous); the input itself (made contiguous) when nothing changes.
    """
    hw = normalize_size(size)
    if hw is None or images.shape[1:3] == hw:
        return np.ascontiguousarray(images)
    return np.stack([resize_crop(np.ascontiguousarray(im), None, hw)[0] for im in images])


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
            "set image_size to resize and centre-crop them to one size (an int or [H, W])"
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
