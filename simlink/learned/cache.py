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
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def fingerprint(obj: Any, n: int = 16) -> str:
    """First ``n`` hex digits of the sha256 of ``obj`` as canonical JSON (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def array_fingerprint(*arrays: np.ndarray | None, n: int = 16) -> str:
    """Hash of the arrays' dtypes, shapes and bytes (``None`` entries count as absent)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:n]


def module_fingerprint(module: torch.nn.Module, n: int = 16) -> str:
    """Hash of a module's state dict (names, shapes, values); identifies frozen task models."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:n]


def safe_torch_load(path: str | os.PathLike) -> dict:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with a clear error."""
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
