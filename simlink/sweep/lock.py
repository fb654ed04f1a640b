"""One writer per output folder: a lock file naming its holder, stale locks detected.

Two runs writing into the same ``--out`` (a resubmitted batch job, two array tasks given the same
folder) would interleave their rows and manifests. :class:`FolderLock` makes the second one fail
at once with a one-line message naming the holder.

The lock is the file ``<folder>/.simlink.lock``, a :class:`simlink.lockfile.LockFile` (its
holder's host, pid, start time and command; a heartbeat while held). A lock left behind by a
killed run (SIGKILL, a node crash) is *stale* and taken over with one line on the log: on the
same host when its process no longer exists, from another host after
:data:`simlink.lockfile.STALE_S` seconds without a heartbeat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from simlink.errors import SimlinkError
from simlink.lockfile import LockFile

LOCK_NAME = ".simlink.lock"


class FolderBusy(SimlinkError):
    """Another live run holds the folder's lock."""


class FolderLock:
    """Context manager: hold ``folder``'s lock for the enclosed block.

    Args:
        folder: an existing folder.
        log: where the one-line note about a taken-over stale lock goes.

    Raises:
        FolderBusy: a live run (this host) or a run with a recent heartbeat (another host)
            holds the lock.
    """

    def __init__(self, folder: str | Path, log: Callable[[str], None] = lambda s: None):
        self.lock = LockFile(Path(folder) / LOCK_NAME, log)
        self.path = self.lock.path

    @property
    def held(self) -> bool:
        return self.lock.held

    def __enter__(self) -> "FolderLock":
        holder = self.lock.try_acquire()
        if holder is not None:
            raise FolderBusy(
                f"{self.path.parent}: another simlink run ({holder.where()}, started {holder.started}) is writing "
                f"here; wait for it or choose another --out (if that run is gone, delete {self.path})")
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()
