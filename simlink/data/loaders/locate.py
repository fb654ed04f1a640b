"""Where a dataset's files are looked for, and the error that lists every place tried.

A dataset ``<name>`` is searched, in this order, in:

1. the explicit ``root`` (scenario ``root:``), and ``root/<name>``;
2. ``$SIMLINK_DATA/<name>`` (when the environment variable is set);
3. ``~/.cache/simlink/datasets/<name>`` (where ``download: true`` puts it).

In each folder every accepted *layout* (e.g. CIFAR-10's official python batches, or the
packed ``.npz`` format) is checked; the first folder holding all files of a layout wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from simlink.errors import DatasetNotFoundError

ENV_VAR = "SIMLINK_DATA"


@dataclass(frozen=True)
class Layout:
    """One accepted on-disk layout of a dataset split.

    Attributes:
        name: short description shown in errors, e.g. ``"official python batches"``.
        files: paths relative to the dataset folder that must exist; a trailing ``/`` means
            a directory (e.g. ``"train/"``).
    """

    name: str
    files: tuple[str, ...]

    def missing(self, folder: Path) -> list[str]:
        """The entries of ``files`` that do not exist under ``folder`` (as written in ``files``)."""
        out = []
        for rel in self.files:
            p = folder / rel.rstrip("/")
            ok = p.is_dir() if rel.endswith("/") else p.is_file()
            if not ok:
                out.append(rel)
        return out


def cache_dir(name: str) -> Path:
    """``~/.cache/simlink/datasets/<name>``: the download target (``Path``, not created here)."""
    return Path.home() / ".cache" / "simlink" / "datasets" / name


def search_dirs(name: str, root: str | Path | None) -> list[tuple[Path | None, str]]:
    """Every place looked for dataset ``name``, in order, as ``(folder or None, how it was chosen)``.

    ``folder`` is ``None`` for a place that is not configured (no ``root``, ``$SIMLINK_DATA``
    not set); such entries are still listed so that error messages name them.
    """
    places: list[tuple[Path | None, str]] = []
    if root is None:
        places.append((None, "`root:` (not given)"))
    else:
        r = Path(root).expanduser()
        places.append((r, "root"))
        if r.name != name:
            places.append((r / name, "root/<name>"))
    env = os.environ.get(ENV_VAR)
    if env:
        places.append((Path(env).expanduser() / name, f"${ENV_VAR}/<name>"))
    else:
        places.append((None, f"${ENV_VAR}/{name} (${ENV_VAR} is not set)"))
    places.append((cache_dir(name), "download cache"))
    return places


def find(name: str, root: str | Path | None, layouts: list[Layout]) -> tuple[Path, Layout] | None:
    """The first ``(folder, layout)`` among ``search_dirs`` x ``layouts`` with no missing file, else ``None``."""
    for folder, _ in search_dirs(name, root):
        if folder is None or not folder.is_dir():
            continue
        for layout in layouts:
            if not layout.missing(folder):
                return folder, layout
    return None


def not_found(name: str, split: str, root: str | Path | None, layouts: list[Layout], *,
              downloadable: bool = False, download_requested: bool = False) -> DatasetNotFoundError:
    """A :class:`DatasetNotFoundError` naming every place looked, what was missing there, and the fixes."""
    lines = [f"dataset {name!r} (split {split!r}) not found. Looked in:"]
    for folder, how in search_dirs(name, root):
        if folder is None:
            lines.append(f"  - {how}")
            continue
        if not folder.is_dir():
            lines.append(f"  - {folder}  [{how}]: folder does not exist")
            continue
        missing = "; ".join(f"{l.name}: {', '.join(l.missing(folder))}" for l in layouts)
        lines.append(f"  - {folder}  [{how}]: missing {missing}")
    lines.append("Expected, in one of those folders, any one of these layouts:")
    for layout in layouts:
        lines.append(f"  - {layout.name}: {', '.join(layout.files)}")
    fixes = [
        "set `root:` in the scenario to the folder holding these files",
        f"or set {ENV_VAR} to a folder that contains {name}/",
    ]
    if downloadable:
        fixes.append(f"or set `download: true` to fetch the official archive into {cache_dir(name)}")
    lines.append("Fix: " + ", ".join(fixes) + ".")
    if download_requested and not downloadable:
        lines.append(f"(`download: true` was given, but {name!r} has no automatic download: "
                     "get it from its official site.)")
    return DatasetNotFoundError("\n".join(lines))


def locate(name: str, split: str, root: str | Path | None, layouts: list[Layout], *,
           downloadable: bool = False, download: bool = False) -> tuple[Path, Layout]:
    """Find a split on disk, downloading it first when ``download`` is set and it is missing.

    Returns:
        ``(folder, layout)``: the dataset folder and the layout found there.

    Raises:
        DatasetNotFoundError: nothing found (message from :func:`not_found`), or the download failed.
    """
    hit = find(name, root, layouts)
    if hit is None and download and downloadable:
        from simlink.data.download import download_dataset

        download_dataset(name)
        hit = find(name, root, layouts)
    if hit is None:
        raise not_found(name, split, root, layouts, downloadable=downloadable, download_requested=download)
    return hit
