"""The TrainingStep loop: bit-identity with the one-loss loop it replaced, several optimisers and
schedulers resumed exactly, masks in the batch, non-finite losses, cached stages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from simlink.data.base import ImageSet
from conftest import random_images, small_conv
from simlink.errors import SimlinkError
from simlink.hashing import stable_hash
from simlink.learned import (
    Batch,
    LossStep,
    ModelCache,
    NonFiniteLoss,
    OptimSettings,
    Stage,
    TrainingStep,
    safe_torch_load,
    train_or_load,
    train_resumable,
    train_stages,
)
from simlink.learned.trainer import _derived_seed


def _noisy_loss(net, x, labels):
    # global-RNG noise (like quantisation noise) and a label term: both must line up step by step
    out = net(x + 0.05 * torch.randn_like(x))
    mse = ((out - x) ** 2).mean()
    loss = mse + 1e-3 * (out.mean(dim=(1, 2, 3)) * labels.float()).mean()
    return loss, {"mse": float(mse.detach())}


def _equal_weights(a: nn.Module, b: nn.Module) -> None:
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


# ---------------------------------------------------------------------- today's loop, verbatim
def _reference_loop(net, loss_fn, images, labels, settings, *, seed, device="cpu", augment_flip=True):
    """``train_resumable`` as it was before TrainingStep (one loss, Adam + plateau), minus the
    checkpoints: the new loop with a LossStep must give the same weights bit for bit."""
    n = len(images)
    batch = min(settings.batch_size, n)
    steps_per_epoch = n // batch
    net.to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=settings.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=settings.plateau_factor, patience=settings.plateau_patience,
        threshold=1e-3, min_lr=settings.lr_min)
    history = []
    x_all = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    y_all = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.int64)).to(device)
    net.train()
    for epoch in range(settings.epochs):
        sums = {}
        order = torch.randperm(n, generator=torch.Generator().manual_seed(_derived_seed(seed, 1, epoch)))
        for step_in_epoch in range(steps_per_epoch):
            global_step = epoch * steps_per_epoch + step_in_epoch
            torch.manual_seed(_derived_seed(seed, 2, global_step))
            idx = order[step_in_epoch * batch:(step_in_epoch + 1) * batch].to(device)
            x = x_all[idx].permute(0, 3, 1, 2).float().div_(255.0)
            if augment_flip:
                flip = torch.rand(len(idx), device=device) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            y = None if y_all is None else y_all[idx]
            loss, stats = loss_fn(net, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
            opt.step()
            for k, v in {"loss": float(loss.detach()), **stats}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        means = {k: v / max(steps_per_epoch, 1) for k, v in sums.items()}
        means["lr"] = opt.param_groups[0]["lr"]
        history.append(means)
        sched.step(means["loss"])
    net.eval()
    return history


def test_loss_step_reproduces_the_one_loss_loop_bit_for_bit(tmp_path):
    imgs, labels = random_images(44), np.arange(44) % 5  # 44 // 8 = 5 steps: the last 4 images are dropped
    # a high learning rate and patience 0: the plateau schedule acts (twice); gradients are clipped
    settings = OptimSettings(epochs=5, batch_size=8, lr=0.08, plateau_patience=0, plateau_factor=0.5, grad_clip=1.0)
    ref = small_conv()
    ref_hist = _reference_loop(ref, _noisy_loss, imgs, labels, settings, seed=7)
    assert len({h["lr"] for h in ref_hist}) > 1, "the test should exercise an lr reduction"

    net = small_conv()
    res = train_resumable(LossStep(net, _noisy_loss, settings), ImageSet(imgs, labels), settings,
                          ModelCache("t", "k", tmp_path), seed=7)
    assert res.history == ref_hist
    _equal_weights(ref, net)
    assert not net.training

    # and with the images + labels arrays, no cache, no flips
    ref2, net2 = small_conv(1), small_conv(1)
    ref_hist2 = _reference_loop(ref2, _noisy_loss, imgs, labels, settings, seed=2, augment_flip=False)
    res2 = train_resumable(LossStep(net2, _noisy_loss, settings), (imgs, labels), settings, None, seed=2,
                           augment_flip=False)
    assert res2.history == ref_hist2
    _equal_weights(ref2, net2)


def test_epoch_log_names_what_is_trained_not_only_the_network(tmp_path):
    """The log line of a method's training says the method's display name and op (``describe``),
    then the cache entry: ``rrd λ=0.01 stage pretrain [tosc_sr 1a2b3c4d] epoch 1/2: ...``."""
    settings = OptimSettings(epochs=2, batch_size=8, lr=1e-3)
    lines = []
    cache = ModelCache("tosc_sr", "k" * 16, tmp_path)
    train_resumable(LossStep(small_conv(), _noisy_loss, settings), (random_images(16), np.zeros(16, int)), settings,
                    cache, seed=1, log=lines.append, describe="rrd λ=0.01 stage pretrain")
    epochs = [ln for ln in lines if " epoch " in ln]
    assert len(epochs) == 2
    assert epochs[0].startswith(f"rrd λ=0.01 stage pretrain [tosc_sr {cache.key[:8]}] epoch 1/2: loss ")


# ---------------------------------------------------------------------- two optimisers
class _GanStep(TrainingStep):
    """A tiny generator (denoiser) and discriminator updated in turn; two optimisers of two kinds
    and two kinds of schedulers."""

    def __init__(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.gen = nn.Conv2d(3, 3, 3, padding=1)
        self.disc = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 1))
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=1e-2)
        self.opt_d = torch.optim.SGD(self.disc.parameters(), lr=1e-2, momentum=0.9)

    def modules(self):
        return {"gen": self.gen, "disc": self.disc}

    def optimizers(self):
        return {"gen": self.opt_g, "disc": self.opt_d}

    def schedulers(self):
        return {"gen": torch.optim.lr_scheduler.StepLR(self.opt_g, step_size=3, gamma=0.5),
                "disc": torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt_d, patience=0, factor=0.5)}

    def step(self, batch: Batch) -> dict[str, float]:
        x = batch.images
        fake = self.gen(x + 0.1 * torch.randn_like(x))
        d_loss = F.softplus(-self.disc(x)).mean() + F.softplus(self.disc(fake.detach())).mean()
        self.optimise(d_loss, "disc")
        g_loss = F.softplus(-self.disc(fake)).mean() + ((fake - x) ** 2).mean()
        self.optimise(g_loss, "gen", grad_clip=1.0)
        return {"loss": float(d_loss.detach() + g_loss.detach()), "d_loss": float(d_loss.detach()),
                "g_loss": float(g_loss.detach())}


def test_two_optimiser_step_interrupted_twice_ends_with_the_uninterrupted_weights(tmp_path):
    imgs = random_images(40)  # 5 steps per epoch
    settings = OptimSettings(epochs=4, batch_size=8)
    ref = _GanStep(0)
    ref_res = train_resumable(ref, imgs, settings, ModelCache("gan", "ref", tmp_path), seed=3)
    h = ref_res.history
    assert set(h[0]) == {"loss", "d_loss", "g_loss", "lr", "lr_disc"}
    assert [e["lr"] for e in h] == [1e-2, 1e-2, 1e-2, 5e-3]  # StepLR stepped once per epoch (the resumed
    # run must restore its epoch count to halve the rate after epoch 3)

    cache = ModelCache("gan", "int", tmp_path)
    with pytest.raises(KeyboardInterrupt):  # mid-epoch 2; checkpoints at the epoch-1 end and on the interrupt
        train_resumable(_GanStep(0), imgs, settings, cache, seed=3, stop_after_steps=7)
    with pytest.raises(KeyboardInterrupt):  # every step checkpointed, interrupted again in epoch 3
        train_resumable(_GanStep(2), imgs, settings, cache, seed=3, stop_after_steps=4, checkpoint_every_s=0)
    ck = safe_torch_load(cache.checkpoint_path)
    assert (ck["epoch"], ck["step_in_epoch"]) == (2, 1) and set(ck["modules"]) == {"gen", "disc"}
    resumed = _GanStep(3)  # other initial weights: the checkpoint must win
    res = train_resumable(resumed, imgs, settings, cache, seed=3)
    assert res.resumed_from == (2, 1)
    assert res.history == ref_res.history
    _equal_weights(ref.gen, resumed.gen)
    _equal_weights(ref.disc, resumed.disc)
    for a, b in ((resumed.opt_g, ref.opt_g), (resumed.opt_d, ref.opt_d)):
        assert a.param_groups[0]["lr"] == b.param_groups[0]["lr"]
    assert not resumed.gen.training and not resumed.disc.training


def test_several_modules_are_cached_and_loaded_by_name(tmp_path):
    ctx = _Ctx(ImageSet(random_images(16)), tmp_path)
    step = _GanStep(0)
    mods = step.modules()
    cache = ModelCache("gan", "k", tmp_path)
    assert train_or_load(mods, cache, {"k": 1}, lambda: step, OptimSettings(epochs=1, batch_size=8), ctx)
    fresh = _GanStep(5).modules()
    assert not train_or_load(fresh, cache, {"k": 1}, lambda: pytest.fail("trained again"), OptimSettings(), ctx)
    _equal_weights(mods["gen"], fresh["gen"])
    _equal_weights(mods["disc"], fresh["disc"])
    with pytest.raises(SimlinkError, match="holds modules"):
        train_or_load({"gen": fresh["gen"], "critic": fresh["disc"]}, cache, {}, lambda: None, OptimSettings(), ctx)


# ---------------------------------------------------------------------- the batch
class _Recorder(TrainingStep):
    def __init__(self) -> None:
        self.net = nn.Linear(1, 1)
        self.batches: list[Batch] = []

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"sgd": torch.optim.SGD(self.net.parameters(), lr=0.1)}

    def step(self, batch: Batch) -> dict[str, float]:
        self.batches.append(batch)
        return {"loss": 0.0}


@pytest.mark.parametrize("augment_flip", [True, False])
def test_masks_reach_the_batch_and_flip_with_therandom_images(augment_flip):
    imgs = random_images(24, size=6)
    masks = (imgs[..., 0] // 64).astype(np.uint8)  # a mask that is a function of the pixel
    data = ImageSet(imgs, np.arange(24) * 10, masks)
    rec = _Recorder()
    train_resumable(rec, data, OptimSettings(epochs=2, batch_size=8), None, seed=1, augment_flip=augment_flip)
    assert [(b.epoch, b.step) for b in rec.batches] == [(e, e * 3 + s) for e in range(2) for s in range(3)]
    flipped = []
    for b in rec.batches:
        assert b.images.dtype == torch.float32 and b.images.shape == (8, 3, 6, 6)
        assert b.masks.dtype == torch.int64 and b.masks.shape == (8, 6, 6)
        assert b.index.dtype == torch.int64 and torch.equal(b.labels, b.index * 10)
        assert torch.equal(b.masks, (b.images[:, 0] * 255).round().long() // 64)  # flipped together
        orig = torch.from_numpy(imgs[b.index.numpy()]).permute(0, 3, 1, 2).float() / 255
        for i in range(8):
            same = torch.equal(b.images[i], orig[i])
            assert same or torch.equal(b.images[i], orig[i].flip(2))
            flipped.append(not same)
    assert any(flipped) == augment_flip and not all(flipped)
    assert sorted(torch.cat([b.index for b in rec.batches[:3]]).tolist()) == list(range(24))  # one epoch


# ---------------------------------------------------------------------- non-finite losses
class _Explodes(LossStep):
    def __init__(self, at_step: int) -> None:
        settings = OptimSettings(epochs=3, batch_size=4)
        super().__init__(small_conv(), lambda net, x, y: (((net(x) - x) ** 2).mean(), {}), settings)
        self.at_step = at_step

    def step(self, batch):
        if batch.step >= self.at_step:
            self.loss_fn = lambda net, x, y: (net(x).sum() * float("inf"), {})
        return super().step(batch)


def test_non_finite_loss_raises_before_backward_and_keeps_the_last_checkpoint(tmp_path):
    imgs = random_images(8)  # 2 steps per epoch: step 3 is epoch 2, step 1
    cache = ModelCache("codec", "k", tmp_path)
    exploding = _Explodes(at_step=3)
    with pytest.raises(SimlinkError, match=r"codec \(my codec\): loss became inf at epoch 2, step 1; "
                                           r"lower the learning rate \(train.lr\)"):
        train_resumable(exploding, imgs, exploding.settings, cache, seed=0, describe="my codec")
    ck = safe_torch_load(cache.checkpoint_path)  # the epoch-1 checkpoint is still there
    assert (ck["epoch"], ck["step_in_epoch"]) == (1, 0) and len(ck["history"]) == 1
    one_epoch = _Explodes(at_step=99)
    train_resumable(one_epoch, imgs, OptimSettings(epochs=1, batch_size=4), None, seed=0)
    for k, v in one_epoch.net.state_dict().items():
        assert torch.equal(ck["modules"]["net"][k], v), k

    # the check comes before backward: no gradient is touched
    step = _Explodes(at_step=0)
    step.bound_optimizers()
    with pytest.raises(NonFiniteLoss):
        step.optimise(step.net(torch.zeros(1, 3, 4, 4)).sum() * float("nan"), "adam")
    assert all(p.grad is None for p in step.net.parameters())


# ---------------------------------------------------------------------- cached stages
class _Ctx(SimpleNamespace):
    """The parts of TrainingContext that train_or_load uses."""

    def __init__(self, data: ImageSet, cache_root: Path) -> None:
        super().__init__(data=data, seed=4, device="cpu", cache_root=cache_root, log=lambda s: None, asked=[])

    def train_images(self, split="train", n_images=None):
        self.asked.append((split, n_images))
        return self.data


def _old_fingerprint(obj, n=16):  # the cache key function before simlink.hashing
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()[:n]


def test_train_stages_caches_and_skips_earlier_stages(tmp_path):
    key_a = {"stage": "pretrain", "lmbda": 0.01, "network": {"n": 8, "m": [1, 2]}, "root": Path("/x"), "t": None}
    key_b = {"stage": "finetune", "parent": stable_hash(key_a), "beta": 0.5}
    assert stable_hash(key_a) == _old_fingerprint(key_a)  # existing caches stay valid
    settings = OptimSettings(epochs=1, batch_size=8, lr=1e-2)
    calls: list[str] = []

    def stages(net):
        def make(name, loss=_noisy_loss):
            def factory():
                calls.append(f"make {name}")
                return loss if name == "a" else LossStep(net, loss, settings)  # a LossFn factory is accepted too
            return factory

        return [Stage("a", key_a, settings, make("a"), prepare=lambda: calls.append("prepare a")),
                Stage("b", key_b, settings, make("b"), prepare=lambda: calls.append("prepare b"))]

    data = ImageSet(random_images(16), np.arange(16) % 3)
    def run(net):
        return train_stages("codec", net, stages(net), _Ctx(data, tmp_path / "unused"), op_label="λ=1",
                            cache_root=tmp_path, split="train", n_images=16, describe="codec")

    first = small_conv()
    report = run(first)
    assert calls == ["prepare a", "make a", "prepare b", "make b"]
    assert report["status"] == "trained" and len(report["last_epoch"]) == 3  # loss, mse, lr
    dir_a, dir_b = (tmp_path / "models" / "codec" / _old_fingerprint(k) for k in (key_a, key_b))
    assert report["cache"] == str(dir_b) and (dir_a / "model.pt").is_file()
    assert set(safe_torch_load(dir_a / "model.pt")) == set(first.state_dict())  # a bare state dict, as before
    assert json.loads((dir_b / "info.json").read_text())["key"]["parent"] == stable_hash(key_a)

    calls.clear()
    again = small_conv(9)
    report = run(again)
    assert report["status"] == "cached" and calls == ["prepare b"]  # stage a skipped, b loaded
    _equal_weights(first, again)

    calls.clear()
    (dir_b / "model.pt").unlink()
    third = small_conv(9)
    report = run(third)
    assert report["status"] == "trained" and calls == ["prepare a", "prepare b", "make b"]  # a loaded, b trained
    _equal_weights(first, third)
