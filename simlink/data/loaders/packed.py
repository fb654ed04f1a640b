"""Reader for the packed offline format: one ``.npz`` of concatenated encoded images.

Keys (read with ``numpy.load(path, allow_pickle=False)``):

=============  ====================  =================================================
key            dtype / shape         meaning
=============  ====================  =================================================
``images``     ``uint8[total]``      encoded image files (JPEG, PNG ...) concatenated
``offsets``    ``int64[N+1]``        image ``i`` is ``images[offsets[i]:offsets[i+1]]``
``labels``     ``int64[N]``          optional, class index per image
``masks``      ``uint8[N, H, W]``    optional, per-pixel class id
``classes``    ``str[C]``            optional, class names (index = id)
``ignore_index`` ``int`` (0-d)       optional, void mask value
=============  ====================  =================================================

Only the images chosen by ``n_images`` are decoded. The encoded images may differ in size when the
file has no ``masks``; with ``image_size=None`` they then load as a mixed-size ImageSet (a list of
``uint8[H_i, W_i, 3]``). With ``image_size`` (an int or ``[H, W]``) every image and mask is
scaled to cover ``H x W`` and centre-cropped to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simlink.data.base import ImageSet
from simlink.data.loaders.transforms import decode_rgb, resize_crop, select_indices, size_record, stack


def load_packed(path: Path, *, name: str, split: str, n_images: int | None, image_size: int | tuple[int, int] | None,
                seed: int, classes: list[str] | None = None, ignore_index: int | None = None,
                meta: dict | None = None) -> ImageSet:
    """Load (a subset of) one packed ``.npz`` file.

    Args:
        path: the ``.npz`` file.
        name, split: stored in the returned :class:`ImageSet`.
        n_images, seed: subset selection, see :func:`select_indices`.
        image_size: ``None`` for native size, an int ``s`` (``s x s``) or ``(H, W)``: each image
            (and mask) is scaled to cover ``H x W`` and centre-cropped to it (:func:`resize_crop`).
        classes: class names used when the file has no ``classes`` key.
        ignore_index: void mask value used when the file has no ``ignore_index`` key.
        meta: extra provenance merged into ``ImageSet.meta``.

    Returns:
        :class:`ImageSet` with ``uint8[n, H, W, 3]`` images and the file's labels / masks; images of
        different sizes (only possible without ``image_size`` and without masks) come as a list of
        ``uint8[H_i, W_i, 3]``.

    Raises:
        ValueError: malformed file (missing keys, inconsistent lengths, mask / image size mismatch).
    """
    what = f"{name}/{split} ({path})"
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        if not {"images", "offsets"} <= keys:
            raise ValueError(f"{path}: a packed dataset needs keys 'images' and 'offsets', found {sorted(keys)}")
        offsets = np.asarray(z["offsets"], dtype=np.int64)
        data = z["images"]
        n_total = len(offsets) - 1
        if n_total < 0 or data.dtype != np.uint8 or data.ndim != 1 or offsets[-1] != len(data) \
                or np.any(np.diff(offsets) <= 0) or offsets[0] != 0:
            raise ValueError(f"{path}: 'offsets' must be increasing from 0 to len(images)={len(data)} "
                             "and 'images' must be uint8[total_bytes]")
        labels = masks = None
        if "labels" in keys:
            labels = np.asarray(z["labels"], dtype=np.int64)
            if labels.shape != (n_total,):
                raise ValueError(f"{path}: 'labels' has shape {list(labels.shape)}, expected [{n_total}]")
        if "masks" in keys:
            masks = z["masks"]
            if masks.dtype != np.uint8 or masks.ndim != 3 or len(masks) != n_total:
                raise ValueError(f"{path}: 'masks' must be uint8[{n_total}, H, W], "
                                 f"got {masks.dtype}{list(masks.shape)}")
        if "classes" in keys:
            classes = [str(c) for c in z["classes"]]
        if "ignore_index" in keys:
            ignore_index = int(z["ignore_index"])

    idx = select_indices(n_total, n_images, seed, what, labels)
    imgs, msks = [], ([] if masks is not None else None)
    for i in idx:
        img = decode_rgb(data[offsets[i]:offsets[i + 1]])
        m = None
        if masks is not None:
            m = masks[i]
            if m.shape != img.shape[:2]:
                raise ValueError(f"{path}: image {i} is {img.shape[1]}x{img.shape[0]} "
                                 f"but its mask is {m.shape[1]}x{m.shape[0]}")
        img, m = resize_crop(img, m, image_size)
        imgs.append(img)
        if msks is not None:
            msks.append(m)
    images, masks_out = stack(imgs, msks, what, allow_mixed=True)
    return ImageSet(
        images=images,
        labels=None if labels is None else labels[idx],
        masks=masks_out,
        classes=list(classes or []),
        name=name,
        split=split,
        ignore_index=ignore_index,
        meta={"file": str(path), "layout": "packed npz", "n_available": n_total, "seed": seed,
              "image_size": size_record(image_size), **(meta or {})},
    )
