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

Integrity: ``info.json`` records the sha256 of every file of a finished entry (``"sha256":
{"model.pt": ...}``, written by :meth:`ModelCache.write_info`). :meth:`ModelCache.is_done` checks
them; an entry whose hash does not match, whose ``info.json`` is garbled, or whose model or
checkpoint cannot be read is moved aside to ``<entry>.corrupt-<time>-<pid>-<random>`` (never deleted), one
warning line names it and the reason, and the caller sees a cache miss (it retrains). Entries
written before the hashes were recorded are trusted as before.

One writer per entry: :func:`load_or_build` trains an entry only while holding its lock file
``<entry>.lock`` (a :class:`simlink.lockfile.LockFile` beside the folder, so it survives the
folder being moved aside). A second run that needs the same entry (two array tasks, two
scenarios sharing a model) waits, with one log line naming the holder, and then loads what the
first one wrote; if the holder died, its stale lock is taken over and training resumes from its
checkpoint.

The hashes that make the keys (:func:`~simlink.hashing.stable_hash`,
:func:`~simlink.hashing.array_fingerprint`, :func:`~simlink.hashing.module_fingerprint`) live in
:mod:`simlink.hashing`. Importing this module needs no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from simlink.errors import SimlinkError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds between two looks at a cache entry another process is training.
WAIT_POLL_S = 2.0

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


