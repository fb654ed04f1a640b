"""Receiver task models: a :class:`TaskModel` wraps a classifier ``nn.Module``.

Images go in as ``uint8[N, H, W, 3]`` RGB numpy arrays; the wrapper converts them to
``float32[N, 3, H, W]`` in [0, 1]. Per-channel normalisation lives inside the network
(:class:`Normalize`), so a saved model is self-contained.

>>> model = train_classifier(small_cnn(num_classes=9), train_set, epochs=3)
>>> model.accuracy(test_set.images, test_set.labels)

Training runs the shared loop of :mod:`simlink.learned.trainer` with a :class:`ClassifierStep`.
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
from simlink.learned.settings import OptimSettings
from simlink.learned.trainer import Batch, TrainingStep, TrainResult, train_resumable
from simlink.registry import Registry

__all__ = [
    "ARCHITECTURES",
    "ClassifierStep",
    "Normalize",
    "TaskModel",
    "build_architecture",
    "fit_classifier",
    "fit_task_model",
    "register_architecture",
    "small_cnn",
    "train_classifier",
]

#: name -> builder(**kwargs) -> nn.Module; used by :meth:`TaskModel.load` to rebuild a model.
#: Registering a name twice raises :class:`~simlink.registry.DuplicateName`; the built-in
#: architectures of other modules (``resnet20``) register on first look-up or registration
#: (``simlink.tasks.resnet_cifar`` imports only names defined above ``small_cnn_net`` from here).
ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry(
    "task architecture", builtins=("simlink.tasks.resnet_cifar", "simlink.tasks.espnet", "simlink.tasks.unet"))


def register_architecture(name: str):
    """Decorator registering an ``nn.Module`` builder under ``name`` in :data:`ARCHITECTURES`
    (a name already taken raises :class:`~simlink.registry.DuplicateName`)."""
    return ARCHITECTURES.register(name)


def build_architecture(arch: str, **kwargs) -> nn.Module:
    """Build the registered architecture ``arch`` with ``kwargs`` (fresh random weights)."""
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

    Class attribute ``kind``: the task kind the model serves (``classification`` here,
    ``segmentation`` for :class:`~simlink.tasks.segmenter.SegmentationModel`); a saved file
    records it and :meth:`load` rebuilds the matching class.
    """

    kind = "classification"
    _by_kind: dict[str, type["TaskModel"]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        TaskModel._by_kind[cls.kind] = cls

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
        out = {"arch": self.arch, "arch_kwargs": dict(self.arch_kwargs), "classes": list(self.classes),
               "meta": dict(self.meta)}
        if self.kind != "classification":  # files of classifiers stay as they were
            out["kind"] = self.kind
        return out

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
        except Exception as exc:
            raise SimlinkError(f"{path}: cannot read task model ({type(exc).__name__}: {exc})") from exc
        return cls.from_saved(obj, path, device)

    @classmethod
    def from_saved(cls, obj, path: str | os.PathLike = "<object>", device: str = "cpu") -> "TaskModel":
        """Rebuild a model from what :meth:`save` wrote, already read (``path`` for messages); the
        class is the one of the recorded ``kind`` (a classifier when none is recorded)."""
        if not isinstance(obj, dict) or "config" not in obj or "state_dict" not in obj:
            raise SimlinkError(f"{path}: not a simlink task model (needs 'config' and 'state_dict')")
        cfg = obj["config"]
        kind = cfg.get("kind", "classification")
        if kind != "classification":
            import simlink.tasks.segmenter  # noqa: F401 - registers SegmentationModel
        if kind not in TaskModel._by_kind:
            raise SimlinkError(f"{path}: task model of unknown kind {kind!r}")
        cls = TaskModel._by_kind[kind]
        net = build_architecture(cfg["arch"], **cfg.get("arch_kwargs", {}))
        net.load_state_dict(obj["state_dict"])
        net.to(device).eval()
        return cls(net, cfg["arch"], cfg.get("arch_kwargs"), cfg.get("classes"), cfg.get("meta"))


TaskModel._by_kind[TaskModel.kind] = TaskModel


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
def shift_crop(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel shift crop (zero padding) of ``float[N, C, H, W]``, one shift per
    image drawn from torch's global CPU RNG (which :func:`train_resumable` seeds per step)."""
    n, c, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n,)).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,)).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [N, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [N, 1, 1, W]
    samples = torch.arange(n, device=x.device)[:, None, None, None]  # [N, 1, 1, 1]
    channels = torch.arange(c, device=x.device)[None, :, None, None]  # [1, C, 1, 1]
    return padded[samples, channels, rows, cols]


class ClassifierStep(TrainingStep):
    """Cross-entropy training of a classifier with Adam (no clipping, no schedule).

    Args:
        net: input ``float32[B, 3, H, W]`` in [0, 1], output logits ``float32[B, classes]``
            (checkpointed as ``"net"``; every parameter is trained).
        lr: Adam learning rate.
        shift: random ``shift``-pixel shift crops (0: none); flips come from the loop's
            ``augment_flip``.

    :meth:`step` returns ``loss`` (cross-entropy) and ``accuracy`` (of the batch, before the update).
    """

    def __init__(self, net: nn.Module, lr: float = 1e-3, shift: int = 4) -> None:
        self.net = net
        self.lr = lr
        self.shift = shift
        self._opt: torch.optim.Optimizer | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self._opt is None:
            self._opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        return {"adam": self._opt}

    def step(self, batch: Batch) -> dict[str, float]:
        if batch.labels is None:
            raise SimlinkError("classifier training needs class labels")
        x = shift_crop(batch.images, self.shift) if self.shift > 0 else batch.images
        logits = self.net(x)
        loss = F.cross_entropy(logits, batch.labels)
        self.optimise(loss, "adam")
        accuracy = (logits.detach().argmax(1) == batch.labels).float().mean()
        return {"loss": float(loss.detach()), "accuracy": float(accuracy)}


def check_labels(model: TaskModel, train: ImageSet, who: str = "classifier training") -> None:
    """Raise :class:`SimlinkError` when ``train`` has no labels or labels outside
    ``0 .. model.num_classes - 1``."""
    if train.labels is None:
        raise SimlinkError(f"{who}: training set {train.name!r}/{train.split!r} has no labels")
    labels = np.asarray(train.labels, dtype=np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= model.num_classes):
        raise SimlinkError(f"{who}: labels span {int(labels.min())}..{int(labels.max())} but model has "
                           f"{model.num_classes} classes")


def fit_classifier(
    model: TaskModel,
    train: ImageSet,
    settings: OptimSettings,
    *,
    seed: int = 0,
    device: str = "cpu",
    augment: bool = True,
    cache=None,
    log: Callable[[str], None] | None = None,
    checkpoint_every_s: float = 60.0,
) -> TrainResult:
    """Train ``model`` in place through :func:`~simlink.learned.trainer.train_resumable` with a
    :class:`ClassifierStep` (``settings.epochs``, ``batch_size``, ``lr``); the caller's global
    torch RNG state is left as it was.

    Args:
        model: a :class:`TaskModel`; every parameter is made trainable.
        train: labelled images (``uint8[N, H, W, 3]``, ``int64[N]`` labels < ``num_classes``).
        settings: optimiser settings.
        seed, device: as for :func:`train_resumable`.
        augment: random horizontal flips and 4-pixel shift crops.
        cache: a :class:`~simlink.learned.cache.ModelCache` to checkpoint into and resume from
            (``None``: in memory).
        log, checkpoint_every_s: passed on.

    Returns: the :class:`TrainResult`; ``model.net`` is in eval mode.
    """
    check_labels(model, train)
    if not model.classes and train.classes:
        model.classes = list(train.classes)
    step = ClassifierStep(model.net, lr=settings.lr, shift=4 if augment else 0)
    return fit_task_model(model, step, train, settings, seed=seed, device=device, augment=augment, cache=cache,
                          log=log, checkpoint_every_s=checkpoint_every_s, describe=f"classifier {model.arch}")


def fit_task_model(model: TaskModel, step: TrainingStep, train: ImageSet, settings: OptimSettings, *, seed: int,
                   device: str, augment: bool, cache, log, checkpoint_every_s: float, describe: str) -> TrainResult:
    """What every task-model training shares: make ``model.net``'s parameters trainable, run
    ``step`` (which trains ``model.net``) through :func:`train_resumable` (``augment``: its
    flips) without touching the caller's global torch RNG state, and record the training
    settings in ``model.meta``. Returns the :class:`TrainResult`."""
    for p in model.net.parameters():
        p.requires_grad_(True)
    dev = torch.device(device)
    cuda = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        result = train_resumable(step, train, settings, cache, seed=seed, device=device, augment_flip=augment,
                                 checkpoint_every_s=checkpoint_every_s, log=log, describe=describe)
    model.meta.update({"trained_on": f"{train.name}/{train.split}", "n_train": len(train), "epochs": settings.epochs,
                       "lr": settings.lr, "batch_size": settings.batch_size, "seed": seed, "augment": augment})
    return result


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

    Runs the shared training loop (:func:`~simlink.learned.trainer.train_resumable`, in memory):
    ``len(train) // batch_size`` steps per epoch, batch order and per-step randomness seeded
    from ``seed``.

    Args:
        model: a :class:`TaskModel` (e.g. from :func:`small_cnn`).
        train: labelled images (``uint8[N, H, W, 3]``, ``int64[N]`` labels < ``num_classes``).
        epochs: passes over ``train``.
        lr: Adam learning rate.
        batch_size: images per step (at least 2: BatchNorm).
        seed: seeds shuffling and augmentation (and dropout, if any); same seed, same
            initial weights and device -> same result.
        device: torch device string.
        augment: random horizontal flip and 4-pixel shift crops.

    Raises:
        SimlinkError: ``train`` has no labels, or labels outside the model's classes.
    """
    settings = OptimSettings(epochs=epochs, batch_size=batch_size, lr=lr, grad_clip=None)
    fit_classifier(model, train, settings, seed=seed, device=device, augment=augment)
    return model
