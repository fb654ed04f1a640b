"""What a manifest records about the software and machine behind a results table."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = [
    "simlink", "torch", "sionna", "numpy", "scipy", "pandas", "pyarrow", "pydantic",
    "imagecodecs", "pillow", "pillow-heif", "constriction", "matplotlib", "numba",
]


def package_versions() -> dict[str, str | None]:
    """Installed version of each package simlink's results depend on (None if absent)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision(path: str | Path | None = None) -> dict[str, str | bool | None]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the git checkout holding simlink."""
    where = Path(path) if path else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True, timeout=10
        )
        return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def resolve_device(requested: str) -> str:
    """Map a scenario's ``device`` (auto | cpu | cuda | cuda:N) to a torch device string.

    Raises:
        SimlinkError: CUDA requested but not available.
    """
    import torch

    from simlink.errors import SimlinkError

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SimlinkError(f"device: {requested!r} requested but torch sees no CUDA device (use 'cpu' or 'auto')")
        return "cuda:0" if requested == "cuda" else requested
    return requested


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, where ``platform.processor()`` is
    usually empty), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: str) -> dict[str, str | int | None]:
    """A description of the compute device (GPU name or CPU model, thread count)."""
    import torch

    info: dict[str, str | int | None] = {
        "torch_device": device,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
