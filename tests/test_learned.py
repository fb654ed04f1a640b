"""The model cache keys and the resumable training loop shared by learned methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from simlink.errors import SimlinkError
from simlink.learned import (
    ModelCache,
    OptimSettings,
    array_fingerprint,
    cache_root,
    fingerprint,
    module_fingerprint,
    save_finished,
    train_resumable,
)


def _images(n=24, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))


def _noisy_mse(net, x, labels):
    # uses the global RNG, like additive quantisation noise does in a codec's loss
    x_in = x + 0.05 * torch.randn_like(x)
    loss = ((net(x_in) - x) ** 2).mean()
    return loss, {"mse": float(loss.detach())}


def test_fingerprints_are_stable_and_sensitive():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    imgs = _images()
    fp = array_fingerprint(imgs, None)
    assert fp == array_fingerprint(imgs.copy(), None)
    changed = imgs.copy()
    changed[3, 2, 1, 0] ^= 1
    assert array_fingerprint(changed, None) != fp
    assert array_fingerprint(imgs, np.zeros(24, np.int64)) != fp
    a, b = _net(0), _net(1)
    assert module_fingerprint(a) == module_fingerprint(_net(0))
    assert module_fingerprint(a) != module_fingerprint(b)


def test_cache_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMLINK_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("SIMLINK_CACHE")
    assert cache_root().name == "simlink"
    c = ModelCache("kind", "abc", tmp_path)
    assert c.dir == tmp_path / "models" / "kind" / "abc" and not c.is_done()


def test_training_lowers_the_loss_and_records_history(tmp_path):
    net = _net()
    imgs = _images(64)
    settings = OptimSettings(epochs=4, batch_size=16, lr=1e-2)
    cache = ModelCache("test", "k1", tmp_path)
    res = train_resumable(net, _noisy_mse, imgs, None, settings, cache, seed=1)
    assert len(res.history) == 4
    assert res.history[-1]["loss"] < 0.5 * res.history[0]["loss"]
    assert not net.training
    save_finished(net, cache, {"what": "test"}, res)
    assert cache.is_done() and not cache.checkpoint_path.exists()
    info = cache.info()
    assert info["what"] == "test" and len(info["history"]) == 4


def test_interrupted_training_resumes_to_identical_weights(tmp_path):
    imgs = _images(40)
    settings = OptimSettings(epochs=3, batch_size=8, lr=5e-3)

    ref = _net()
    train_resumable(ref, _noisy_mse, imgs, None, settings, ModelCache("t", "ref", tmp_path), seed=5)

    net = _net()
    cache = ModelCache("t", "int", tmp_path)
    with pytest.raises(KeyboardInterrupt):  # stops mid-epoch 2 (5 steps per epoch)
        train_resumable(net, _noisy_mse, imgs, None, settings, cache, seed=5, stop_after_steps=7)
    assert cache.checkpoint_path.is_file()
    fresh = _net(123)  # a new process would start from other weights: the checkpoint must win
    res = train_resumable(fresh, _noisy_mse, imgs, None, settings, cache, seed=5)
    assert res.resumed_from == (1, 2)
    for (k, a), (_, b) in zip(ref.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), k


def test_nan_loss_is_a_clear_error(tmp_path):
    def bad(net, x, labels):
        return net(x).sum() * float("nan"), {}

    with pytest.raises(SimlinkError, match="lower the learning rate"):
        train_resumable(_net(), bad, _images(8), None, OptimSettings(epochs=1, batch_size=4),
                        ModelCache("t", "nan", tmp_path))


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="batch_size"):
        OptimSettings(batch_size=1)
    with pytest.raises(ValueError, match="extra"):
        OptimSettings(epochs=1, momentum=0.9)
