"""A lock file naming its holder, with stale locks detected: the one mechanism behind "one writer
per output folder" (:mod:`simlink.sweep.lock`) and "one trainer per model-cache entry"
(:mod:`simlink.learned.cache`).

The lock is a file created atomically (``O_CREAT | O_EXCL``, which is atomic on local file
systems and on NFSv3+) holding ``{"host", "pid", "started", "command"}`` as JSON. While it is
held, a daemon thread touches the file every :data:`HEARTBEAT_S` seconds. A lock is *stale* when

* its holder ran on this host and that process no longer exists (SIGKILL, OOM kill), or names
  this very process without being held by it (a restarted container reusing the pid), or
* the file has not been touched for ``stale_s`` seconds (default :data:`STALE_S`, well above
  the heartbeat so clock skew between nodes and a busy file server do not matter): the only
  test for a holder on another host, whose processes cannot be checked from here, and on this
  host the answer to a suspended job or a pid reused after a reboot, or
* it cannot be parsed (a crash between creating and writing it) and is older than 5 s.

A lock file this process may not read is taken as held by someone unknown.

A stale lock is removed and taken over, with one line on the log naming the old holder.

Written by hand: the standard library has no cross-platform advisory lock that also works on
NFS (``fcntl`` locks are unreliable there and vanish silently with the holder's node), and the
holder's identity is what the user needs to see; the lock packages on PyPI (``filelock``,
``portalocker``) wrap those same OS locks and say nothing about the holder.
"""

from __future__ import annotations

import json
import os
import secrets
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
    token: str = ""

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


#: Lock files this process holds (resolved paths): a lock naming this process's pid that is not
#: in here was left by an earlier process that had the same pid (a restarted container).
_HELD: set[str] = set()


class LockFile:
    """One lock file; :meth:`try_acquire` never blocks, :meth:`release` gives it back.

    Args:
        path: the lock file (its folder must exist).
        log: where the one-line notes (a taken-over stale lock, a lock lost to another process) go.
        stale_s: age (seconds since the last heartbeat) after which a lock is stale even if a
            process of its pid exists (a suspended job, a pid reused after a reboot).
        heartbeat_s: seconds between touches of the file while held.

    Every lock carries a random ``token``: the heartbeat and :meth:`release` touch or delete the
    file only while it still holds this lock's token, and a stale lock is taken over by
    renaming it aside first (atomic) and checking that the renamed file is the one judged stale,
    so two processes taking over one stale lock never both end up holding it.
    """

    def __init__(self, path: str | os.PathLike, log: Callable[[str], None] = lambda s: None, *,
                 stale_s: float = STALE_S, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.path = Path(path)
        self.log = log
        self.stale_s = stale_s
        self.heartbeat_s = heartbeat_s
        self.held = False
        self.lost = False
        self.token = ""
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def try_acquire(self) -> Holder | None:
        """Take the lock: ``None`` when taken (now held), else the live :class:`Holder`.
        A stale lock is taken over (one log line)."""
        token = secrets.token_hex(8)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "token": token,
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
            self.held, self.lost, self.token = True, False, token
            _HELD.add(str(self.path.resolve()))
            self._start_heartbeat()
            return None
        return self.holder() or Holder("?", -1)

    def holder(self) -> Holder | None:
        """The holder recorded in the file, or ``None`` (no file, or unreadable)."""
        try:
            return _parse(self.path.read_bytes())
        except OSError:
            return None

    def _live_holder(self) -> Holder | None:
        """The holder if the existing lock is live; a stale one is taken away (``None``: retry)."""
        try:
            raw = self.path.read_bytes()
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None  # released meanwhile
        except PermissionError:
            return Holder("?", -1, "?", "unreadable lock file (permission denied)")
        holder = _parse(raw)
        if holder is None:
            if age < 5.0:  # being written right now by its creator
                time.sleep(0.2)
                return self.holder() or Holder("?", -1)
            note = f"simlink: {self.path} is unreadable; taking it over"
        elif age > self.stale_s:
            note = (f"simlink: taking over the stale lock {self.path} of {holder.where()} "
                    f"(started {holder.started}, no heartbeat for {age:.0f} s)")
        elif holder.host == socket.gethostname():
            mine = holder.pid == os.getpid() and str(self.path.resolve()) in _HELD
            if mine or (holder.pid != os.getpid() and pid_alive(holder.pid)):
                return holder
            note = (f"simlink: taking over the stale lock {self.path} of pid {holder.pid} "
                    f"(started {holder.started}, no longer running)")
        else:
            return holder
        if self._break(raw):
            self.log(note)
        return None

    def _break(self, raw: bytes) -> bool:
        """Remove the stale lock whose content is ``raw``: rename it aside (atomic), and if what was
        renamed is not that lock (another process replaced it meanwhile), put it back."""
        aside = self.path.with_name(f"{self.path.name}.stale-{secrets.token_hex(6)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False  # someone else took it away first
        try:
            if aside.read_bytes() == raw:
                return True
            try:  # a fresh lock of another process: restore it (fails if the path is taken again)
                os.link(aside, self.path)
            except OSError:
                pass
            return False
        finally:
            aside.unlink(missing_ok=True)

    def _owned(self) -> bool:
        h = self.holder()
        return h is not None and h.token == self.token

    def _start_heartbeat(self) -> None:
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    if not self._owned():
                        raise OSError("the lock file now names another holder")
                    os.utime(self.path)
                except OSError as exc:
                    self.lost = True
                    self.log(f"simlink: lost the lock {self.path} ({exc}); another run may be writing too")
                    return

        self._beat = threading.Thread(target=beat, name=f"simlink-lock-{self.path.name}", daemon=True)
        self._beat.start()

    def release(self) -> None:
        """Give the lock back (no-op when not held; a lock taken over by another process is
        left to it)."""
        if not self.held:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5.0)
            self._beat = None
        if self._owned():
            self.path.unlink(missing_ok=True)
        _HELD.discard(str(self.path.resolve()))
        self.held = False


def _parse(raw: bytes) -> Holder | None:
    try:
        d = json.loads(raw)
        return Holder(str(d["host"]), int(d["pid"]), str(d.get("started", "?")), str(d.get("command", "")),
                      str(d.get("token", "")))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
