"""Optional download of the official archives (torchvision-style): fetch, check md5, extract.

``SOURCES`` maps a dataset name to its archive (URL, md5, file name); tests and mirrors may
replace an entry (any URL ``urllib`` opens works, ``file://`` included). The archive is
extracted into ``~/.cache/simlink/datasets/<name>`` (e.g. ``.../cifar10/cifar-10-batches-py/``)
and deleted afterwards. Extraction refuses members that would land outside the target
folder, links and device files.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from simlink.data.loaders.locate import cache_dir
from simlink.hashing import file_digest
from simlink.errors import DatasetNotFoundError

log = logging.getLogger(__name__)


class DownloadError(DatasetNotFoundError):
    """A download failed (network, md5 mismatch, bad archive); the message names the URL and the fix."""


@dataclass(frozen=True)
class Source:
    """An official archive.

    Attributes:
        url: where to fetch it (``https://``, ``http://`` or ``file://``).
        md5: expected hex md5 of the archive.
        filename: name of the archive file while it is downloaded.
    """

    url: str
    md5: str
    filename: str


SOURCES: dict[str, Source] = {
    "cifar10": Source("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                      "c58f30108f718f92721af3b95e74349a", "cifar-10-python.tar.gz"),
    "stl10": Source("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
                    "91f7769df0f17e558f3565bffb0c7dfb", "stl10_binary.tar.gz"),
}


def fetch(url: str, path: Path, timeout: float = 60.0) -> None:
    """Download ``url`` to ``path`` (through ``path.part``, renamed when complete)."""
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: {exc}. Download it by hand, extract it and set "
                            "`root:` in the scenario (or SIMLINK_DATA) to the folder holding it.") from exc
    part.replace(path)


def extract_tar(archive: Path, dest: Path) -> None:
    """Extract a (compressed) tar archive into ``dest``, refusing unsafe members.

    Raises:
        DownloadError: not a tar archive, or a member is a link / device / escapes ``dest``.
    """
    dest = dest.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                target = (dest / m.name).resolve()
                if not (m.isfile() or m.isdir()) or not target.is_relative_to(dest):
                    raise DownloadError(f"{archive}: refusing unsafe archive member {m.name!r}")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                tar.extractall(dest, members=members)
    except tarfile.TarError as exc:
        raise DownloadError(f"{archive}: not a valid tar archive ({exc})") from exc


def download_dataset(name: str, dest: Path | None = None, source: Source | None = None) -> Path:
    """Fetch, verify and extract dataset ``name``'s archive.

    Args:
        name: a key of ``SOURCES``.
        dest: target folder (default ``~/.cache/simlink/datasets/<name>``), created if needed.
        source: archive to use instead of ``SOURCES[name]``.

    Returns:
        ``dest``.

    Raises:
        DownloadError: unknown name, network failure, md5 mismatch (the file is deleted), bad archive.
    """
    if source is None:
        if name not in SOURCES:
            raise DownloadError(f"no automatic download for dataset {name!r} (available: {sorted(SOURCES)})")
        source = SOURCES[name]
    dest = cache_dir(name) if dest is None else Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / source.filename
    if not (archive.is_file() and file_digest(archive, "md5") == source.md5):
        log.info("downloading %s to %s", source.url, archive)
        fetch(source.url, archive)
        got = file_digest(archive, "md5")
        if got != source.md5:
            archive.unlink()
            raise DownloadError(f"{source.url}: md5 {got} does not match the expected {source.md5} "
                                "(corrupt or changed download; it was deleted, try again or fetch it by hand)")
    log.info("extracting %s into %s", archive, dest)
    extract_tar(archive, dest)
    archive.unlink()
    return dest
