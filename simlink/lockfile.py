"""A lock file naming its holder, with stale locks detected: the one mechanism behind "one writer
per output folder" (:mod:`simlink.sweep.lock`) and "one trainer per model-cache entry"
(:mod:`simlink.learned.cache`).

The lock is a file created atomically (``O_CREAT | O_EXCL``, which is atomic on local file
systems and on NFSv3+) holding ``{"host", "pid", "started", "command"}`` as JSON. While it is
held, a daemon thread touches the file every :data:`HEARTBEAT_S` seconds. A lock is *stale* when

* its holder ran on this host and that process no longer exists (SIGKILL, OOM kill), or
* its holder ran on another host (whose processes cannot be checked from here) and the file has
  not been touched for ``stale_s`` seconds (default :data:`STALE_S`, well above the heartbeat
  so clock skew between nodes and a busy file server do not matter), or
* it cannot be read (a crash between creating and writing it).

A stale lock is removed and taken over, with one line on the log naming the old holder.

Written by hand: the standard library has no cross-platform advisory lock that also works on
NFS (``fcntl`` locks are unreliable there and vanish silently with the holder's node), and the
holder's identity is what the user needs to see; the lock packages on PyPI (``filelock``,
``portalocker``) wrap those same OS locks and say nothing about the holder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

#: Seconds between two touches of a held lock file.
HEARTBEAT_S = 30.0
#: A lock of another host untouched for this long is stale.
STALE_S = 600.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: ``host``, ``pid``, ``started`` (ISO time) and ``command``."""

    host: str
    pid: int
    started: str = "?"
    command: str = ""

    def where(self) -> str:
        """``"pid 123 on this host"`` or ``"pid 123 on host node7"``."""
        here = "this host" if self.host == socket.gethostname() else f"host {self.host}"
        return f"pid {self.pid} on {here}"


def pid_alive(pid: int) -> bool:
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


class LockFile:
    """One lock file; :meth:`try_acquire` never blocks, :meth:`release` gives it back.

    Args:
        path: the lock file (its folder must exist).
        log: where the one-line note about a taken-over stale lock goes.
        stale_s: age (seconds since the last heartbeat) after which another host's lock is stale.
        heartbeat_s: seconds between touches of the file while held.
    """

    def __init__(self, path: str | os.PathLike, log: Callable[[str], None] = lambda s: None, *,
                 stale_s: float = STALE_S, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.path = Path(path)
        self.log = log
        self.stale_s = stale_s
        self.heartbeat_s = heartbeat_s
        self.held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def try_acquire(self) -> Holder | None:
        """Take the lock: ``None`` when taken (now held), else the live :class:`Holder`.
        A stale lock is taken over (one log line)."""
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv)}
        for _ in range(5):  # a stale or vanished lock is removed and the creation retried
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                holder = self._live_holder()
                if holder is not None:
                    return holder
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            self._start_heartbeat()
            return None
        return self.holder() or Holder("?", -1)

    def holder(self) -> Holder | None:
        """The holder recorded in the file, or ``None`` (no file, or unreadable)."""
        try:
            d = json.loads(self.path.read_text())
            return Holder(str(d["host"]), int(d["pid"]), str(d.get("started", "?")), str(d.get("command", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _live_holder(self) -> Holder | None:
        """The holder if the existing lock is live; a stale one is removed (``None``: retry)."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None  # released meanwhile
        holder = self.holder()
        if holder is None:
            if age < 5.0:  # being written right now by its creator
                time.sleep(0.2)
                return self.holder() or Holder("?", -1)
            self.log(f"simlink: {self.path} is unreadable; taking it over")
        elif holder.host == socket.gethostname():
            if holder.pid == os.getpid() or pid_alive(holder.pid):
                return holder
            self.log(f"simlink: taking over the stale lock {self.path} of pid {holder.pid} "
                     f"(started {holder.started}, no longer running)")
        elif age <= self.stale_s:
            return holder
        else:
            self.log(f"simlink: taking over the stale lock {self.path} of {holder.where()} "
                     f"(started {holder.started}, no heartbeat for {age:.0f} s)")
        self.path.unlink(missing_ok=True)
        return None

    def _start_heartbeat(self) -> None:
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    os.utime(self.path)
                except OSError:
                    return

        self._beat = threading.Thread(target=beat, name=f"simlink-lock-{self.path.name}", daemon=True)
        self._beat.start()

    def release(self) -> None:
        """Give the lock back (no-op when not held)."""
        if not self.held:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5.0)
            self._beat = None
        self.path.unlink(missing_ok=True)
        self.held = False
