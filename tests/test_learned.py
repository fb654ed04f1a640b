"""The model cache keys and the resumable training loop shared by learned methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import random_images, small_conv
from simlink.errors import SimlinkError
from simlink.hashing import array_fingerprint, module_fingerprint
from simlink.hashing import stable_hash
from simlink.learned import (
    LossStep,
    ModelCache,
    OptimSettings,
    cache_root,
    safe_torch_load,
    save_finished,
    train_resumable,
)


def _noisy_mse(net, x, labels):
    # uses the global RNG, like additive quantisation noise does in a codec's loss
    x_in = x + 0.05 * torch.randn_like(x)
    loss = ((net(x_in) - x) ** 2).mean()
    return loss, {"mse": float(loss.detach())}


def test_fingerprints_are_stable_and_sensitive():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    imgs = random_images()
    fp = array_fingerprint(imgs, None)
    assert fp == array_fingerprint(imgs.copy(), None)
    changed = imgs.copy()
    changed[3, 2, 1, 0] ^= 1
    assert array_fingerprint(changed, None) != fp
    assert array_fingerprint(imgs, np.zeros(24, np.int64)) != fp
    a, b = small_conv(0), small_conv(1)
    assert module_fingerprint(a) == module_fingerprint(small_conv(0))
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
    net = small_conv()
    imgs = random_images(64)
    settings = OptimSettings(epochs=4, batch_size=16, lr=1e-2)
    cache = ModelCache("test", "k1", tmp_path)
    res = train_resumable(LossStep(net, _noisy_mse, settings), imgs, settings, cache, seed=1)
    assert len(res.history) == 4
    assert res.history[-1]["loss"] < 0.5 * res.history[0]["loss"]
    assert not net.training
    save_finished(net, cache, {"what": "test"}, res)
    assert cache.is_done() and not cache.checkpoint_path.exists()
    info = cache.info()
    assert info["what"] == "test" and len(info["history"]) == 4


@pytest.mark.parametrize("legacy", [False, True], ids=["checkpoint", "legacy-checkpoint"])
def test_interrupted_training_resumes_to_identical_weights(tmp_path, legacy):
    imgs = random_images(40)
    settings = OptimSettings(epochs=3, batch_size=8, lr=5e-3)

    ref = small_conv()
    train_resumable(LossStep(ref, _noisy_mse, settings), imgs, settings, ModelCache("t", "ref", tmp_path), seed=5)

    net = small_conv()
    cache = ModelCache("t", "int", tmp_path)
    with pytest.raises(KeyboardInterrupt):  # stops mid-epoch 2 (5 steps per epoch)
        train_resumable(LossStep(net, _noisy_mse, settings), imgs, settings, cache, seed=5, stop_after_steps=7)
    assert cache.checkpoint_path.is_file()
    if legacy:  # a checkpoint written by the one-loss loop before TrainingStep: net / opt / sched
        ck = safe_torch_load(cache.checkpoint_path)
        (net_sd,), (opt_sd,), (sched_sd,) = ck.pop("modules").values(), ck.pop("optimizers").values(), \
            ck.pop("schedulers").values()
        torch.save({**ck, "net": net_sd, "opt": opt_sd, "sched": sched_sd}, cache.checkpoint_path)
    fresh = small_conv(123)  # a new process would start from other weights: the checkpoint must win
    res = train_resumable(LossStep(fresh, _noisy_mse, settings), imgs, settings, cache, seed=5)
    assert res.resumed_from == (1, 2)
    for (k, a), (_, b) in zip(ref.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), k


def test_nan_loss_is_a_clear_error(tmp_path):
    def bad(net, x, labels):
        return net(x).sum() * float("nan"), {}

    settings = OptimSettings(epochs=1, batch_size=4)
    with pytest.raises(SimlinkError, match="lower the learning rate"):
        train_resumable(LossStep(small_conv(), bad, settings), random_images(8), settings, ModelCache("t", "nan", tmp_path))


def test_learned_package_imports_without_torch():
    import subprocess
    import sys

    code = ("import sys, simlink.learned as L; L.OptimSettings(epochs=1); L.cache_root(); L.CODE_VERSION; "
            "import simlink.hashing as H; H.stable_hash({'a': 1}); import simlink.learned.settings; assert 'torch' not in sys.modules, 'torch'; "
            "assert 'train_stages' in dir(L)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="batch_size"):
        OptimSettings(batch_size=1)
    with pytest.raises(ValueError, match="extra"):
        OptimSettings(epochs=1, momentum=0.9)


def test_training_context_refuses_images_of_mixed_sizes(monkeypatch):
    from types import SimpleNamespace

    import simlink.learned.context as context_module
    from simlink.data.base import ImageSet
    from simlink.learned.context import TrainingContext

    mixed = ImageSet([np.zeros((8, 12, 3), np.uint8), np.zeros((12, 8, 3), np.uint8)], name="kodak", split="test")
    assert mixed.uniform is False
    monkeypatch.setattr(context_module, "load_dataset", lambda *a, **kw: mixed)
    ctx = TrainingContext(SimpleNamespace(name="kodak", root=None, image_size=None, download=False))
    with pytest.raises(SimlinkError, match=r"images of one size \(set dataset.image_size\)"):
        ctx.train_images("test")
    with pytest.raises(SimlinkError, match="images of one size"):  # the loop refuses them too
        train_resumable(LossStep(small_conv(), _noisy_mse, OptimSettings()), mixed, OptimSettings(), None)
