"""One place that imports numba for simlink's compiled kernels (the LDPC decoder, the entropy coder).

numba caches compiled kernels in ``__pycache__`` beside the module that defines them (compiled once
per machine, then loaded in well under a second). On a read-only install that fails, so unless the
user chose ``NUMBA_CACHE_DIR`` they go to ``<simlink cache root>/numba`` instead
(``$SIMLINK_CACHE`` or ``~/.cache/simlink``). The folder is decided before numba's first import,
which reads the variable once.
"""

from __future__ import annotations

import os
from pathlib import Path

_IMPORT_ERROR: str | None = None


def import_numba():
    """The ``numba`` module, or ``None`` when it cannot be imported (see :func:`numba_error`)."""
    global _IMPORT_ERROR
    if "NUMBA_CACHE_DIR" not in os.environ and not os.access(Path(__file__).resolve().parent, os.W_OK):
        from simlink.learned.cache import cache_root

        os.environ["NUMBA_CACHE_DIR"] = str(cache_root() / "numba")
    try:
        import numba
    except Exception as exc:  # pragma: no cover - depends on the installation
        _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
        return None
    return numba


def numba_error() -> str | None:
    """Why numba failed to import (``None`` if it imported or was not tried)."""
    return _IMPORT_ERROR
