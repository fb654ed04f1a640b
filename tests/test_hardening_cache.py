"""Issue 12 hardening: atomic writes keep the umask's file mode; the model cache never trusts a
corrupted entry (hash mismatch, garbled info.json, truncated model or checkpoint): it is moved
aside, one line is logged, and the caller retrains."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import random_images, small_conv
from simlink.atomic import atomic_torch_save, atomic_write_json, atomic_write_text, current_umask
from simlink.data.base import ImageSet
from simlink.learned import LossStep, ModelCache, OptimSettings, train_or_load, train_resumable

LOGGER = "simlink.learned.cache"
SETTINGS = OptimSettings(epochs=2, batch_size=8, lr=1e-2)


def _mse(net, x, labels):
    loss = ((net(x) - x) ** 2).mean()
    return loss, {}


class _Ctx(SimpleNamespace):
    def __init__(self, data, cache_root):
        super().__init__(data=data, seed=4, device="cpu", cache_root=cache_root, log=lambda s: None)

    def train_images(self, split="train", n_images=None):
        return self.data


def _data():
    return ImageSet(random_images(16), np.arange(16) % 3)


def _train(tmp_path, net, cache):
    return train_or_load(net, cache, {"k": 1}, lambda: _mse, SETTINGS, _Ctx(_data(), tmp_path), describe="t")


def _equal_weights(a, b):
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def _moved(cache: ModelCache) -> list[Path]:
    return sorted(cache.dir.parent.glob(f"{cache.dir.name}.corrupt-*"))


def _garble_middle(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


# ---------------------------------------------------------------------- file modes
@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        results = tmp_path / "out" / "results.csv"
        atomic_write_text(results, "a,b\n1,2\n")
        manifest = tmp_path / "out" / "manifest.json"
        atomic_write_json({"a": 1}, manifest)
        cache = ModelCache("codec", "k", tmp_path / "cache")
        atomic_torch_save({"w": torch.zeros(2)}, cache.model_path)
        cache.write_info({"key": 1})
        for path in (plain, results, manifest, cache.model_path, cache.info_path):
            assert stat.S_IMODE(path.stat().st_mode) == expected, path
        assert results.read_text() == "a,b\n1,2\n"
        assert not [p for p in results.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    finally:
        os.umask(old)


# ---------------------------------------------------------------------- model cache integrity
def test_finished_entry_records_sha256_of_its_files(tmp_path):
    cache = ModelCache("codec", "abc", tmp_path)
    assert _train(tmp_path, small_conv(), cache) is True
    info = json.loads(cache.info_path.read_text())
    assert info["sha256"] == {"model.pt": hashlib.sha256(cache.model_path.read_bytes()).hexdigest()}
    assert info["key"] == {"k": 1} and len(info["history"]) == 2


def test_garbled_model_file_is_moved_aside_and_retrained(tmp_path, caplog):
    cache = ModelCache("codec", "abc", tmp_path)
    first = small_conv()
    assert _train(tmp_path, first, cache) is True
    garbled = _garble_middle(cache.model_path)

    caplog.set_level(logging.WARNING, logger=LOGGER)
    again = small_conv()  # same starting weights: retraining gives the first model again
    assert _train(tmp_path, again, cache) is True  # a miss: retrained, not loaded, no exception
    moved = _moved(cache)
    assert len(moved) == 1 and (moved[0] / "model.pt").read_bytes() == garbled  # kept, not deleted
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "\n" not in msgs[0]
    assert str(cache.dir) in msgs[0] and "model.pt sha256 mismatch" in msgs[0] and str(moved[0]) in msgs[0]
    _equal_weights(first, again)  # the retrained model (deterministic) replaced the bad one
    assert cache.is_done() and _train(tmp_path, small_conv(5), cache) is False  # now a clean hit


def test_garbled_info_json_is_moved_aside_and_retrained(tmp_path, caplog):
    cache = ModelCache("codec", "abc", tmp_path)
    assert _train(tmp_path, small_conv(), cache) is True
    garbled = _garble_middle(cache.info_path)
    model_bytes = cache.model_path.read_bytes()

    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert cache.info() == {}  # no JSONDecodeError
    moved = _moved(cache)
    assert len(moved) == 1
    assert (moved[0] / "info.json").read_bytes() == garbled and (moved[0] / "model.pt").read_bytes() == model_bytes
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "\n" not in msgs[0] and "info.json garbled" in msgs[0] and str(cache.dir) in msgs[0]
    assert _train(tmp_path, small_conv(), cache) is True  # retrained
    assert cache.info()["sha256"]["model.pt"] == hashlib.sha256(cache.model_path.read_bytes()).hexdigest()


def test_garbled_info_json_makes_is_done_a_miss(tmp_path, caplog):
    cache = ModelCache("codec", "abc", tmp_path)
    _train(tmp_path, small_conv(), cache)
    cache.info_path.write_text('{"key": {"k": 1}, "history": [')  # truncated JSON
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert cache.is_done() is False and not cache.dir.exists() and len(_moved(cache)) == 1
    assert len(_warnings(caplog)) == 1


def test_truncated_checkpoint_is_moved_aside_and_training_restarts(tmp_path, caplog):
    data = _data()
    cache = ModelCache("codec", "ck", tmp_path)
    with pytest.raises(KeyboardInterrupt):
        train_resumable(LossStep(small_conv(), _mse, SETTINGS), data, SETTINGS, cache, seed=4, stop_after_steps=1)
    full = cache.checkpoint_path.read_bytes()
    truncated = full[:len(full) // 2]
    cache.checkpoint_path.write_bytes(truncated)

    caplog.set_level(logging.WARNING, logger=LOGGER)
    net = small_conv()
    result = train_resumable(LossStep(net, _mse, SETTINGS), data, SETTINGS, cache, seed=4)
    assert result.resumed_from is None and len(result.history) == 2  # started again from scratch
    moved = _moved(cache)
    assert len(moved) == 1 and (moved[0] / "checkpoint.pt").read_bytes() == truncated
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "\n" not in msgs[0]
    assert "checkpoint.pt unreadable" in msgs[0] and str(cache.dir) in msgs[0]
    reference = small_conv()
    train_resumable(LossStep(reference, _mse, SETTINGS), data, SETTINGS, None, seed=4)
    _equal_weights(reference, net)


def test_legacy_entry_without_hashes_still_loads(tmp_path, caplog):
    cache = ModelCache("codec", "old", tmp_path)
    first = small_conv()
    _train(tmp_path, first, cache)
    info = json.loads(cache.info_path.read_text())
    info.pop("sha256", None)  # as written before hashes were recorded
    cache.info_path.write_text(json.dumps(info))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    again = small_conv(9)
    assert _train(tmp_path, again, cache) is False  # loaded, trusted as before
    _equal_weights(first, again)
    assert not _moved(cache) and not _warnings(caplog)
    assert cache.info()["history"] == info["history"]


def test_legacy_entry_with_unreadable_model_is_moved_aside(tmp_path, caplog):
    cache = ModelCache("codec", "old", tmp_path)
    _train(tmp_path, small_conv(), cache)
    cache.info_path.unlink()  # legacy: no hashes at all
    truncated = cache.model_path.read_bytes()[:100]
    cache.model_path.write_bytes(truncated)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert _train(tmp_path, small_conv(), cache) is True
    moved = _moved(cache)
    assert len(moved) == 1 and (moved[0] / "model.pt").read_bytes() == truncated
    msgs = _warnings(caplog)
    assert len(msgs) == 1 and "model.pt unreadable" in msgs[0] and "\n" not in msgs[0]
