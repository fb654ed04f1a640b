"""The in-memory image set every loader returns and every method consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simlink.errors import SimlinkError


class DatasetError(SimlinkError, ValueError):
    """A dataset's files cannot serve the scenario as written: an unreadable (corrupt, truncated)
    image, or fewer usable images than ``n_images``. One line naming the file or folder; the CLI
    prints it without a traceback. Also a ``ValueError``, like the loaders' other argument errors."""


def _describe(a) -> str:
    """``uint8[2, 3]``-style description of an array (or the type name of anything else)."""
    if isinstance(a, np.ndarray):
        return f"{a.dtype}{list(a.shape)}"
    return type(a).__name__


@dataclass
class ImageSet:
    """A batch of RGB images with optional labels and segmentation masks.

    Images come in one of two forms:

    * **uniform** (the common case): ``images`` is one ``uint8[N, H, W, 3]`` array and ``masks``
      (if any) one ``uint8[N, H, W]`` array.
    * **mixed sizes** (e.g. Kodak's 768x512 and 512x768, CLIC): ``images`` is a Python ``list``
      of ``uint8[H_i, W_i, 3]`` arrays and ``masks`` (if any) a ``list`` of ``uint8[H_i, W_i]``
      arrays, one per image and of its size. Per-image sizes are in :attr:`shapes` / :attr:`pixels`;
      :meth:`shape_groups` splits the set into uniform subsets.

    A list (or tuple) whose images all share one shape is stacked into an array on construction
    (masks likewise), so ``uniform`` always means ``images`` is an ``np.ndarray``; with array
    images, a list of masks is stacked too. An empty list is a (non-uniform) set of no images.

    Attributes:
        images: ``uint8[N, H, W, 3]`` RGB, or a ``list`` of ``uint8[H_i, W_i, 3]`` (mixed sizes).
        labels: ``int64[N]`` class index per image, or ``None``.
        masks: ``uint8[N, H, W]`` per-pixel class id (or a ``list`` of ``uint8[H_i, W_i]`` for
            mixed sizes), or ``None``. ``ignore_index`` marks void.
        classes: class names (index = id), for labels or masks.
        name: dataset name (e.g. ``"synthetic"``, ``"cifar10"``).
        split: split name (``"train"``, ``"test"``, ...).
        ignore_index: mask value to ignore in losses and mIoU (``None`` if none).
        meta: free-form provenance (root folder, file names, seed ...).
        skipped: names of files left out because they could not be read (``folder`` with
            ``skip_unreadable=True``); empty otherwise. Kept by :meth:`subset`.
    """

    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray | None = None
    masks: np.ndarray | list[np.ndarray] | None = None
    classes: list[str] = field(default_factory=list)
    name: str = ""
    split: str = ""
    ignore_index: int | None = None
    meta: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.images, (list, tuple)):
            self._check_list_images()
        elif isinstance(self.images, np.ndarray):
            if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
                raise ValueError(
                    f"ImageSet.images must be uint8[N, H, W, 3], got {self.images.dtype}{list(self.images.shape)} "
                    "(or a list of uint8[H, W, 3] arrays for images of different sizes)"
                )
        else:
            raise ValueError("ImageSet.images must be a uint8[N, H, W, 3] array or a list of uint8[H, W, 3] "
                             f"arrays (images of different sizes), got {_describe(self.images)}")
        n = len(self.images)
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"ImageSet.labels has {len(self.labels)} entries for {n} images")
        if self.masks is None:
            return
        if isinstance(self.masks, (list, tuple)) or not self.uniform:
            self._check_list_masks()
        elif not isinstance(self.masks, np.ndarray):
            raise ValueError("ImageSet.masks must be a uint8[N, H, W] array, a list of uint8[H, W] arrays "
                             f"or None, got {_describe(self.masks)}")
        elif self.masks.shape[:3] != self.images.shape[:3]:
            raise ValueError(
                f"ImageSet.masks shape {list(self.masks.shape)} does not match images {list(self.images.shape[:3])}"
            )

    def _check_list_images(self) -> None:
        """Validate list images; stack them into an array when they all share one shape."""
        images = list(self.images)
        for i, im in enumerate(images):
            if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[-1] != 3:
                raise ValueError(f"ImageSet.images[{i}] must be uint8[H, W, 3], got {_describe(im)} "
                                 f"(a list of images holds one uint8[H, W, 3] array per image)")
        if images and len({im.shape for im in images}) == 1:
            self.images = np.stack(images)
        else:
            self.images = images

    def _check_list_masks(self) -> None:
        """Validate masks one by one against their images; array images get stacked array masks, list
        images a list of masks."""
        masks, n = self.masks, len(self.images)
        if not isinstance(masks, (list, tuple, np.ndarray)):
            raise ValueError("ImageSet.masks must be a uint8[N, H, W] array, a list of uint8[H, W] arrays "
                             f"or None, got {_describe(masks)}")
        if len(masks) != n:
            raise ValueError(f"ImageSet.masks has {len(masks)} entries for {n} images")
        masks = list(masks)
        for i, (m, im) in enumerate(zip(masks, self.images)):
            if not isinstance(m, np.ndarray) or m.dtype != np.uint8 or m.ndim != 2:
                raise ValueError(f"ImageSet.masks[{i}] must be uint8[H, W], got {_describe(m)}")
            if m.shape != im.shape[:2]:
                raise ValueError(f"ImageSet.masks[{i}] shape {list(m.shape)} does not match "
                                 f"image {i} shape {list(im.shape[:2])}")
        if self.uniform:
            self.masks = np.stack(masks) if masks else np.zeros(self.images.shape[:3], np.uint8)
        else:
            self.masks = masks

    def __len__(self) -> int:
        return len(self.images)

    @property
    def uniform(self) -> bool:
        """``True`` when every image has one shape, i.e. ``images`` is a ``uint8[N, H, W, 3]`` array."""
        return isinstance(self.images, np.ndarray)

    def require_uniform(self, who: str, fix: str = "set dataset.image_size") -> "ImageSet":
        """``self`` if all images share one size, else :class:`~simlink.errors.SimlinkError` naming
        ``who`` (what needs one size) and ``fix``."""
        if not self.uniform and len(self):
            from simlink.errors import SimlinkError

            sizes = sorted({f"{w}x{h}" for h, w, _ in self.shapes})
            raise SimlinkError(f"{who}: {self.name or 'the data'}/{self.split or '?'} holds images of "
                               f"{len(sizes)} sizes ({', '.join(sizes[:3])}{', ...' if len(sizes) > 3 else ''}) "
                               f"but needs images of one size ({fix})")
        return self

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        """``(H_i, W_i, 3)`` of each image, in order."""
        if self.uniform:
            return [tuple(int(v) for v in self.images.shape[1:])] * len(self)  # type: ignore[list-item]
        return [tuple(int(v) for v in im.shape) for im in self.images]  # type: ignore[misc]

    @property
    def pixels(self) -> np.ndarray:
        """``int64[N]`` pixels of each image, ``H_i * W_i``."""
        if self.uniform:
            return np.full(len(self), self.images.shape[1] * self.images.shape[2], dtype=np.int64)
        return np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.int64)

    def _mixed_error(self, what: str) -> ValueError:
        distinct = list(dict.fromkeys(self.shapes))
        if not distinct:
            detail = "the set holds no images (an empty list), so there is no single image size"
        else:
            eg = " and ".join(f"{w}x{h}" for h, w, _ in distinct[:2])
            detail = f"the images differ in size ({len(distinct)} distinct sizes, e.g. {eg}, width x height)"
        return ValueError(f"ImageSet{f' {self.name!r}' if self.name else ''}.{what}: {detail}; "
                          "use .shapes / .pixels for per-image sizes, or .shape_groups() for uniform subsets "
                          "(or load with image_size to resize and centre-crop to one size (an int or [H, W]))")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, 3)`` of every image.

        Raises:
            ValueError: the images differ in size (see :attr:`shapes`, :meth:`shape_groups`).
        """
        if not self.uniform:
            raise self._mixed_error("image_shape")
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_pixels(self) -> int:
        """Pixels per image, ``H * W`` (the denominator of bpp and channel uses per pixel).

        Raises:
            ValueError: the images differ in size (see :attr:`pixels`, :meth:`shape_groups`).
        """
        if not self.uniform:
            raise self._mixed_error("num_pixels")
        return int(self.images.shape[1] * self.images.shape[2])

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` (negative counts from the end) as ``uint8[H_i, W_i, 3]``."""
        return self.images[i]

    def shape_groups(self) -> list[tuple[np.ndarray, "ImageSet"]]:
        """Split into uniform subsets, one per distinct image shape, in order of first appearance.

        Returns:
            ``[(index, subset), ...]``: ``index`` is ``int64[k]`` (ascending) positions in this set,
            ``subset`` is ``self.subset(index)`` (array images, labels / masks / meta kept). Every
            index appears in exactly one group. A uniform set gives ``[(np.arange(N), self)]``;
            an empty set gives ``[]``.
        """
        n = len(self)
        if n == 0:
            return []
        if self.uniform:
            return [(np.arange(n, dtype=np.int64), self)]
        groups: dict[tuple, list[int]] = {}
        for i, im in enumerate(self.images):
            groups.setdefault(im.shape, []).append(i)
        out = []
        for members in groups.values():
            idx = np.asarray(members, dtype=np.int64)
            out.append((idx, self.subset(idx)))
        return out

    def subset(self, index) -> "ImageSet":
        """The images (and labels / masks) at ``index`` (slice, integer array or boolean array).

        A mixed-size set gives a mixed set, or a uniform one when the chosen images share one shape.
        """
        if self.uniform:
            images, masks = self.images[index], None if self.masks is None else self.masks[index]
            labels = None if self.labels is None else self.labels[index]
        else:
            idx = np.arange(len(self))[index]
            if idx.ndim != 1:
                raise ValueError("ImageSet.subset: index must be a slice, an integer array or a boolean array, "
                                 f"got {index!r}")
            images = [self.images[i] for i in idx]
            masks = None if self.masks is None else [self.masks[i] for i in idx]
            labels = None if self.labels is None else np.asarray(self.labels)[idx]
        return ImageSet(
            images=images,
            labels=labels,
            masks=masks,
            classes=list(self.classes),
            name=self.name,
            split=self.split,
            ignore_index=self.ignore_index,
            meta=dict(self.meta),
            skipped=list(self.skipped),
        )
