"""Pretrained-weight records and where to find their files (torchvision-style).

A :class:`WeightsRecord` names a checkpoint file and its SHA-256; :func:`resolve_weights`
finds the file on disk (nothing is downloaded) and verifies its checksum;
:func:`load_state_dict` reads it with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from simlink.errors import SimlinkError
from simlink.hashing import file_digest

__all__ = ["WeightsRecord", "resolve_weights", "candidate_paths", "load_state_dict"]


@dataclass(frozen=True)
class WeightsRecord:
    """Description of one pretrained checkpoint.

    Attributes:
        name: short identifier (e.g. ``"resnet20_cifar10"``).
        filename: file name looked for in every search folder (e.g. ``"resnet20-12fca82f.th"``).
        sha256: hex SHA-256 of the file, lower case. Either the full 64-digit hash or a
            prefix of it (torchvision-style file names only carry the first 8 digits); a prefix
            is checked as a prefix match only. Empty string: no verification.
        num_classes: number of output classes of the model.
        mean: per-channel RGB mean used for input normalisation (inputs in [0, 1]).
        std: per-channel RGB standard deviation used for input normalisation.
        meta: free-form provenance (source URL, reported accuracy, licence ...).
    """

    name: str
    filename: str
    sha256: str
    num_classes: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    meta: dict = field(default_factory=dict)

    @property
    def is_prefix_hash(self) -> bool:
        """True when :attr:`sha256` is shorter than a full hash (prefix match only)."""
        return 0 < len(self.sha256) < 64


def candidate_paths(record: WeightsRecord, path: str | os.PathLike | None = None) -> list[Path]:
    """Every path :func:`resolve_weights` looks at, in order.

    1. ``path`` (a file, or a folder holding ``record.filename``), when given;
    2. ``$SIMLINK_WEIGHTS/<filename>``, when the variable is set;
    3. ``~/.cache/simlink/weights/<filename>``;
    4. the torch hub cache ``<torch.hub.get_dir()>/checkpoints/<filename>``
       (``~/.cache/torch/hub/checkpoints`` unless ``$TORCH_HOME`` / ``$XDG_CACHE_HOME`` say otherwise).
    """
    out: list[Path] = []
    if path is not None:
        p = Path(path).expanduser()
        out.append(p / record.filename if p.is_dir() else p)
    env = os.environ.get("SIMLINK_WEIGHTS")
    if env:
        out.append(Path(env).expanduser() / record.filename)
    out.append(Path.home() / ".cache" / "simlink" / "weights" / record.filename)
    out.append(Path(torch.hub.get_dir()) / "checkpoints" / record.filename)
    return out


def resolve_weights(record: WeightsRecord, path: str | os.PathLike | None = None) -> Path:
    """Find ``record``'s checkpoint file and verify its SHA-256.

    The first existing candidate (see :func:`candidate_paths`) is used. If ``record.sha256``
    is a full 64-digit hash it must match exactly; if it is shorter, the file's hash must
    start with it (prefix match: weaker, but all that torchvision-style names provide).

    Returns:
        The path of the verified file.

    Raises:
        SimlinkError: no candidate exists (the message lists every path looked at), or the
            file's hash does not match (the message names the expected and actual hash).
    """
    candidates = candidate_paths(record, path)
    for cand in candidates:
        if not cand.is_file():
            continue
        expected = record.sha256.lower()
        if expected:
            actual = file_digest(cand, "sha256")
            ok = actual.startswith(expected) if record.is_prefix_hash else actual == expected
            if not ok:
                kind = "prefix " if record.is_prefix_hash else ""
                raise SimlinkError(
                    f"checksum mismatch for weights {record.name!r} at {cand}: "
                    f"expected sha256 {kind}{expected}, actual sha256 {actual}"
                )
        return cand
    looked = "\n  ".join(str(c) for c in candidates)
    raise SimlinkError(
        f"weights {record.name!r} ({record.filename}) not found; looked at:\n  {looked}\n"
        f"Pass path=..., set $SIMLINK_WEIGHTS, or copy the file into one of these folders."
    )


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint's state dict on CPU (``weights_only=True``).

    Accepts a bare state dict or a dict with a ``"state_dict"`` entry; strips a
    ``"module."`` prefix left by ``nn.DataParallel``.
    """
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise SimlinkError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}
