"""Atomic file writes: a temporary file in the same folder, fsync, then :func:`os.replace`.

A process killed at any moment leaves either the previous or the new complete file, never half
of one. Used by the result store and the model cache.

The file ends with the permissions a plain ``open(path, "w")`` would give it (``0o666`` less the
process umask), not the ``0o600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read at each call (it can change while the process runs).

    On Linux it is read from ``/proc/self/status`` (no side effect); elsewhere with two
    :func:`os.umask` calls under a lock (the umask is ``0o077`` for the instant in between, so a file
    another thread creates then is at worst too private, never too open)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _default_mode() -> int:
    return 0o666 & ~current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), _default_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not hasattr(os, "fchmod"):
            os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    """``obj`` as indented JSON (sorted keys), atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` atomically."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
