"""Where trained models live, and the keys that identify them.

A trained model is cached under ``<cache root>/models/<kind>/<key>/`` where ``key`` is a hash of
*everything that trained it*: the method's network and training settings, a fingerprint of the
training images (their bytes, not just the dataset's name), the frozen task model's weights,
the seed and a code version tag. Change any of those and a new model is trained; change none
and the cached one is loaded.

The cache root is, in order: an explicit argument, ``$SIMLINK_CACHE``, ``~/.cache/simlink``.

Files are written atomically (temporary file in the same folder + ``os.replace``), so a killed
training run never leaves a half-written checkpoint; ``torch.load(..., weights_only=True)``
reads them back (no pickled code is executed).

The hashes that make the keys (:func:`~simlink.hashing.stable_hash`,
:func:`~simlink.hashing.array_fingerprint`, :func:`~simlink.hashing.module_fingerprint`) live in
:mod:`simlink.hashing`. Importing this module needs no torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from simlink.errors import SimlinkError

#: Bump when a change to the training code makes old cached models invalid.
CODE_VERSION = "1"


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """The simlink cache folder (see module docstring); not created here."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("SIMLINK_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "simlink"


def safe_torch_load(path: str | os.PathLike) -> dict:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with a clear error."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise SimlinkError(f"{path}: cannot read checkpoint ({exc}); delete the file to retrain") from exc


class ModelCache:
    """Folder of one cached training job: ``<root>/models/<kind>/<key>/``.

    Files: ``checkpoint.pt`` (last resumable state), ``model.pt`` (the finished model) and
    ``info.json`` (what trained it, losses per epoch, wall time, device).
    """

    def __init__(self, kind: str, key: str, root: str | os.PathLike | None = None) -> None:
        self.kind = kind
        self.key = key
        self.dir = cache_root(root) / "models" / kind / key

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.pt"

    @property
    def model_path(self) -> Path:
        return self.dir / "model.pt"

    @property
    def info_path(self) -> Path:
        return self.dir / "info.json"

    def is_done(self) -> bool:
        """The finished model is on disk."""
        return self.model_path.is_file()

    def info(self) -> dict:
        """``info.json`` as a dict (empty if absent)."""
        if not self.info_path.is_file():
            return {}
        return json.loads(self.info_path.read_text())
