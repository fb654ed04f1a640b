"""Any data set in the packed offline format (:mod:`simlink.data.loaders.packed`).

``root`` is either a ``.npz`` file (``split`` is then only a label) or a folder holding
``<split>.npz``; without ``root`` the usual places are searched for ``npz/<split>.npz``.
Labels, masks, class names and ``ignore_index`` come from the file when it has them.
"""

from __future__ import annotations

from pathlib import Path

from simlink.data.base import ImageSet
from simlink.data.loaders.locate import Layout, locate
from simlink.data.loaders.packed import load_packed
from simlink.errors import DatasetNotFoundError

NAME = "npz"


def load_npz(split: str = "test", n_images: int | None = None, image_size: int | tuple[int, int] | None = None,
             root: str | Path | None = None, seed: int = 0, download: bool = False) -> ImageSet:
    """Load a packed ``.npz``; see the module docstring for how ``root`` and ``split`` pick the file.

    ``image_size``: ``None`` (native), an int ``s`` or ``(H, W)``, as in
    :func:`~simlink.data.loaders.packed.load_packed`."""
    if root is not None and Path(root).expanduser().suffix == ".npz":
        path = Path(root).expanduser()
        if not path.is_file():
            raise DatasetNotFoundError(f"dataset 'npz': file {path} does not exist; "
                                       "set `root:` to a packed .npz file or to a folder holding <split>.npz")
    else:
        folder, _ = locate(NAME, split, root, [Layout("packed npz", (f"{split}.npz",))], download=download)
        path = folder / f"{split}.npz"
    return load_packed(path, name=NAME, split=split, n_images=n_images, image_size=image_size, seed=seed,
                       meta={"root": str(path.parent)})
