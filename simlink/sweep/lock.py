"""One writer per output folder: a lock file naming its holder, stale locks detected.

Two runs writing into the same ``--out`` (a resubmitted batch job, two array tasks given the same
folder) would interleave their rows and manifests. :class:`FolderLock` makes the second one fail
at once with a one-line message naming the holder.

The lock is the file ``<folder>/.simlink.lock``, created atomically (``O_CREAT | O_EXCL``) and
holding ``{"host", "pid", "started", "command"}`` as JSON. A lock left behind by a killed run
(SIGKILL, a node crash) is *stale*: on the same host, its process no longer exists, and the
lock is taken over with one line on the log; on another host its liveness cannot be checked,
so the message says which host and pid hold it and that the file may be removed if that run is
gone. Written by hand: the standard library has no cross-platform advisory lock that also works
on NFS (where ``fcntl`` locks are unreliable), and the holder's identity is what the user needs.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from simlink.errors import SimlinkError

LOCK_NAME = ".simlink.lock"


class FolderBusy(SimlinkError):
    """Another live run holds the folder's lock."""


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class FolderLock:
    """Context manager: hold ``folder``'s lock for the enclosed block.

    Args:
        folder: an existing folder.
        log: where the one-line note about a taken-over stale lock goes.

    Raises:
        FolderBusy: a live process on this host, or a process on another host, holds the lock.
    """

    def __init__(self, folder: str | Path, log: Callable[[str], None] = lambda s: None):
        self.path = Path(folder) / LOCK_NAME
        self.log = log
        self.held = False

    def __enter__(self) -> "FolderLock":
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv)}
        for _ in range(3):  # a stale lock is removed and the creation retried
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                self._handle_existing(me["host"])
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise FolderBusy(f"{self.path.parent}: could not take the lock {self.path} (another run keeps taking it)")

    def _handle_existing(self, host: str) -> None:
        try:
            holder = json.loads(self.path.read_text())
            h_host, h_pid = str(holder["host"]), int(holder["pid"])
        except FileNotFoundError:
            return  # released meanwhile: retry
        except (OSError, ValueError, KeyError, TypeError):
            self.log(f"simlink: {self.path} is unreadable; taking it over")
            self.path.unlink(missing_ok=True)
            return
        since = holder.get("started", "?")
        if h_host == host and h_pid != os.getpid() and not _alive(h_pid):
            self.log(f"simlink: taking over the stale lock of pid {h_pid} (started {since}, no longer running)")
            self.path.unlink(missing_ok=True)
            return
        where = "this host" if h_host == host else f"host {h_host}"
        raise FolderBusy(
            f"{self.path.parent}: another simlink run (pid {h_pid} on {where}, started {since}) is writing here; "
            f"wait for it or choose another --out (if that run is gone, delete {self.path})")

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
