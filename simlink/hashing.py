"""Every hash simlink computes, in one place.

* :func:`stable_hash` — short sha256 of a JSON-serialisable object with sorted keys: scenario
  context hashes, method-settings hashes, model-cache keys;
* :func:`array_fingerprint` — dtypes, shapes and bytes of arrays (training data identity);
* :func:`module_fingerprint` — a torch module's state dict (frozen task models);
* :func:`file_digest` — a file's md5 / sha256, read in chunks (dataset archives, weight files).

Only :func:`module_fingerprint` needs torch, and imports it when called.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np


def stable_hash(obj: Any, n: int = 16) -> str:
    """First ``n`` hex digits of the sha256 of ``obj`` as canonical JSON (sorted keys, no
    spaces, ``str()`` for anything JSON does not know)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def array_fingerprint(*arrays: np.ndarray | list | None, n: int = 16) -> str:
    """Hash of the arrays' dtypes, shapes and bytes (``None`` entries count as absent). A list
    of arrays (images of mixed sizes) hashes as its elements in order."""
    h = hashlib.sha256()

    def feed(a) -> None:
        if a is None:
            h.update(b"none")
            return
        if isinstance(a, (list, tuple)):
            h.update(f"list{len(a)}".encode())
            for item in a:
                feed(item)
            return
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))

    for a in arrays:
        feed(a)
    return h.hexdigest()[:n]


def module_fingerprint(module, n: int = 16) -> str:
    """Hash of a ``torch.nn.Module``'s state dict (names, shapes, dtypes, values)."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:n]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest (``"sha256"`` or ``"md5"``, any :mod:`hashlib` name) of the file at ``path``."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def derive_seed(*parts: Any) -> int:
    """A seed in ``[0, 2^63)`` from a hash of ``parts`` joined by ``|`` (their ``str()``): the
    same parts give the same seed on every machine and in every order of execution."""
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") % (2**63)
