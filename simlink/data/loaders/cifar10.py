"""CIFAR-10 (Krizhevsky 2009): 32x32 RGB, 10 classes; splits ``train`` (50,000) and ``test`` (10,000).

Accepted layouts in the dataset folder (see :mod:`simlink.data.loaders.locate` for where):

* official python release: ``cifar-10-batches-py/data_batch_1`` .. ``_5`` and ``test_batch``
  (pickled dicts, read with ``pickle`` and ``encoding="bytes"`` -- only from this layout);
* packed offline format: ``train.npz`` / ``test.npz`` (:mod:`simlink.data.loaders.packed`).

``download=True`` fetches the official archive into ``~/.cache/simlink/datasets/cifar10``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from simlink.data.base import ImageSet
from simlink.data.loaders.locate import Layout, locate
from simlink.data.loaders.packed import load_packed
from simlink.data.loaders.transforms import resize_crop_batch, select_indices, size_record

NAME = "cifar10"
SPLITS = ("train", "test")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
BATCH_DIR = "cifar-10-batches-py"
_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def layouts(split: str) -> list[Layout]:
    """The accepted layouts for ``split``: official python batches, then packed npz."""
    return [
        Layout("official python batches", tuple(f"{BATCH_DIR}/{b}" for b in _BATCHES[split])),
        Layout("packed npz", (f"{split}.npz",)),
    ]


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain containers and numpy arrays (what a CIFAR batch holds).

    Any other global a pickle names (the way a malicious file would run code) is refused.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official pickled batch -> ``(uint8[n, 32, 32, 3] RGB, int64[n] labels)``.

    Read with a restricted unpickler: only numpy arrays and plain containers are built.
    """
    with open(path, "rb") as f:
        try:
            d = _BatchUnpickler(f, encoding="bytes").load()
        except pickle.UnpicklingError as e:
            raise ValueError(f"{path}: not a CIFAR-10 python batch ({e})") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ValueError(f"{path}: not a CIFAR-10 python batch (expected a dict with b'data' and b'labels')")
    data = np.asarray(d[b"data"], dtype=np.uint8)
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path}: data has shape {list(data.shape)} for {len(labels)} labels, expected [n, 3072]")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10(split: str = "test", n_images: int | None = None, image_size: int | tuple[int, int] | None = None,
                 root: str | Path | None = None, seed: int = 0, download: bool = False) -> ImageSet:
    """Load CIFAR-10 ``split``: ``uint8[n, 32, 32, 3]`` images, ``int64[n]`` labels 0..9.

    ``image_size``: ``None`` (native 32x32), an int ``s`` or ``(H, W)``: images scaled to cover
    ``H x W`` and centre-cropped to it, ``uint8[n, H, W, 3]``."""
    folder, layout = locate(NAME, split, root, layouts(split), downloadable=True, download=download)
    if layout.name == "packed npz":
        return load_packed(folder / f"{split}.npz", name=NAME, split=split, n_images=n_images,
                           image_size=image_size, seed=seed, classes=CLASSES, meta={"root": str(folder)})
    parts = [read_batch(folder / rel) for rel in layout.files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    idx = select_indices(len(images), n_images, seed, f"{NAME}/{split}", labels)
    return ImageSet(images=resize_crop_batch(images[idx], image_size), labels=labels[idx], classes=list(CLASSES),
                    name=NAME, split=split,
                    meta={"root": str(folder), "layout": layout.name, "n_available": len(images),
                          "seed": seed, "image_size": size_record(image_size)})
