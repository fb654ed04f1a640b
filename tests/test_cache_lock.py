"""Issue 12: one writer per model-cache entry (a second run waits and loads what the first
trained), the lock file's staleness rules, and sha256-verified task models in the cache."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

from simlink.lockfile import LockFile

ROOT = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def test_lock_file_tells_live_holders_from_stale_ones(tmp_path):
    path, notes = tmp_path / "x.lock", []
    lock = LockFile(path, notes.append, stale_s=60.0)
    here = socket.gethostname()

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.write_text(json.dumps({"host": here, "pid": live.pid, "started": "t0"}))
        holder = lock.try_acquire()
        assert holder is not None and holder.pid == live.pid and not lock.held
        assert holder.where() == f"pid {live.pid} on this host"
    finally:
        live.kill()
        live.wait()

    path.write_text(json.dumps({"host": "node17", "pid": 4242}))  # another host, fresh heartbeat
    holder = lock.try_acquire()
    assert holder is not None and holder.where() == "pid 4242 on host node17" and not notes

    old = time.time() - 120.0  # another host, no heartbeat for 2 min > stale_s
    os.utime(path, (old, old))
    assert lock.try_acquire() is None and lock.held
    assert "taking over the stale lock" in notes[-1] and "node17" in notes[-1] and "no heartbeat for 1" in notes[-1]
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists() and not lock.held

    dead = _dead_pid()
    path.write_text(json.dumps({"host": here, "pid": dead}))
    assert lock.try_acquire() is None and f"pid {dead}" in notes[-1] and "no longer running" in notes[-1]
    lock.release()

    path.write_text("{garbage")
    old = time.time() - 30.0
    os.utime(path, (old, old))
    assert lock.try_acquire() is None and "unreadable" in notes[-1]
    lock.release()


def test_held_lock_gets_a_heartbeat(tmp_path):
    path = tmp_path / "x.lock"
    lock = LockFile(path, heartbeat_s=0.05)
    assert lock.try_acquire() is None
    old = time.time() - 1000.0
    os.utime(path, (old, old))
    deadline = time.time() + 5.0
    while path.stat().st_mtime < old + 500 and time.time() < deadline:
        time.sleep(0.02)
    assert path.stat().st_mtime > old + 500, "the heartbeat did not touch the lock file"
    lock.release()
    assert not path.exists()


# A stand-alone trainer process: trains a tiny network into the cache entry {"k": 1}; the loss
# blocks until the file `release` exists, so the test can hold the first trainer mid-training.
_TRAINER = textwrap.dedent("""
    import hashlib, sys, time
    from pathlib import Path
    from types import SimpleNamespace
    import numpy as np, torch
    from simlink.data.base import ImageSet
    from simlink.learned import ModelCache, OptimSettings, train_or_load
    from simlink.learned import cache as cache_mod

    cache_mod.WAIT_POLL_S = 0.1
    root, gate = Path(sys.argv[1]), Path(sys.argv[2])
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 3, 3, padding=1)

    def loss(net, x, labels):
        while not gate.exists():
            time.sleep(0.05)
        return ((net(x) - x) ** 2).mean(), {}

    imgs = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    ctx = SimpleNamespace(seed=1, device="cpu", cache_root=root, log=lambda s: print(s, flush=True),
                          train_images=lambda split="train", n=None: ImageSet(imgs))
    cache = ModelCache("toy", "entry", root)
    trained = train_or_load(net, cache, {"k": 1}, lambda: loss, OptimSettings(epochs=1, batch_size=4, lr=1e-2),
                            ctx, describe="toy")
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in net.state_dict().values())).hexdigest()
    print("RESULT", "trained" if trained else "loaded", digest, flush=True)