class CorruptCacheEntry(SimlinkError):
    """A cache entry failed its integrity check; it has been moved aside (``moved_to``)."""

    def __init__(self, message: str, moved_to: Path | None = None) -> None:
        super().__init__(message)
        self.moved_to = moved_to


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: Files of an entry that ``info.json`` does not hash (itself, and the ever-changing checkpoint).
_UNHASHED = ("info.json", "checkpoint.pt")


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

    @property
    def lock_path(self) -> Path:
        """The entry's writer lock, ``<entry>.lock`` beside the entry folder."""
        return self.dir.with_name(f"{self.dir.name}.lock")

    @contextmanager
    def writer(self, log: Callable[[str], None] = lambda s: None, poll_s: float = WAIT_POLL_S) -> Iterator[None]:
        """Hold the entry's writer lock for the enclosed block; while another live process holds
        it, wait (one ``log`` line naming the holder, then a look every ``poll_s`` seconds)."""
        from simlink.lockfile import LockFile

        self.dir.parent.mkdir(parents=True, exist_ok=True)
        lock = LockFile(self.lock_path, log)
        waited_for = None
        while (holder := lock.try_acquire()) is not None:
            if holder != waited_for:
                log(f"model cache entry {self.dir} is being trained by {holder.where()} (started {holder.started}); "
                    f"waiting for it")
                waited_for = holder
            time.sleep(poll_s)
        try:
            yield
        finally:
            lock.release()

    def is_done(self) -> bool:
        """The finished model is on disk and passes :meth:`verify` (else the entry is moved aside
        and this is a miss)."""
        if not self.model_path.is_file():
            return False
        try:
            self.verify()
        except (CorruptCacheEntry, FileNotFoundError):
            return False
        return True

    def info(self) -> dict:
        """``info.json`` as a dict (empty if absent, or garbled: then the entry is moved aside)."""
        try:
            return self._read_info()
        except CorruptCacheEntry:
            return {}

    def _read_info(self) -> dict:
        try:
            text = self.info_path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self.quarantine(f"info.json unreadable ({exc})")
        try:
            info = json.loads(text.decode())
        except (UnicodeDecodeError, ValueError) as exc:
            self.quarantine(f"info.json garbled ({type(exc).__name__}: {exc})")
        if not isinstance(info, dict):
            self.quarantine(f"info.json garbled (a JSON {type(info).__name__}, not an object)")
        return info

    def verify(self) -> None:
        """Check the sha256 recorded in ``info.json`` of every file it lists (entries without
        recorded hashes pass). Raises :class:`CorruptCacheEntry` after moving the entry aside."""
        info = self._read_info()
        hashes = info.get("sha256")
        if hashes is None:
            return  # written before hashes were recorded: trusted as before
        if not isinstance(hashes, dict):
            self.quarantine("info.json garbled (sha256 is not a mapping)")
        for name, want in sorted(hashes.items()):
            path = self.dir / name
            try:
                got = file_sha256(path)
            except FileNotFoundError:
                raise  # vanished: another process moved the entry aside or is rewriting it (a miss)
            except OSError as exc:
                self.quarantine(f"{name} unreadable ({type(exc).__name__}: {exc})")
            if got != want:
                self.quarantine(f"{name} sha256 mismatch (recorded {str(want)[:12]}, found {got[:12]})")

    def write_info(self, info: dict) -> None:
        """Write ``info.json`` atomically: ``info`` plus ``"sha256"`` of every file of the entry
        (``model.pt`` and any other, not ``info.json``, the checkpoint or hidden temporary files).
        Call it after the entry's files are written."""
        from simlink.atomic import atomic_write_json

        hashes = {p.name: file_sha256(p) for p in sorted(self.dir.iterdir())
                  if p.is_file() and p.name not in _UNHASHED and not p.name.startswith(".")}
        atomic_write_json({**info, "sha256": hashes}, self.info_path)

    def publish(self, info: dict) -> None:
        """Finish an entry whose files are written: :meth:`write_info` (``info`` + the files'
        sha256), then delete the resumable checkpoint."""
        self.write_info(info)
        self.checkpoint_path.unlink(missing_ok=True)

    def load_model(self):
        """:func:`safe_torch_load` of ``model.pt`` after :meth:`verify`; an unreadable file moves
        the entry aside. Raises :class:`CorruptCacheEntry` (entry moved aside), FileNotFoundError."""
        self.verify()
        try:
            return safe_torch_load(self.model_path)
        except FileNotFoundError:
            raise
        except SimlinkError as exc:
            self.quarantine(f"model.pt unreadable ({_cause(exc)})")

    def load_checkpoint(self) -> dict | None:
        """The resumable checkpoint, or ``None`` if there is none; an unreadable / truncated one
        moves the entry aside (and gives ``None``: training restarts)."""
        if not self.checkpoint_path.is_file():
            return None
        try:
            ck = safe_torch_load(self.checkpoint_path)
            if not isinstance(ck, dict):
                raise SimlinkError(f"{self.checkpoint_path}: not a checkpoint (a {type(ck).__name__})")
        except FileNotFoundError:
            return None
        except SimlinkError as exc:
            try:
                self.quarantine(f"checkpoint.pt unreadable ({_cause(exc)})")
            except CorruptCacheEntry:
                return None
        return ck

    def quarantine(self, reason: str):
        """Move the entry folder aside to ``<entry>.corrupt-<time>-<pid>-<random>`` (never deleted), log one
        warning line, and raise :class:`CorruptCacheEntry`."""
        import secrets

        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = self.dir.with_name(f"{self.dir.name}.corrupt-{stamp}-{os.getpid()}-{secrets.token_hex(3)}")
        moved: Path | None = dest
        try:
            os.rename(self.dir, dest)  # a unique name: two processes never move onto one folder
        except OSError:
            moved = None  # already moved by another process (or not movable: it is left in place)
        reason = " ".join(reason.split())  # one line
        where = f"moved to {dest}" if moved is not None else "already moved aside"
        log.warning("model cache entry %s is corrupt: %s; %s, will retrain", self.dir, reason, where)
        raise CorruptCacheEntry(f"{self.dir}: {reason}", moved)


def load_or_build(cache: ModelCache, load: Callable[[], T], build: Callable[[], T],
                  log: Callable[[str], None] = lambda s: None) -> tuple[T, bool]:
    """``(load(), False)`` if ``cache`` holds a finished entry, else ``(build(), True)`` with the
    entry's writer lock held, so that one process builds an entry and the others wait and load it.

    ``load`` may raise :class:`CorruptCacheEntry` (the entry has been moved aside): then it is
    built. ``build`` writes the entry (model, ``info.json`` via :meth:`ModelCache.write_info`).
    The entry is looked at again once the lock is held: a process that waited loads what the
    holder wrote instead of training it a second time."""
    done, obj = _load_if_done(cache, load)
    if done:
        return obj, False
    with cache.writer(log):
        done, obj = _load_if_done(cache, load)
        return (obj, False) if done else (build(), True)


def _load_if_done(cache: ModelCache, load: Callable[[], T]) -> tuple[bool, T | None]:
    if cache.is_done():
        try:
            return True, load()
        except (CorruptCacheEntry, FileNotFoundError):
            pass  # moved aside and logged, or vanished under us (another process): a miss
    return False, None


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {cause}"
