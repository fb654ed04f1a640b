"""Receiver segmentation models: a :class:`SegmentationModel` wraps a segmentation ``nn.Module``.

Images go in as ``uint8[N, H, W, 3]`` RGB numpy arrays (``float32[N, 3, H, W]`` in [0, 1] for the
network, normalisation inside it, as for :class:`~simlink.tasks.classifier.TaskModel`); the
network returns per-pixel scores ``float32[N, K, H, W]`` with ``K >= C = len(classes)``. Outputs
``C .. K-1`` (ESPNet-CamVid's void output 11) are never predicted: :meth:`predict` takes the argmax
over the first ``C`` outputs only, and :meth:`probabilities` is the softmax over those ``C``.

Training (:func:`fit_segmenter`) runs the shared resumable loop of :mod:`simlink.learned.trainer`
with a :class:`SegmenterStep`: pixel-wise cross-entropy, void ignored, optional ENet class
weights, images and masks flipped together by the loop.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from simlink.data.base import ImageSet
from simlink.errors import SimlinkError
from simlink.learned.settings import OptimSettings
from simlink.learned.trainer import Batch, TrainingStep, TrainResult
from simlink.tasks.classifier import TaskModel, fit_task_model, images_to_tensor

__all__ = ["SegmentationModel", "SegmenterStep", "SoftmaxSegmenter", "enet_class_weights", "fit_segmenter"]


class SoftmaxSegmenter(nn.Module):
    """The frozen segmenter as a differentiable module: ``float32[N, 3, H, W]`` RGB in [0, 1]
    -> ``float32[N, C, H, W]`` softmax over the ``C`` evaluated classes (extra outputs such as
    void dropped before the softmax). Gradients flow to the input, never into the weights
    (every parameter has ``requires_grad=False``; the module stays in eval mode: ``train()`` is a
    no-op, so batch-norm statistics never move).

    Inputs whose H or W is not a multiple of ``size_multiple`` are padded (replicate) on the
    bottom / right and the output is cropped back."""

    def __init__(self, net: nn.Module, num_classes: int, size_multiple: int = 1) -> None:
        super().__init__()
        self.net, self.num_classes, self.size_multiple = net, int(num_classes), int(size_multiple)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> "SoftmaxSegmenter":  # frozen: always eval
        return super().train(False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``float32[N, C, H, W]``: the network's scores of the ``C`` evaluated classes."""
        h, w = x.shape[-2:]
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.net(x)[:, : self.num_classes, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).softmax(dim=1)


