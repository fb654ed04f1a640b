"""Task kinds: what a receiver task needs from the data, what it measures, which columns it writes.

Each kind is one :class:`TaskKind` subclass registered in :data:`TASK_KINDS`; a scenario's
``task: {kind: ..., model: ...}`` picks one. The sweep's :class:`~simlink.metrics.measure.Measure`
asks the kind to score, per image,

* the scenario's frozen task model run on what the receiver shows, and
* a method's own task head, when its :class:`~simlink.methods.base.Reception` carries the kind's
  ``head_output`` (e.g. ``class_logits``): the head's score takes the kind's main columns and the
  task model's score on the reconstruction goes to ``recon_<column>``.

Kinds today: ``classification`` (labels; ``accuracy``, ``top5`` when there are more than 10
classes) and ``segmentation`` (masks; ``miou``, ``pixel_acc``, ``class_acc`` and the same against
the segmenter's view of the original, ``*_vs_orig``).

Most task scores are per image and the sweep averages them over a cell (with a Student-t CI).
Some are not: a segmentation benchmark scores the confusion matrix summed over all pixels of all
images. Such a kind returns per-image *aggregate* values (``float64[N, ...]`` arrays, e.g. one
confusion matrix per image, named in ``aggregates``) and turns a cell's worth of them into its
columns with :meth:`TaskKind.cell_columns` (point estimate and a bootstrap CI over images).

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

#: Task-model architectures a classification scenario may train (``task.train``); every kind
#: lists its own in :attr:`TaskKind.trainable`.
TRAINABLE_ARCHITECTURES = ("small_cnn",)

#: ``task.train.options`` each trainable architecture takes (``width`` is a key of its own).
ARCHITECTURE_OPTIONS: dict[str, tuple[str, ...]] = {"small_cnn": (), "espnet": ("p", "q"), "unet": ("base", "depth")}


class TaskKind(ABC):
    """One kind of receiver task (a subclass implements :meth:`model_output` and :meth:`score`).

    Class attributes:
        name: the scenario's ``task.kind``.
        needs: the :class:`~simlink.data.base.ImageSet` fields it scores against (``"labels"``,
            ``"masks"``).
        head_output: the :attr:`Reception.outputs` entry a method's own head provides for it.
        columns: the per-image metric columns it can write (``recon_*`` included).
        aggregates: those of ``columns`` that are per-image arrays (``float64[N, ...]``) turned into
            cell columns by :meth:`cell_columns` rather than averaged.
        trainable: the architectures (:data:`simlink.tasks.classifier.ARCHITECTURES`) a scenario's
            ``task.train`` may train for this kind.
        description: one line for ``simlink list``.

    An instance may be bound to the sent data (:meth:`bind`: class count, void id) before use.
    """

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    head_output: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ()
    aggregates: ClassVar[tuple[str, ...]] = ()
    trainable: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    def bind(self, data, model=None) -> "TaskKind":
        """Take from the sent :class:`~simlink.data.base.ImageSet` (and the task model, if any) what
        scoring needs; raise :class:`SimlinkError` when the two do not fit. Returns ``self``."""
        return self

    def prepare_targets(self, model, data, device: str = "cpu"):
        """What :meth:`score` compares against for every image of ``data``, computed once per run:
        :meth:`targets` by default (a kind may add the task model's output on the originals)."""
        return self.targets(data, who="task" if model is not None else f"the receiver's {self.head_output}")

    def cell_columns(self, metrics: dict[str, np.ndarray], seed: int | None) -> dict[str, float]:
        """The cell's columns from the :attr:`aggregates` among ``metrics`` (all images of the cell);
        ``seed`` seeds the bootstrap of their ``*_ci`` columns (``None``: point estimates only)."""
        return {}

    def per_class_rows(self, metrics: dict[str, np.ndarray], clean: dict[str, np.ndarray]) -> list[dict]:
        """Rows of the per-class table for one cell (``[]``: the kind has none)."""
        return []

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

    def output_on_originals(self, model, images: np.ndarray, targets, device: str = "cpu"):
        """The task model's output on the original ``images`` (whose truth is ``targets``): run the
        model (:meth:`model_output`) unless :meth:`prepare_targets` already kept it."""
        return self.model_output(model, images, device)

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

    def lost_scores(self, columns, targets, n: int) -> dict[str, np.ndarray]:
        """``{column: float64[n, ...]}`` of a receiver head's columns among ``columns`` for ``n``
        images (whose truth is ``targets``) whose payload was lost (the head has nothing to run on):
        a task failure, 0. ``recon_*`` columns (the task model on the concealment image) are not the
        head's and are left out."""
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
    trainable = TRAINABLE_ARCHITECTURES
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


#: ``(prefix, suffix)`` of the cell columns made from each segmentation aggregate: ``seg_confusion``
#: gives ``miou``, ``pixel_acc``, ``class_acc``; ``seg_confusion_orig`` ``miou_vs_orig`` ...;
#: ``recon_seg_confusion`` (the task model on the reconstruction, beside a head) ``recon_miou`` ...
SEGMENTATION_AGGREGATES = {"seg_confusion": ("", ""), "seg_confusion_orig": ("", "_vs_orig"),
                           "recon_seg_confusion": ("recon_", "")}

#: Bootstrap resamples of the segmentation CIs (``miou_ci`` ...).
BOOTSTRAP_RESAMPLES = 1000


@register_task_kind
class Segmentation(TaskKind):
    """Semantic segmentation, scored as the benchmarks do: per image a confusion matrix
    (:func:`simlink.metrics.segmentation.confusion_matrices`, ``float64[C, C + 1]``: void truth not
    counted, last column = no prediction), summed over the cell, then ``miou``, ``pixel_acc`` (global)
    and ``class_acc`` (class average); classes absent from prediction and truth are left out of the
    mean. ``*_vs_orig``: the same with the segmenter's prediction on the *original* image as the truth
    (what an imitating codec is judged by; every pixel counts). ``*_ci``: half-width of a 95 %
    percentile bootstrap over the cell's images. A prediction is never void: the segmenter's
    outputs beyond the dataset's ``C`` classes (ESPNet-CamVid's void output) are excluded from its
    argmax. A head's ``seg_logits`` ``float[N, K >= C, H, W]`` (or ids ``int[N, H, W]``) is scored
    the same way; for a lost image it predicts nothing (every truth pixel missed)."""

    name = "segmentation"
    needs = ("masks",)
    head_output = "seg_logits"
    columns = tuple(SEGMENTATION_AGGREGATES)
    aggregates = tuple(SEGMENTATION_AGGREGATES)
    trainable = ("espnet", "unet")
    description = "segmentation masks; mIoU, pixel and class-average accuracy of the receiver's segmenter"

    def __init__(self) -> None:
        self.num_classes: int | None = None
        self.ignore_index: int | None = None
        self.classes: list[str] = []

    def bind(self, data, model=None):
        classes = list(getattr(data, "classes", None) or [])
        if not classes:
            raise SimlinkError(f"task: {getattr(data, 'name', 'the dataset')} names no classes, so its masks "
                               "cannot be scored")
        model_classes = list(getattr(model, "classes", None) or [])
        if model is not None and model_classes and model_classes != classes:
            raise SimlinkError(f"task: the segmenter predicts {len(model_classes)} classes ({', '.join(model_classes[:4])}, "
                               f"...) but {data.name} has {len(classes)} ({', '.join(classes[:4])}, ...); "
                               "use a segmenter of this dataset")
        self.classes, self.num_classes, self.ignore_index = classes, len(classes), data.ignore_index
        return self

    def _require_bound(self) -> int:
        if self.num_classes is None:
            raise RuntimeError("Segmentation.bind(data) must be called before scoring")
        return self.num_classes

    def prepare_targets(self, model, data, device="cpu"):
        targets = {"masks": super().prepare_targets(model, data, device)}
        if model is not None:  # the segmenter's view of every original, once per run
            orig: list | np.ndarray = [None] * len(data)
            for index, subset in data.shape_groups():
                pred = self.model_output(model, subset.images, device)
                for i, p in zip(index, pred):
                    orig[i] = p
            targets["orig"] = np.stack(orig) if data.uniform and len(data) else orig
        return targets

    def model_output(self, model, images, device="cpu"):
        return model.predict(images, device=device)

    def output_on_originals(self, model, images, targets, device="cpu"):
        if isinstance(targets, dict) and "orig" in targets:
            return targets["orig"]
        return super().output_on_originals(model, images, targets, device)

    def _ids(self, output) -> np.ndarray | list:
        c = self._require_bound()
        if isinstance(output, np.ndarray) and output.ndim == 4:
            from simlink.metrics.segmentation import labels_from_logits

            return labels_from_logits(output, c)
        return output

    def score(self, output, targets):
        from simlink.metrics.segmentation import confusion_matrices

        c = self._require_bound()
        pred = self._ids(output)
        out = {"seg_confusion": confusion_matrices(pred, targets["masks"], c, self.ignore_index)}
        if "orig" in targets:
            out["seg_confusion_orig"] = confusion_matrices(pred, targets["orig"], c, None)
        return out

    def lost_scores(self, columns, targets, n):
        from simlink.metrics.segmentation import confusion_matrices

        c = self._require_bound()
        out = {}
        if "seg_confusion" in columns:
            out["seg_confusion"] = confusion_matrices([None] * n, targets["masks"], c, self.ignore_index)
        if "seg_confusion_orig" in columns and "orig" in targets:
            out["seg_confusion_orig"] = confusion_matrices([None] * n, targets["orig"], c, None)
        return out

    def cell_columns(self, metrics, seed):
        from simlink.hashing import derive_seed
        from simlink.metrics.segmentation import bootstrap_ci, scores

        out: dict[str, float] = {}
        for key, (prefix, suffix) in SEGMENTATION_AGGREGATES.items():
            if key not in metrics:
                continue
            cm = np.asarray(metrics[key], dtype=np.float64)
            point = scores(cm.sum(axis=0))
            half = bootstrap_ci(cm, derive_seed(seed, key), BOOTSTRAP_RESAMPLES) if seed is not None else None
            for name, value in point.items():
                out[f"{prefix}{name}{suffix}"] = float(value)
                if half is not None:
                    out[f"{prefix}{name}{suffix}_ci"] = half[name]
        return out

    def per_class_rows(self, metrics, clean):
        from simlink.metrics.segmentation import per_class_iou

        if "seg_confusion" not in metrics:
            return []
        cm = np.asarray(metrics["seg_confusion"]).sum(axis=0)
        iou = per_class_iou(cm)
        iou_orig = per_class_iou(np.asarray(metrics["seg_confusion_orig"]).sum(axis=0)) \
            if "seg_confusion_orig" in metrics else np.full(len(iou), np.nan)
        iou_clean = per_class_iou(np.asarray(clean["seg_confusion"]).sum(axis=0)) \
            if "seg_confusion" in clean else np.full(len(iou), np.nan)
        c = len(iou)
        names = self.classes or [str(k) for k in range(c)]
        return [{"class_id": k, "class": names[k], "iou": float(iou[k]), "iou_vs_orig": float(iou_orig[k]),
                 "iou_clean": float(iou_clean[k]), "gt_pixels": int(cm[k].sum()),
                 "pred_pixels": int(cm[:, k].sum())} for k in range(c)]


def kind_for_output(outputs: dict) -> type[TaskKind] | None:
    """The registered kind whose ``head_output`` is among ``outputs``' names, if any."""
    for kind in TASK_KINDS.values():
        if kind.head_output and kind.head_output in outputs:
            return kind
    return None
