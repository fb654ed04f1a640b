"""Receiver task models: a :class:`TaskModel` wraps a classifier ``nn.Module``.

Images go in as ``uint8[N, H, W, 3]`` RGB numpy arrays; the wrapper converts them to
``float32[N, 3, H, W]`` in [0, 1]. Per-channel normalisation lives inside the network
(:class:`Normalize`), so a saved model is self-contained.

>>> model = train_classifier(small_cnn(num_classes=9), train_set, epochs=3)
>>> model.accuracy(test_set.images, test_set.labels)
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from simlink.data.base import ImageSet
from simlink.errors import SimlinkError

__all__ = [
    "ARCHITECTURES",
    "Normalize",
    "TaskModel",
    "build_architecture",
    "register_architecture",
    "small_cnn",
    "train_classifier",
]

#: name -> builder(**kwargs) -> nn.Module; used by :meth:`TaskModel.load` to rebuild a model.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str):
    """Decorator registering an ``nn.Module`` builder under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        ARCHITECTURES[name] = fn
        return fn

    return deco


def build_architecture(arch: str, **kwargs) -> nn.Module:
    """Build the registered architecture ``arch`` with ``kwargs`` (fresh random weights)."""
    import simlink.tasks  # noqa: F401  (registers every architecture)

    if arch not in ARCHITECTURES:
        raise SimlinkError(f"unknown task architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; ``x``: ``float[N, 3, H, W]`` in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def images_to_tensor(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """``uint8[N, H, W, 3]`` -> ``float32[N, 3, H, W]`` in [0, 1] on ``device``."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8[N, H, W, 3] images, got {images.dtype}{list(images.shape)}")
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`images_to_tensor`: ``float[N, 3, H, W]`` (clipped to [0, 1]) ->
    ``uint8[N, H, W, 3]`` numpy, rounded to the nearest level."""
    return (x.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class TaskModel:
    """A classifier plus what is needed to run, save and rebuild it.

    Attributes:
        net: the ``nn.Module``; input ``float32[N, 3, H, W]`` in [0, 1], output logits
            ``float32[N, num_classes]``.
        arch: registered architecture name (``None`` for an unregistered module: cannot be saved).
        arch_kwargs: keyword arguments that rebuild ``net`` via :func:`build_architecture`.
        classes: class names (index = class id).
        meta: free-form provenance (training settings, weights file ...).
    """

    def __init__(
        self,
        net: nn.Module,
        arch: str | None = None,
        arch_kwargs: dict | None = None,
        classes: Sequence[str] | None = None,
        meta: dict | None = None,
    ) -> None:
        self.net = net
        self.arch = arch
        self.arch_kwargs = dict(arch_kwargs or {})
        self.classes = list(classes or [])
        self.meta = dict(meta or {})

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def logits(self, images: np.ndarray, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
        """Class scores ``float32[N, num_classes]`` for ``uint8[N, H, W, 3]`` images (eval mode)."""
        was_training = self.net.training
        self.net.to(device).eval()
        out = []
        try:
            for i in range(0, len(images), batch_size):
                x = images_to_tensor(images[i : i + batch_size], device)
                out.append(self.net(x).float().cpu())
        finally:
            self.net.train(was_training)
        if not out:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        return torch.cat(out).numpy()

    def predict(self, images: np.ndarray, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
        """Predicted class ids ``int64[N]`` for ``uint8[N, H, W, 3]`` images."""
        return self.logits(images, batch_size, device).argmax(axis=1).astype(np.int64)

    def accuracy(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 256, device: str = "cpu") -> float:
        """Top-1 accuracy in [0, 1] against ``int64[N]`` labels."""
        return self.top_k_accuracy(images, labels, k=1, batch_size=batch_size, device=device)

    def top_k_accuracy(
        self, images: np.ndarray, labels: np.ndarray, k: int = 5, batch_size: int = 256, device: str = "cpu"
    ) -> float:
        """Fraction in [0, 1] of images whose label is among the ``k`` highest scores."""
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        if len(labels) == 0:
            return float("nan")
        scores = self.logits(images, batch_size, device)
        k = min(k, scores.shape[1])
        topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return float((topk == labels[:, None]).any(axis=1).mean())

    @property
    def num_classes(self) -> int:
        """Number of output classes (from the config, else the class list)."""
        return int(self.arch_kwargs.get("num_classes", len(self.classes)))

    # ------------------------------------------------------------------ state
    def freeze(self) -> "TaskModel":
        """Eval mode and ``requires_grad=False`` on every parameter; returns ``self``."""
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        return self

    def num_trainable_parameters(self) -> int:
        """Number of parameters with ``requires_grad=True``."""
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)

    def config(self) -> dict:
        """Plain-data description that, with the state dict, rebuilds the model."""
        return {"arch": self.arch, "arch_kwargs": dict(self.arch_kwargs), "classes": list(self.classes),
                "meta": dict(self.meta)}

    def save(self, path: str | os.PathLike) -> None:
        """Write ``{"config": ..., "state_dict": ...}`` with ``torch.save`` (tensors on CPU), atomically."""
        if self.arch is None:
            raise SimlinkError("cannot save a TaskModel without a registered architecture name")
        from simlink.atomic import atomic_torch_save

        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        atomic_torch_save({"config": self.config(), "state_dict": state}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "TaskModel":
        """Rebuild a model written by :meth:`save` (``torch.load(..., weights_only=True)``)."""
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError as exc:
            raise SimlinkError(f"task model file not found: {path}") from exc
        if not isinstance(obj, dict) or "config" not in obj or "state_dict" not in obj:
            raise SimlinkError(f"{path}: not a simlink task model (needs 'config' and 'state_dict')")
        cfg = obj["config"]
        net = build_architecture(cfg["arch"], **cfg.get("arch_kwargs", {}))
        net.load_state_dict(obj["state_dict"])
        net.to(device).eval()
        return cls(net, cfg["arch"], cfg.get("arch_kwargs"), cfg.get("classes"), cfg.get("meta"))


# ---------------------------------------------------------------------- small CNN
@register_architecture("small_cnn")
def small_cnn_net(
    num_classes: int,
    width: int = 32,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.25, 0.25, 0.25),
) -> nn.Module:
    """Three conv-BN-ReLU-maxpool stages (``width``, ``2*width``, ``4*width`` channels),
    global average pool, linear. Any input size >= 8x8; input ``float[N, 3, H, W]`` in [0, 1]."""

    def stage(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.MaxPool2d(2)]

    return nn.Sequential(
        Normalize(mean, std),
        *stage(3, width),
        *stage(width, 2 * width),
        *stage(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


def small_cnn(num_classes: int, width: int = 32, classes: Sequence[str] | None = None, seed: int = 0) -> TaskModel:
    """Untrained small CNN (the synthetic-dataset default) as a :class:`TaskModel`.

    Weights are initialised from ``seed`` without touching the global RNG state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = small_cnn_net(num_classes=num_classes, width=width)
    return TaskModel(net, "small_cnn", {"num_classes": num_classes, "width": width}, classes)


