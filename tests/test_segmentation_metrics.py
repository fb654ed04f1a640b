"""mIoU, pixel and class-average accuracy from confusion matrices; bootstrap CIs; the
segmentation task kind's scoring (simlink.metrics.segmentation, simlink.tasks.kinds)."""

import numpy as np
import pytest

from simlink.data.base import ImageSet
from simlink.metrics.segmentation import bootstrap_ci, confusion_matrices, labels_from_logits, per_class_iou, scores
from simlink.tasks.kinds import TASK_KINDS

VOID = 3  # three classes 0, 1, 2 and a void id


def _example():
    """Two 2x3 images, classes 0..2, void 3 (truth only). Counted by hand below."""
    truth = np.array([[[0, 0, 1],
                       [1, 3, 2]],
                      [[0, 0, 0],
                       [1, 1, 3]]], dtype=np.uint8)
    pred = np.array([[[0, 1, 1],
                      [1, 2, 2]],
                     [[0, 0, 1],
                      [1, 0, 0]]], dtype=np.uint8)
    return truth, pred


def test_confusion_matrix_matches_hand_count():
    truth, pred = _example()
    cm = confusion_matrices(pred, truth, 3, VOID)
    assert cm.shape == (2, 3, 4)
    # image 0 (void pixel at (1,1) dropped): t0->p0, t0->p1, t1->p1, t1->p1, t2->p2
    want0 = np.zeros((3, 4))
    want0[0, 0] = 1; want0[0, 1] = 1; want0[1, 1] = 2; want0[2, 2] = 1  # noqa: E702
    # image 1 (void pixel at (1,2) dropped): t0->p0 x2, t0->p1, t1->p1, t1->p0
    want1 = np.zeros((3, 4))
    want1[0, 0] = 2; want1[0, 1] = 1; want1[1, 1] = 1; want1[1, 0] = 1  # noqa: E702
    np.testing.assert_array_equal(cm[0], want0)
    np.testing.assert_array_equal(cm[1], want1)


