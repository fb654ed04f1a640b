"""Segmentation quality from confusion matrices: mIoU, pixel accuracy, class-average accuracy,
per-class IoU, and bootstrap confidence intervals over images.

Benchmarks (Cityscapes, CamVid, PASCAL VOC) accumulate one confusion matrix over *all* pixels of
all images and compute IoU from it; they do not average per-image IoUs. simlink does the same per
sweep cell: every image contributes its own confusion matrix (:func:`confusion_matrices`), the
cell sums them, and the scores come from the sum (:func:`scores`). Confidence intervals resample
images, not pixels (pixels of one image are far from independent): :func:`bootstrap_ci`.

Conventions (one matrix per image, ``float64[C, C + 1]``):

* row ``t`` = ground-truth class ``t`` (``0 .. C-1``); ground-truth pixels that are void
  (``ignore_index``) or outside ``0 .. C-1`` are not counted at all;
* column ``p < C`` = predicted class ``p``; column ``C`` = *no prediction* (a receiver head that
  produced nothing for a lost image: its pixels are missed, they are nobody's false positive).
  A prediction can never be void: a segmenter's void output is excluded from its argmax
  (:func:`labels_from_logits`), so predicted ids are always ``0 .. C-1``.

Scores of a summed matrix ``M`` (``tp_c = M[c, c]``, ``gt_c = sum_p M[c, p]``,
``pred_c = sum_t M[t, c]`` over the ``C`` class columns):

* ``IoU_c = tp_c / (gt_c + pred_c - tp_c)``; a class absent from both prediction and truth
  (denominator 0) has no IoU (NaN) and is left out of the mean: ``mIoU = nanmean_c IoU_c``;
* ``pixel_acc = sum_c tp_c / sum_c gt_c`` (global accuracy);
* ``class_acc = nanmean_c tp_c / gt_c`` over the classes present in the truth (class-average
  accuracy, the second number CamVid papers report).

Written here rather than taken from torchmetrics: torchmetrics computes these per batch or per
image, without the "no prediction" column, and is not a dependency; the maths is a few lines.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_ci", "confusion_matrices", "labels_from_logits", "per_class_iou", "scores"]


def labels_from_logits(logits: np.ndarray, num_classes: int) -> np.ndarray:
    """Predicted class ids from segmentation scores, the void output (and any other output at
    index ``num_classes`` or above) excluded from the argmax.

    Args:
        logits: ``float[N, K, H, W]`` scores with ``K >= num_classes`` outputs.
        num_classes: ``C``, the evaluated classes (outputs ``0 .. C-1``).

    Returns:
        ``uint8[N, H, W]`` (``int16`` for ``C > 255``) ids in ``0 .. C-1``.
    """
    logits = np.asarray(logits)
    if logits.ndim != 4 or logits.shape[1] < num_classes:
        raise ValueError(f"expected scores [N, K >= {num_classes}, H, W], got {list(logits.shape)}")
    ids = logits[:, :num_classes].argmax(axis=1)
    return ids.astype(np.uint8 if num_classes <= 255 else np.int16)


def confusion_matrices(pred, target, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """One confusion matrix per image.

    Args:
        pred: predicted ids ``int[N, H, W]`` (or a list of ``int[H_i, W_i]``) in ``0 .. C-1``;
            ``None`` for an image (in a list) means *no prediction* (column ``C``).
        target: ground-truth ids of the same shapes; ``ignore_index`` and ids outside
            ``0 .. C-1`` are void and not counted.
        num_classes: ``C``.
        ignore_index: the void id, or ``None``.

    Returns:
        ``float64[N, C, C + 1]`` pixel counts (row: truth, column: prediction, last column: none).

    Raises:
        ValueError: shapes differ, or a prediction lies outside ``0 .. C-1``.
    """
    c = int(num_classes)
    n = len(target)
    out = np.zeros((n, c, c + 1), dtype=np.float64)
    for i in range(n):
        t = np.asarray(target[i]).astype(np.int64, copy=False).ravel()
        valid = (t >= 0) & (t < c)
        if ignore_index is not None:
            valid &= t != ignore_index
        p_i = pred[i]
        if p_i is None:
            out[i, :, c] = np.bincount(t[valid], minlength=c)[:c]
            continue
        p = np.asarray(p_i).astype(np.int64, copy=False).ravel()
        if p.shape != t.shape:
            raise ValueError(f"image {i}: prediction has {p.size} pixels, its truth {t.size}")
        if p.size and (p.min() < 0 or p.max() >= c):
            raise ValueError(f"image {i}: predicted ids span {int(p.min())}..{int(p.max())}, allowed 0..{c - 1}")
        out[i, :, :c] = np.bincount(t[valid] * c + p[valid], minlength=c * c).reshape(c, c)
    return out


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """``float64[..., C]`` IoU of every class from summed matrices ``float[..., C, C + 1]`` (NaN
    where the class is absent from both prediction and truth)."""
    cm = np.asarray(cm, dtype=np.float64)
    c = cm.shape[-2]
    tp = np.diagonal(cm[..., :c], axis1=-2, axis2=-1)
    gt = cm.sum(axis=-1)
    pred = cm[..., :c].sum(axis=-2)
    denom = gt + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.where(denom > 0, denom, 1.0), np.nan)


def scores(cm: np.ndarray) -> dict[str, np.ndarray | float]:
    """``miou``, ``pixel_acc``, ``class_acc`` of summed matrices ``float[..., C, C + 1]`` (floats
    for one matrix, arrays over the leading axes otherwise); NaN where nothing was counted."""
    cm = np.asarray(cm, dtype=np.float64)
    c = cm.shape[-2]
    iou = per_class_iou(cm)
    tp = np.diagonal(cm[..., :c], axis1=-2, axis2=-1)
    gt = cm.sum(axis=-1)
    total = gt.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc_c = np.where(gt > 0, tp / np.where(gt > 0, gt, 1.0), np.nan)
        pixel_acc = np.where(total > 0, tp.sum(axis=-1) / np.where(total > 0, total, 1.0), np.nan)
    out = {"miou": _nanmean(iou), "pixel_acc": pixel_acc, "class_acc": _nanmean(acc_c)}
    return {k: (float(v) if np.ndim(v) == 0 else v) for k, v in out.items()}


def _nanmean(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN (without a warning) where all are NaN."""
    present = ~np.isnan(x)
    count = present.sum(axis=-1)
    total = np.where(present, x, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def bootstrap_ci(per_image: np.ndarray, seed: int, resamples: int = 1000,
                 confidence: float = 0.95) -> dict[str, float]:
    """Half-widths of percentile-bootstrap confidence intervals of :func:`scores`, resampling images.

    Each resample draws ``N`` images with replacement (multinomial counts), sums their matrices
    and scores the sum; the interval is the ``(1 -+ confidence) / 2`` quantiles of the resampled
    scores and the half-width is half its length, so plots can draw ``score +- half-width`` error
    bars (the interval itself need not be symmetric about the point estimate).

    Args:
        per_image: ``float[N, C, C + 1]`` per-image confusion matrices.
        seed: seeds the resampling (the sweep passes the cell's seed: tables are reproducible).
        resamples: bootstrap resamples.
        confidence: two-sided level.

    Returns:
        ``{"miou": h, "pixel_acc": h, "class_acc": h}``; NaN for fewer than two images.
    """
    cm = np.asarray(per_image, dtype=np.float64)
    n = len(cm)
    if n < 2:
        return {"miou": np.nan, "pixel_acc": np.nan, "class_acc": np.nan}
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)  # [B, N]
    sums = (weights @ cm.reshape(n, -1)).reshape(resamples, *cm.shape[1:])
    lo, hi = (1 - confidence) / 2, (1 + confidence) / 2
    out = {}
    for k, v in scores(sums).items():
        v = np.asarray(v)
        v = v[~np.isnan(v)]
        out[k] = float((np.quantile(v, hi) - np.quantile(v, lo)) / 2) if v.size else np.nan
    return out
