"""What a learned method needs from the scenario to train: data, task model, device, cache."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from simlink.data import load_dataset
from simlink.data.base import ImageSet
from simlink.errors import SimlinkError
from simlink.hashing import array_fingerprint


@dataclass
class TrainingContext:
    """Everything :meth:`simlink.methods.Method.fit` may use.

    Attributes:
        dataset: the scenario's dataset entry (name, root, image size, download flag); training
            images come from its ``train`` split (or the split a method names).
        seed: the scenario seed; seeds initial weights, batch order and training noise.
        device: torch device string for training.
        task: the frozen receiver task model (:class:`simlink.tasks.TaskModel`) or ``None``.
        cache_root: model cache folder (``None``: ``$SIMLINK_CACHE`` or ``~/.cache/simlink``).
        log: where progress lines go.
    """

    dataset: object  # simlink.scenario.DatasetConfig
    seed: int = 0
    device: str = "cpu"
    task: object | None = None
    cache_root: str | Path | None = None
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr))
    _sets: dict = field(default_factory=dict, repr=False)  # loaded splits and their identities

    def train_images(self, split: str = "train", n_images: int | None = None) -> ImageSet:
        """The dataset's ``split`` (first ``n_images`` after the seeded shuffle), loaded once.

        Raises :class:`SimlinkError` when it cannot be loaded, or holds images of mixed sizes
        (an :class:`ImageSet` whose ``uniform`` attribute is False): training stacks images into
        batches, so they must share one size (``dataset.image_size`` resizes them)."""
        key = (split, n_images)
        if key not in self._sets:
            d = self.dataset
            try:
                self._sets[key] = load_dataset(d.name, split=split, n_images=n_images, image_size=d.image_size,
                                               root=d.root, seed=self.seed, download=d.download,
                                               skip_unreadable=getattr(d, "skip_unreadable", False))
            except ValueError as exc:
                raise SimlinkError(f"training data ({d.name}/{split}): {exc}") from exc
            try:
                self._sets[key].require_uniform("training data")
            except SimlinkError:
                del self._sets[key]
                raise
        return self._sets[key]

    def frozen_task_net(self, who: str, split: str = "train", n_images: int | None = None):
        """The task model's network on :attr:`device`, in eval mode with gradients off, for
        training losses that need the receiver's classifier (``who`` names the asker in errors).

        Raises :class:`SimlinkError` when the scenario has no task model or the training split has
        no labels."""
        if self.task is None:
            raise SimlinkError(f"{who}: needs the scenario's task model (add a 'task:' entry)")
        if getattr(self.task, "kind", "classification") != "classification":
            raise SimlinkError(f"{who}: needs a classifier as the task model, the scenario's is a "
                               f"{self.task.kind} model (use frozen_segmenter)")
        s = self.train_images(split, n_images)
        if s.labels is None:
            raise SimlinkError(f"{who}: training set {s.name}/{split} has no class labels")
        net = self.task.net.to(self.device).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        return net

    def frozen_segmenter(self, who: str):
        """The scenario's segmenter as a frozen, differentiable softmax module on :attr:`device`
        (:class:`~simlink.tasks.segmenter.SoftmaxSegmenter`: RGB in [0, 1] -> class probabilities),
        for training losses that imitate or use it (GOS-VAE, RL-ASC). Raises
        :class:`SimlinkError` naming ``who`` when the scenario has no segmentation task model."""
        if self.task is None or getattr(self.task, "kind", None) != "segmentation":
            raise SimlinkError(f"{who}: needs a segmentation task model (task: {{kind: segmentation, model: ...}})")
        return self.task.softmax_module().to(self.device)

    def data_identity(self, split: str = "train", n_images: int | None = None, masks: bool = False) -> dict:
        """What identifies the training data in a cache key: names plus a hash of the pixels and
        labels, and of the masks with ``masks=True`` (what a segmenter trains on); hashed once per
        split, however many models ask."""
        key = ("identity", split, n_images, masks)
        if key not in self._sets:
            s = self.train_images(split, n_images)
            ident = {"dataset": s.name, "split": split, "n_images": len(s), "shape": list(s.image_shape),
                     "fingerprint": array_fingerprint(s.images, s.labels)}
            if masks:
                ident["masks"] = array_fingerprint(s.masks) if s.masks is not None else None
            self._sets[key] = ident
        return dict(self._sets[key])