def test_scores_of_the_summed_matrix_by_hand():
    truth, pred = _example()
    s = scores(confusion_matrices(pred, truth, 3, VOID).sum(axis=0))
    # summed: row0 = [3, 2, 0], row1 = [1, 3, 0], row2 = [0, 0, 1]
    # IoU0 = 3 / (5 + 4 - 3) = 1/2, IoU1 = 3 / (4 + 5 - 3) = 1/2, IoU2 = 1 / (1 + 1 - 1) = 1
    assert s["miou"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert s["pixel_acc"] == pytest.approx(7 / 10)
    assert s["class_acc"] == pytest.approx((3 / 5 + 3 / 4 + 1) / 3)


def test_absent_classes_are_left_out_and_false_positives_count():
    truth = np.zeros((1, 2, 2), np.uint8)
    pred = np.zeros((1, 2, 2), np.uint8)
    cm = confusion_matrices(pred, truth, 4, None).sum(0)
    iou = per_class_iou(cm)
    assert iou[0] == 1.0 and np.isnan(iou[1:]).all()  # 1..3 absent from both: no IoU
    assert scores(cm)["miou"] == 1.0
    pred[0, 0, 0] = 2  # a false positive of an absent class counts: IoU_2 = 0
    s = scores(confusion_matrices(pred, truth, 4, None).sum(0))
    assert s["miou"] == pytest.approx((3 / 4 + 0.0) / 2)


def test_void_and_out_of_range_truth_are_ignored_and_bad_predictions_raise():
    truth = np.array([[[VOID, 255], [0, 1]]], np.uint8)
    pred = np.array([[[2, 2], [0, 1]]], np.uint8)
    cm = confusion_matrices(pred, truth, 3, VOID)
    assert cm.sum() == 2 and scores(cm[0])["miou"] == 1.0  # class 2 predicted only on void pixels
    with pytest.raises(ValueError, match="allowed 0..2"):
        confusion_matrices(np.full((1, 2, 2), 3, np.uint8), truth, 3, VOID)


def test_no_prediction_column_counts_misses_only():
    truth, _ = _example()
    cm = confusion_matrices([None, None], truth, 3, VOID)
    np.testing.assert_array_equal(cm[..., :3], 0)
    np.testing.assert_array_equal(cm[..., 3].sum(0), [5, 4, 1])
    s = scores(cm.sum(0))
    assert s["miou"] == 0.0 and s["pixel_acc"] == 0.0


def test_labels_from_logits_never_predicts_void():
    logits = np.zeros((1, 4, 1, 2), np.float32)
    logits[0, 3] = 10.0  # the void output is the largest everywhere
    logits[0, 1, 0, 0] = 1.0
    np.testing.assert_array_equal(labels_from_logits(logits, 3), [[[1, 0]]])


def _population(rng, n, c=4):
    """Per-image confusion matrices of a synthetic population: per image, random class sizes and
    a per-image accuracy; errors spread uniformly over the other classes."""
    cms = np.zeros((n, c, c + 1))
    for i in range(n):
        sizes = rng.integers(0, 400, size=c) * (rng.random(c) < 0.8)
        acc = rng.uniform(0.4, 0.95)
        for t in range(c):
            right = rng.binomial(sizes[t], acc)
            cms[i, t, t] = right
            wrong = rng.multinomial(sizes[t] - right, np.full(c - 1, 1 / (c - 1)))
            cms[i, t, [k for k in range(c) if k != t]] = wrong
    return cms


def test_bootstrap_ci_covers_the_population_miou_at_its_rate():
    rng = np.random.default_rng(0)
    pop = _population(rng, 4000)
    true = scores(pop.sum(0))
    trials, n, hits = 200, 60, {"miou": 0, "pixel_acc": 0}
    for t in range(trials):
        sample = pop[rng.choice(len(pop), n, replace=False)]
        point = scores(sample.sum(0))
        half = bootstrap_ci(sample, seed=t, resamples=400)
        for k in hits:
            hits[k] += abs(point[k] - true[k]) <= half[k]
    for k, h in hits.items():
        rate = h / trials
        assert 0.88 <= rate <= 0.995, (k, rate)  # 95 % nominal; binomial sd over 200 trials ~1.5 %


def test_bootstrap_is_seeded_and_needs_two_images():
    pop = _population(np.random.default_rng(1), 30)
    assert bootstrap_ci(pop, 7) == bootstrap_ci(pop, 7)
    assert np.isnan(bootstrap_ci(pop[:1], 7)["miou"])


class _Oracle:
    """A stand-in segmenter: predicts class ``(r + g + b) % C`` of each pixel's first channel."""

    kind = "segmentation"
    classes = ["a", "b", "c"]

    def predict(self, images, device="cpu"):
        return (images[..., 0] % 3).astype(np.uint8)


def test_segmentation_kind_scores_vs_truth_and_vs_original_and_cell_columns():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, size=(5, 4, 6, 3), dtype=np.uint8)
    masks = (images[..., 0] % 3).astype(np.uint8)
    masks[:, 0, 0] = VOID
    data = ImageSet(images=images, masks=masks, classes=["a", "b", "c"], ignore_index=VOID)
    kind = TASK_KINDS["segmentation"]().bind(data, _Oracle())
    targets = kind.prepare_targets(_Oracle(), data)
    np.testing.assert_array_equal(targets["orig"], images[..., 0] % 3)
    recon = images.copy()
    recon[:, :, :3, 0] = 0  # left half now predicted as class 0
    out = kind.measure(_Oracle(), recon, targets)
    assert set(out) == {"seg_confusion", "seg_confusion_orig"}
    assert out["seg_confusion"].shape == (5, 3, 4)
    assert out["seg_confusion"].sum() == 5 * 23 and out["seg_confusion_orig"].sum() == 5 * 24
    cols = kind.cell_columns(out, seed=0)
    want = scores(confusion_matrices((recon[..., 0] % 3).astype(np.uint8), masks, 3, VOID).sum(0))
    assert cols["miou"] == pytest.approx(want["miou"]) and cols["pixel_acc"] == pytest.approx(want["pixel_acc"])
    assert {"miou_ci", "miou_vs_orig", "miou_vs_orig_ci", "class_acc"} <= set(cols)
    assert kind.cell_columns(out, seed=None).keys() == {k for k in cols if not k.endswith("_ci")}
    rows = kind.per_class_rows(out, out)
    assert [r["class"] for r in rows] == ["a", "b", "c"]
    assert sum(r["gt_pixels"] for r in rows) == 5 * 23


def test_segmentation_kind_rejects_a_segmenter_of_other_classes():
    from simlink.errors import SimlinkError

    data = ImageSet(images=np.zeros((1, 8, 8, 3), np.uint8), masks=np.zeros((1, 8, 8), np.uint8),
                    classes=["road", "sky"], name="toy")
    with pytest.raises(SimlinkError, match="segmenter predicts 3 classes"):
        TASK_KINDS["segmentation"]().bind(data, _Oracle())
