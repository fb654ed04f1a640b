"""What is measured on every reconstruction: the image-quality metrics and the task's scores.

:data:`IMAGE_METRICS` is the metric table (name -> per-image function); :class:`Measure` computes
them for reconstructions of (a subset of) the sent images, plus the scores of the scenario's task
kind (:mod:`simlink.tasks.kinds`): the frozen task model on the reconstruction, or a method's own
head when its reception carries the kind's output (``class_logits`` ...).

Images of mixed sizes: a call measures reconstructions of one shape (the sweep groups images by
shape); the originals are looked up per index.
"""

from __future__ import annotations

import numpy as np

from simlink.errors import SimlinkError
from simlink.metrics.image import ms_ssim, psnr, ssim

#: Per-image quality metrics, ``f(originals uint8[N, H, W, 3], reconstructions) -> float[N]``.
IMAGE_METRICS = {"psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim}


def image_metrics(originals: np.ndarray, recon: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of :data:`IMAGE_METRICS`, per image: ``{name: float64[N]}``."""
    return {name: np.asarray(f(originals, recon), dtype=np.float64) for name, f in IMAGE_METRICS.items()}


class Measure:
    """Per-image metrics of reconstructions of the sent images.

    Args:
        data: the sent images: an :class:`~simlink.data.base.ImageSet` (any sizes), or a
            ``uint8[N, H, W, 3]`` array (then ``labels`` gives the class labels, if any).
        labels: ``int64[N]`` class labels when ``data`` is an array.
        task: the frozen task model (e.g. :class:`simlink.tasks.TaskModel`) run on every
            reconstruction, or ``None``.
        kind: the task kind's name (``task.kind``; default ``classification``).
        device: torch device for the task model.

    Calling ``measure(recon, idx, outputs)`` with ``recon uint8[len(idx), H, W, 3]``
    reconstructions of the images at ``idx`` (all images if ``None``) and the reception's named
    ``outputs`` (sliced to ``idx``) returns ``{name: float64[len(idx), ...]}``: every image metric, and
    the task kind's columns — from a head output if present (then the task model's score on
    the reconstruction is ``recon_<column>``), else from the task model. Without a task model, a
    head output of any registered kind is scored by that kind. Outputs no registered kind scores
    are ignored. No images: ``{}``. Most values are ``float64[len(idx)]``; a kind's *aggregates*
    (segmentation: one confusion matrix per image) have more axes and become cell columns through
    :meth:`cell_columns`.

    What a kind compares against is prepared once here (segmentation: the task model's prediction
    on every original, for ``miou_vs_orig``), not per cell.

    Raises:
        SimlinkError: a task model (or a head) needs targets the data does not carry, or does not
            fit it (a segmenter of other classes).
    """

    def __init__(self, data, labels: np.ndarray | None = None, task=None, kind: str | None = None,
                 device: str = "cpu"):
        from simlink.data.base import ImageSet
        from simlink.tasks.kinds import DEFAULT_TASK_KIND, TASK_KINDS

        kind = kind or DEFAULT_TASK_KIND

        if not isinstance(data, ImageSet):
            data = ImageSet(images=np.asarray(data), labels=labels)
        self.data, self.task, self.device = data, task, device
        self.kind = TASK_KINDS[kind]()
        model_kind = getattr(task, "kind", None)
        if task is not None and model_kind is not None and model_kind != kind:
            raise SimlinkError(f"task.model: a {model_kind} model cannot serve a task of kind {kind!r}")
        self._kinds = {kind: self.kind}
        self._targets: dict = {}
        if task is not None:  # a task model needs targets: say so now, not at the first cell
            self._kind(type(self.kind))

    def _kind(self, kind_cls):
        """The bound instance of ``kind_cls`` and its targets for all images (prepared on first use)."""
        name = kind_cls.name
        if name not in self._kinds:
            self._kinds[name] = kind_cls()
        kind = self._kinds[name]
        if name not in self._targets:
            who = "task" if self.task is not None and kind is self.kind else f"the receiver's {kind.head_output}"
            kind.targets(self.data, who=who)
            kind.bind(self.data, self.task if kind is self.kind else None)
            self._targets[name] = kind.prepare_targets(self.task if kind is self.kind else None, self.data,
                                                       self.device)
        return kind, self._targets[name]

    def concealed(self, base: dict[str, np.ndarray], outputs, n: int) -> dict[str, np.ndarray]:
        """Metrics of concealed images (all ``n`` sent images) for a method whose receptions carry
        the named ``outputs``.

        ``base`` is this measure of the concealment image itself (no outputs: the task model's
        scores). For each task kind whose head output the method has, the concealment image is
        what the task model sees (``recon_<column>`` = the task model's score of it) while the
        head gets nothing to run on: its columns score a lost image
        (:meth:`~simlink.tasks.kinds.TaskKind.lost_scores`, a failure)."""
        from simlink.tasks.kinds import TASK_KINDS

        out = dict(base)
        for kind_cls in TASK_KINDS.values():
            if kind_cls.head_output and kind_cls.head_output in outputs:
                kind, targets = self._kind(kind_cls)
                for c in kind.columns:
                    if c.startswith("recon_") and c[len("recon_"):] in base:
                        out[c] = base[c[len("recon_"):]]
                out.update(kind.lost_scores(kind.columns, targets, n))
        return out

    def originals_at(self, idx: np.ndarray | None) -> np.ndarray:
        """``uint8[len(idx), H, W, 3]``: the sent images at ``idx`` (all of one shape)."""
        if idx is None:
            return self.data.images
        idx = np.asarray(idx, dtype=np.int64)
        if isinstance(self.data.images, np.ndarray):
            return self.data.images[idx]
        if not len(idx):
            raise ValueError("no images to measure")
        return np.stack([self.data.images[i] for i in idx])

    def __call__(self, recon: np.ndarray, idx: np.ndarray | None = None,
                 outputs: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        from simlink.tasks.kinds import kind_for_output

        if idx is not None and len(idx) == 0:
            return {}
        out = image_metrics(self.originals_at(idx), recon)
        outputs = outputs or {}
        kind_cls = type(self.kind)
        if self.task is None:  # no task model: only a head can be scored, by the kind it belongs to
            kind_cls = kind_for_output(outputs)
            if kind_cls is None:
                return out
        kind, targets = self._kind(kind_cls)
        head = outputs.get(kind.head_output)
        if idx is not None:
            targets = kind.take(targets, np.asarray(idx, dtype=np.int64))
        out.update(kind.measure(self.task if kind is self.kind else None, recon, targets, head, self.device))
        return out

    def cell_columns(self, metrics: dict[str, np.ndarray], seed: int | None) -> dict[str, float]:
        """The columns the task kinds make of their aggregates among ``metrics`` (a whole cell);
        ``seed`` seeds bootstrap CIs (``None``: point estimates only, e.g. the ``*_clean`` columns)."""
        out: dict[str, float] = {}
        for kind in self._kinds.values():
            out.update(kind.cell_columns(metrics, seed))
        return out

    def on_originals(self, seed: int | None = None) -> dict[str, float]:
        """The task model's quality on the sent images themselves, what no link can beat (the
        manifest's ``task_on_originals``): ``{column: float}`` over all images, per-image scores
        averaged and aggregates turned into columns (segmentation: ``miou``, ``pixel_acc``,
        ``class_acc``; ``seed`` seeds their ``*_ci``). ``{}`` without a task model.

        The columns comparing with the model's own view of the originals (``*_vs_orig``) are
        left out: they are 1 here by definition."""
        if self.task is None:
            return {}
        kind, targets = self._kind(type(self.kind))
        per_image: dict[str, list] = {}
        order: list[np.ndarray] = []
        for index, subset in self.data.shape_groups():
            sub = kind.take(targets, index)
            scores = kind.score(kind.output_on_originals(self.task, subset.images, sub, self.device), sub)
            for name, values in scores.items():
                per_image.setdefault(name, []).append(np.asarray(values))
            order.append(index)
        if not order:
            return {}
        back = np.argsort(np.concatenate(order), kind="stable")
        metrics = {name: np.concatenate(parts)[back] for name, parts in per_image.items()}
        out = {name: float(np.mean(v)) for name, v in metrics.items() if not is_aggregate(v)}
        out.update(kind.cell_columns(metrics, seed))
        return {k: v for k, v in out.items() if "_vs_orig" not in k}

    def per_class_rows(self, metrics: dict[str, np.ndarray], clean: dict[str, np.ndarray]) -> list[dict]:
        """The per-class table's rows of one cell (segmentation: one per class), ``[]`` if none."""
        rows: list[dict] = []
        for kind in self._kinds.values():
            rows.extend(kind.per_class_rows(metrics, clean))
        return rows


def is_aggregate(values) -> bool:
    """True for a per-image aggregate (``float64[N, ...]`` with more than one axis), which
    :meth:`Measure.cell_columns` turns into columns instead of a mean."""
    return np.ndim(values) > 1