# ---------------------------------------------------------------------- training
def _augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random horizontal flip and random ``pad``-pixel shift crop (zero padding) of
    ``float[N, 3, H, W]``; randomness from ``gen`` only."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def train_classifier(
    model: TaskModel,
    train: ImageSet,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    augment: bool = True,
) -> TaskModel:
    """Train ``model`` in place with Adam and cross-entropy; returns it in eval mode.

    Args:
        model: a :class:`TaskModel` (e.g. from :func:`small_cnn`).
        train: labelled images (``uint8[N, H, W, 3]``, ``int64[N]`` labels < ``num_classes``).
        epochs: passes over ``train``.
        lr: Adam learning rate.
        batch_size: images per step.
        seed: seeds shuffling and augmentation (and dropout, if any); same seed, same
            initial weights and device -> same result.
        device: torch device string.
        augment: random horizontal flip and 4-pixel shift crops.
    """
    if train.labels is None:
        raise SimlinkError(f"training set {train.name!r}/{train.split!r} has no labels")
    labels = torch.as_tensor(np.asarray(train.labels, dtype=np.int64))
    if len(labels) and (labels.min() < 0 or labels.max() >= model.num_classes):
        raise SimlinkError(f"labels span {int(labels.min())}..{int(labels.max())} but model has "
                           f"{model.num_classes} classes")
    if not model.classes and train.classes:
        model.classes = list(train.classes)
    gen = torch.Generator().manual_seed(seed)
    x_all = images_to_tensor(train.images, "cpu")
    net = model.net.to(device)
    for p in net.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net.train()
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=gen)
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                if len(idx) < 2:  # BatchNorm cannot train on a single image
                    continue
                x = x_all[idx]
                if augment:
                    x = _augment(x, gen)
                loss = F.cross_entropy(net(x.to(device)), labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    net.eval()
    model.meta.update({"trained_on": f"{train.name}/{train.split}", "n_train": len(labels), "epochs": epochs,
                       "lr": lr, "batch_size": batch_size, "seed": seed, "augment": augment})
    return model
