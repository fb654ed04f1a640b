"""The in-memory image set every loader returns and every method consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageSet:
    """A batch of RGB images with optional labels and segmentation masks.

    Attributes:
        images: ``uint8[N, H, W, 3]``, RGB, all of one size.
        labels: ``int64[N]`` class index per image, or ``None``.
        masks: ``uint8[N, H, W]`` per-pixel class id, or ``None``. ``ignore_index`` marks void.
        classes: class names (index = id), for labels or masks.
        name: dataset name (e.g. ``"synthetic"``, ``"cifar10"``).
        split: split name (``"train"``, ``"test"``, ...).
        ignore_index: mask value to ignore in losses and mIoU (``None`` if none).
        meta: free-form provenance (root folder, file names, seed ...).
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    name: str = ""
    split: str = ""
    ignore_index: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(
                f"ImageSet.images must be uint8[N, H, W, 3], got {self.images.dtype}{list(self.images.shape)}"
            )
        n = len(self.images)
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"ImageSet.labels has {len(self.labels)} entries for {n} images")
        if self.masks is not None and self.masks.shape[:3] != self.images.shape[:3]:
            raise ValueError(
                f"ImageSet.masks shape {list(self.masks.shape)} does not match images {list(self.images.shape[:3])}"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, 3)`` of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_pixels(self) -> int:
        """Pixels per image, ``H * W`` (the denominator of bpp and channel uses per pixel)."""
        return int(self.images.shape[1] * self.images.shape[2])

    def subset(self, index) -> "ImageSet":
        """The images (and labels / masks) at ``index`` (slice or integer array)."""
        return ImageSet(
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            masks=None if self.masks is None else self.masks[index],
            classes=list(self.classes),
            name=self.name,
            split=self.split,
            ignore_index=self.ignore_index,
            meta=dict(self.meta),
        )