class SegmentationModel(TaskModel):
    """A segmenter plus what is needed to run, save and rebuild it.

    Attributes (as :class:`TaskModel`):
        net: input ``float32[N, 3, H, W]`` RGB in [0, 1], output ``float32[N, K, H, W]`` scores.
        classes: the ``C`` evaluated class names (ids ``0 .. C-1``); ``K >= C``.
        meta: provenance (weights file, training settings ...).

    :attr:`size_multiple` is the network's ``size_multiple`` attribute (default 1; ESPNet: 8), the
    number H and W must be multiples of; other sizes are padded and cropped back.
    """

    kind = "segmentation"

    @property
    def num_classes(self) -> int:
        """``C``: the evaluated classes (outputs beyond them, e.g. void, are never predicted)."""
        return len(self.classes) if self.classes else int(self.arch_kwargs.get("num_outputs", 0))

    @property
    def size_multiple(self) -> int:
        return int(getattr(self.net, "size_multiple", 1))

    def softmax_module(self) -> SoftmaxSegmenter:
        """The frozen, differentiable softmax module (shares ``net``; see :class:`SoftmaxSegmenter`).
        GOS-VAE-style imitation losses and semantic losses train against it."""
        return SoftmaxSegmenter(self.net, self.num_classes, self.size_multiple)

    @torch.no_grad()
    def _batched(self, images: np.ndarray, batch_size: int, device: str, fn) -> np.ndarray:
        module = self.softmax_module().to(device)
        was_training = self.net.training
        out = []
        try:
            for i in range(0, len(images), batch_size):
                out.append(fn(module, images_to_tensor(images[i:i + batch_size], device)))
        finally:
            self.net.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, *np.asarray(images).shape[1:3]), np.uint8)

    def logits(self, images: np.ndarray, batch_size: int = 8, device: str = "cpu") -> np.ndarray:
        """``float32[N, C, H, W]`` scores of the evaluated classes for ``uint8[N, H, W, 3]`` images."""
        return self._batched(images, batch_size, device, lambda m, x: m.logits(x).float().cpu().numpy())

    def probabilities(self, images: np.ndarray, batch_size: int = 8, device: str = "cpu") -> np.ndarray:
        """``float32[N, C, H, W]`` softmax over the evaluated classes."""
        return self._batched(images, batch_size, device, lambda m, x: m(x).float().cpu().numpy())

    def predict(self, images: np.ndarray, batch_size: int = 8, device: str = "cpu") -> np.ndarray:
        """``uint8[N, H, W]`` predicted class ids in ``0 .. C-1`` for ``uint8[N, H, W, 3]`` images."""
        dtype = torch.uint8 if self.num_classes <= 255 else torch.int16
        return self._batched(images, batch_size, device,
                             lambda m, x: m.logits(x).argmax(1).to(dtype).cpu().numpy())

    def accuracy(self, images, labels, batch_size: int = 8, device: str = "cpu") -> float:  # noqa: ARG002
        raise SimlinkError("a segmentation model has no image-level accuracy; use simlink.metrics.segmentation")

    top_k_accuracy = accuracy


# ---------------------------------------------------------------------- training
def enet_class_weights(masks: np.ndarray, num_classes: int, ignore_index: int | None = None,
                       c: float = 1.02) -> np.ndarray:
    """ENet's class weights ``w_k = 1 / ln(c + p_k)`` (Paszke et al. 2016), ``p_k`` the share of
    class ``k`` among the non-void training pixels; ``float32[num_classes]``. ESPNet's authors
    train CamVid with them (rare classes such as pole and sign would otherwise be ignored)."""
    m = np.asarray(masks).ravel()
    valid = m < num_classes if ignore_index is None else (m < num_classes) & (m != ignore_index)
    counts = np.bincount(m[valid].astype(np.int64), minlength=num_classes)[:num_classes].astype(np.float64)
    p = counts / max(counts.sum(), 1.0)
    return (1.0 / np.log(c + p)).astype(np.float32)


class SegmenterStep(TrainingStep):
    """Pixel-wise cross-entropy training of a segmenter with Adam and a cosine learning-rate
    schedule (per epoch, down to ``lr / 100``).

    Args:
        net: input ``float32[B, 3, H, W]`` in [0, 1], output ``float32[B, K, H, W]`` (``K >= C``;
            checkpointed as ``"net"``).
        num_classes: ``C``; mask ids ``>= C`` and ``ignore_index`` are void (no loss).
        ignore_index: the dataset's void id, or ``None``.
        epochs: length of the cosine schedule.
        lr, weight_decay: Adam settings.
        class_weights: ``float32[C]`` cross-entropy weights, or ``None``.

    :meth:`step` returns ``loss`` and ``pixel_acc`` (of the batch's non-void pixels, before the update).
    """

    def __init__(self, net: nn.Module, num_classes: int, ignore_index: int | None, epochs: int,
                 lr: float = 1e-3, weight_decay: float = 1e-4, class_weights: np.ndarray | None = None) -> None:
        self.net, self.num_classes, self.ignore_index = net, int(num_classes), ignore_index
        self.epochs, self.lr, self.weight_decay = max(int(epochs), 1), lr, weight_decay
        self.class_weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self._opt: torch.optim.Optimizer | None = None
        self._sched = None

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self._opt is None:
            self._opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return {"adam": self._opt}

    def schedulers(self) -> dict[str, object]:
        if self._sched is None:
            self._sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizers()["adam"], T_max=self.epochs,
                                                                    eta_min=self.lr / 100)
        return {"cosine": self._sched}

    def targets(self, masks: torch.Tensor) -> torch.Tensor:
        """``int64[B, H, W]`` masks with every void pixel set to -100 (cross-entropy's ignore value)."""
        void = masks >= self.num_classes
        if self.ignore_index is not None:
            void |= masks == self.ignore_index
        return masks.masked_fill(void, -100)

    def step(self, batch: Batch) -> dict[str, float]:
        if batch.masks is None:
            raise SimlinkError("segmenter training needs segmentation masks")
        target = self.targets(batch.masks)
        logits = self.net(batch.images)[:, : self.num_classes]
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = F.cross_entropy(logits, target, weight=weight, ignore_index=-100)
        self.optimise(loss, "adam")
        valid = target >= 0
        correct = (logits.detach().argmax(1) == target) & valid
        acc = correct.sum().float() / valid.sum().clamp(min=1)
        return {"loss": float(loss.detach()), "pixel_acc": float(acc)}