""")


def _spawn(script: Path, root: Path, gate: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, str(script), str(root), str(gate)], stdout=f,
                                stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for(what, why: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not what():
        assert time.time() < deadline, why
        time.sleep(0.05)


def test_two_runs_needing_one_entry_train_it_once(tmp_path):
    script, root, gate = tmp_path / "trainer.py", tmp_path / "cache", tmp_path / "release"
    script.write_text(_TRAINER)
    lock_path = root / "models" / "toy" / "entry.lock"
    log1, log2 = tmp_path / "first.log", tmp_path / "second.log"
    procs = [_spawn(script, root, gate, log1)]
    try:
        _wait_for(lambda: lock_path.exists() or procs[0].poll() is not None, "the first trainer never took the lock")
        assert procs[0].poll() is None, log1.read_text()
        procs.append(_spawn(script, root, gate, log2))
        _wait_for(lambda: "waiting for it" in log2.read_text() or procs[1].poll() is not None,
                  "the second trainer neither waited nor ended")
        assert "waiting for it" in log2.read_text(), log2.read_text()  # it waits for the first
        assert f"pid {procs[0].pid} on this host" in log2.read_text()
        gate.touch()
        for p in procs:
            p.wait(timeout=60)
    finally:
        gate.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
    out_first, out_second = log1.read_text(), log2.read_text()
    assert procs[0].returncode == 0 and procs[1].returncode == 0, out_first + out_second
    r1, r2 = (next(s for s in out.splitlines() if s.startswith("RESULT")).split() for out in (out_first, out_second))
    assert r1[1] == "trained" and r2[1] == "loaded" and r1[2] == r2[2]
    assert "training toy" in out_first and "training toy" not in out_second
    assert not lock_path.exists()


def test_stale_entry_lock_of_a_killed_trainer_is_taken_over(tmp_path):
    import torch

    from conftest import random_images
    from simlink.data.base import ImageSet
    from simlink.learned import ModelCache, OptimSettings, train_or_load

    cache = ModelCache("toy", "entry", tmp_path)
    cache.dir.parent.mkdir(parents=True)
    cache.lock_path.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    notes: list[str] = []
    ctx = SimpleNamespace(seed=1, device="cpu", cache_root=tmp_path, log=notes.append,
                          train_images=lambda split="train", n=None: ImageSet(random_images(8)))
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    trained = train_or_load(net, cache, {"k": 1}, lambda: (lambda n, x, y: (((n(x) - x) ** 2).mean(), {})),
                            OptimSettings(epochs=1, batch_size=4, lr=1e-2), ctx, describe="toy")
    assert trained and cache.is_done() and not cache.lock_path.exists()
    assert any("taking over the stale lock" in s for s in notes)


def test_garbled_task_model_in_the_cache_is_moved_aside_and_retrained(tmp_path, caplog, one_torch_thread):
    from simlink.learned.context import TrainingContext
    from simlink.scenario import TaskTrainConfig
    from simlink.tasks.loading import train_task_model

    def ctx():
        ds = SimpleNamespace(name="synthetic", root=None, image_size=32, download=False)
        return TrainingContext(ds, seed=1, cache_root=tmp_path, log=lambda s: None)

    cfg = TaskTrainConfig(n_images=32, epochs=1, batch_size=16, width=4)
    ref = train_task_model("small_cnn", cfg, ctx())
    (entry,) = (tmp_path / "models" / "task").iterdir()
    info = json.loads((entry / "info.json").read_text())
    assert set(info["sha256"]) == {"model.pt"}
    model_pt = entry / "model.pt"
    data = bytearray(model_pt.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
    model_pt.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="simlink.learned.cache"):
        again = train_task_model("small_cnn", cfg, ctx())
    assert "model.pt sha256 mismatch" in caplog.text
    assert len(list(entry.parent.glob(f"{entry.name}.corrupt-*"))) == 1 and (entry / "model.pt").is_file()
    for k, v in ref.net.state_dict().items():  # retrained deterministically, not loaded from garbage
        assert (v == again.net.state_dict()[k]).all(), k


def test_task_model_entry_with_garbled_info_json_is_retrained(tmp_path, caplog, one_torch_thread):
    from simlink.learned.context import TrainingContext
    from simlink.scenario import TaskTrainConfig
    from simlink.tasks.loading import train_task_model

    ds = SimpleNamespace(name="synthetic", root=None, image_size=32, download=False)
    cfg = TaskTrainConfig(n_images=32, epochs=1, batch_size=16, width=4)
    train_task_model("small_cnn", cfg, TrainingContext(ds, seed=1, cache_root=tmp_path, log=lambda s: None))
    (entry,) = (tmp_path / "models" / "task").iterdir()
    (entry / "info.json").write_bytes(b'{"key": {"arch": "small_' + b"\xff\x00" * 8)
    with caplog.at_level(logging.WARNING, logger="simlink.learned.cache"):
        model = train_task_model("small_cnn", cfg, TrainingContext(ds, seed=1, cache_root=tmp_path,
                                                                   log=lambda s: None))
    assert "info.json garbled" in caplog.text and model.arch == "small_cnn"
    assert json.loads((entry / "info.json").read_text())["sha256"]


def test_two_processes_taking_over_one_stale_lock_do_not_both_hold_it(tmp_path):
    """The second taker renames the lock aside, sees it is not the stale one it judged (the first
    taker's fresh lock) and puts it back; release never deletes another holder's lock."""
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    a, b = LockFile(path), LockFile(path)
    real_break = a._break

    def slow_break(raw):  # b takes the stale lock over between a's judgement and a's removal
        assert b.try_acquire() is None and b.held
        return real_break(raw)

    a._break = slow_break
    holder = a.try_acquire()
    assert b.held and not a.held and holder is not None and holder.token == b.token
    assert json.loads(path.read_text())["token"] == b.token
    a.held, a.token = True, "not-the-owner"  # a confused process releasing a lock it lost
    a.release()
    assert path.exists() and json.loads(path.read_text())["token"] == b.token
    b.release()
    assert not path.exists()


def test_same_host_locks_of_this_pid_or_without_heartbeat_are_stale(tmp_path):
    path, notes = tmp_path / "x.lock", []
    lock = LockFile(path, notes.append, stale_s=60.0)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))  # an earlier process, same pid
    assert lock.try_acquire() is None and "no longer running" in notes[-1]
    assert LockFile(path).try_acquire() is not None  # but held by this process now: live
    lock.release()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.write_text(json.dumps({"host": socket.gethostname(), "pid": live.pid}))
        old = time.time() - 120.0  # alive, but no heartbeat for 2 min (suspended, or a reused pid)
        os.utime(path, (old, old))
        assert lock.try_acquire() is None and "no heartbeat for" in notes[-1]
        lock.release()
    finally:
        live.kill()
        live.wait()
