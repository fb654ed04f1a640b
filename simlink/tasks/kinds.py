"""Task kinds: what a receiver task needs from the data, what it measures, which columns it writes.

Each kind is one :class:`TaskKind` subclass registered in :data:`TASK_KINDS`; a scenario's
``task: {kind: ..., model: ...}`` picks one. The sweep's :class:`~simlink.metrics.measure.Measure`
asks the kind to score, per image,

* the scenario's frozen task model run on what the receiver shows, and
* a method's own task head, when its :class:`~simlink.methods.base.Reception` carries the kind's
  ``head_output`` (e.g. ``class_logits``): the head's score takes the kind's main columns and the
  task model's score on the reconstruction goes to ``recon_<column>``.

Kinds today: ``classification`` (labels; ``accuracy``, ``top5`` when there are more than 10
classes). Segmentation (masks; mIoU) comes with the street-scene issue.

This module imports neither torch nor Sionna.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from simlink.errors import SimlinkError
from simlink.registry import Registry

#: Every task kind by its scenario name (``task.kind``).
TASK_KINDS: Registry[type["TaskKind"]] = Registry("task kind")

#: ``task.kind`` when a scenario names none.
DEFAULT_TASK_KIND = "classification"

#: Task-model architectures a scenario may train (``task.train``), registered in
#: :data:`simlink.tasks.classifier.ARCHITECTURES`.
TRAINABLE_ARCHITECTURES = ("small_cnn",)


class TaskKind(ABC):
    """One kind of receiver task (a subclass implements :meth:`model_output` and :meth:`score`).

    Class attributes:
        name: the scenario's ``task.kind``.
        needs: the :class:`~simlink.data.base.ImageSet` fields it scores against (``"labels"``,
            ``"masks"``).
        head_output: the :attr:`Reception.outputs` entry a method's own head provides for it.
        columns: the per-image metric columns it can write (``recon_*`` included).
        description: one line for ``simlink list``.
    """

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    head_output: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    def targets(self, data, who: str = "task"):
        """The ground truth this kind scores against, taken from an ``ImageSet`` (``labels`` /
        ``masks``). Raises :class:`SimlinkError` naming ``who`` and the missing field."""
        missing = [f for f in self.needs if getattr(data, f, None) is None]
        if missing:
            what = {"labels": "class labels", "masks": "segmentation masks"}
            raise SimlinkError(f"{who}: the dataset has no {' or '.join(what.get(f, f) for f in missing)}, "
                               f"so a {self.name} task cannot be scored on it")
        return getattr(data, self.needs[0]) if len(self.needs) == 1 else {f: getattr(data, f) for f in self.needs}

    @abstractmethod
    def model_output(self, model, images: np.ndarray, device: str = "cpu") -> np.ndarray:
        """The frozen task model's output for ``uint8[n, H, W, 3]`` images (the same quantity a
        head's ``head_output`` holds)."""

    @abstractmethod
    def score(self, output: np.ndarray, targets) -> dict[str, np.ndarray]:
        """Per-image scores ``{column: float64[n]}`` of an output against its targets."""

    def measure(self, model, recon: np.ndarray, targets, head: np.ndarray | None = None,
                device: str = "cpu") -> dict[str, np.ndarray]:
        """Per-image task columns for reconstructions ``recon`` of images whose truth is
        ``targets``: the head's scores when ``head`` is given (and the model's as ``recon_*``),
        else the task model's. ``model`` may be ``None`` (then only the head is scored)."""
        out: dict[str, np.ndarray] = {}
        if head is not None:
            out.update(self.score(np.asarray(head), targets))
        if model is not None:
            scores = self.score(self.model_output(model, recon, device), targets)
            if head is None:
                out.update(scores)
            else:
                out.update({f"recon_{k}": v for k, v in scores.items() if f"recon_{k}" in self.columns})
        return out

    def lost_scores(self, columns, n: int) -> dict[str, np.ndarray]:
        """``{column: float64[n]}`` of a receiver head's columns among ``columns`` for ``n`` images
        whose payload was lost (the head has nothing to run on): a task failure, 0. ``recon_*``
        columns (the task model on the concealment image) are not the head's and are left out."""
        return {c: np.zeros(n) for c in columns if c in self.columns and not c.startswith("recon_")}

    def take(self, targets, idx):
        """The targets of the images at ``idx``."""
        if isinstance(targets, dict):
            return {k: _take(v, idx) for k, v in targets.items()}
        return _take(targets, idx)


def _take(values, idx):
    if isinstance(values, list):
        return [values[i] for i in np.arange(len(values))[idx]]
    return values[idx]


def register_task_kind(cls: type[TaskKind]) -> type[TaskKind]:
    """Class decorator: add ``cls`` to :data:`TASK_KINDS` under ``cls.name`` (twice is an error)."""
    return TASK_KINDS.add(cls.name, cls)


@register_task_kind
class Classification(TaskKind):
    """Image classification: ``accuracy`` (1.0 where the top-1 class is right, else 0.0) and, for
    more than 10 classes, ``top5``; a head's ``class_logits`` ``float[N, C]``."""

    name = "classification"
    needs = ("labels",)
    head_output = "class_logits"
    columns = ("accuracy", "top5", "recon_accuracy")
    description = "class labels; accuracy (top-1, and top-5 above 10 classes) of the receiver's classifier"

    def model_output(self, model, images, device="cpu"):
        return model.logits(images, device=device)

    def score(self, output, targets):
        logits = np.asarray(output)
        labels = np.asarray(targets)
        out = {"accuracy": (logits.argmax(axis=1) == labels).astype(np.float64)}
        if logits.shape[1] > 10:
            top5 = np.argsort(-logits, axis=1)[:, :5]
            out["top5"] = (top5 == labels[:, None]).any(axis=1).astype(np.float64)
        return out


def kind_for_output(outputs: dict) -> type[TaskKind] | None:
    """The registered kind whose ``head_output`` is among ``outputs``' names, if any."""
    for kind in TASK_KINDS.values():
        if kind.head_output and kind.head_output in outputs:
            return kind
    return None