def check_masks(train: ImageSet, who: str = "segmenter training") -> None:
    """Raise :class:`SimlinkError` when ``train`` has no masks or no classes."""
    if train.masks is None:
        raise SimlinkError(f"{who}: training set {train.name!r}/{train.split!r} has no segmentation masks")
    if not train.classes:
        raise SimlinkError(f"{who}: training set {train.name!r}/{train.split!r} names no classes")


def fit_segmenter(
    model: SegmentationModel,
    train: ImageSet,
    settings: OptimSettings,
    *,
    seed: int = 0,
    device: str = "cpu",
    augment: bool = True,
    class_weights: bool = True,
    cache=None,
    log: Callable[[str], None] | None = None,
    checkpoint_every_s: float = 60.0,
) -> TrainResult:
    """Train ``model`` in place through :func:`~simlink.learned.trainer.train_resumable` with a
    :class:`SegmenterStep`; the caller's global torch RNG state is left as it was.

    Args:
        model: a :class:`SegmentationModel` whose ``classes`` are the dataset's (set from
            ``train`` when empty); every parameter is made trainable.
        train: images ``uint8[N, H, W, 3]`` with masks ``uint8[N, H, W]`` (void = ``ignore_index``
            or any id ``>= C``). H and W must suit the network (ESPNet: multiples of 8).
        settings: ``epochs``, ``batch_size``, ``lr``.
        seed, device, cache, log, checkpoint_every_s: as for :func:`train_resumable`.
        augment: random horizontal flips of images and masks together.
        class_weights: ENet class weights from the training masks (:func:`enet_class_weights`).

    Returns: the :class:`TrainResult`; ``model.net`` is in eval mode.
    """
    check_masks(train)
    if not model.classes:
        model.classes = list(train.classes)
    h, w = train.image_shape[:2]
    if h % model.size_multiple or w % model.size_multiple:
        raise SimlinkError(f"segmenter training: {train.name}/{train.split} images are {h}x{w} (HxW) but "
                           f"{model.arch} needs multiples of {model.size_multiple}; set dataset.image_size")
    weights = enet_class_weights(train.masks, model.num_classes, train.ignore_index) if class_weights else None
    step = SegmenterStep(model.net, model.num_classes, train.ignore_index, settings.epochs, lr=settings.lr,
                         class_weights=weights)
    result = fit_task_model(model, step, train, settings, seed=seed, device=device, augment=augment, cache=cache,
                            log=log, checkpoint_every_s=checkpoint_every_s, describe=f"segmenter {model.arch}")
    model.meta.update({"class_weights": "enet" if class_weights else None, "image_size": [h, w]})
    return result
