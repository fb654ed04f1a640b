"""The segmentation task end to end: scenarios/segmentation_small.yaml trains a U-Net on the
synthetic masks (cached, through the one trainer), sweeps JPEG and WebP over the real link, and
writes miou / pixel_acc / miou_vs_orig with CIs and the per-class table; the report gives BD-mIoU."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simlink.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "segmentation_small.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from simlink.sweep.runner import run_scenario

    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("seg") / "out"
    sc = load_scenario(SCENARIO)
    df = run_scenario(sc, out, quiet=True, plots=True, cache_root=cache)
    return sc, out, df, cache


def _independent_miou(pred: np.ndarray, truth: np.ndarray, c: int) -> float:
    """mIoU by explicit per-class pixel sets (not via a confusion matrix)."""
    ious = []
    for k in range(c):
        p, t = pred == k, truth == k
        union = np.logical_or(p, t).sum()
        if union:
            ious.append(np.logical_and(p, t).sum() / union)
    return float(np.mean(ious))


def test_trained_segmenter_beats_the_majority_class_by_a_clear_margin(run):
    from simlink.data import load_dataset
    from simlink.sweep.prepare import training_context

    sc, _, _, cache = run
    ctx = training_context(sc, "cpu", lambda s: None, cache)  # loads the cached segmenter
    test = load_dataset("synthetic", split="test", n_images=200, image_size=32, seed=1)
    pred = ctx.task.predict(test.images)
    c = len(test.classes)
    majority = np.bincount(test.masks.ravel(), minlength=c).argmax()
    miou = _independent_miou(pred, test.masks, c)
    miou_majority = _independent_miou(np.full_like(test.masks, majority), test.masks, c)
    acc, acc_majority = (pred == test.masks).mean(), (test.masks == majority).mean()
    assert miou > miou_majority + 0.3, (miou, miou_majority)
    assert acc > acc_majority + 0.05, (acc, acc_majority)


def test_every_cell_has_segmentation_columns_with_cis(run):
    _, _, df, _ = run
    for col in ("miou", "miou_ci", "pixel_acc", "pixel_acc_ci", "class_acc", "miou_vs_orig", "miou_vs_orig_ci",
                "miou_clean", "pixel_acc_clean", "miou_vs_orig_clean"):
        assert col in df, col
        assert df[col].notna().all(), col
    assert "seg_confusion" not in df and "seg_confusion_ci" not in df
    assert ((df["miou"] >= 0) & (df["miou"] <= 1)).all()
    hi = df[df["snr_db"] == 20]
    assert (hi["lost_frac"] == 0).all()
    np.testing.assert_allclose(hi["miou"], hi["miou_clean"])  # nothing lost: what arrived is the clean decode
    lo = df[df["snr_db"] == 4]
    assert (lo["concealed_frac"] == 1).all()
    assert (lo["miou"] < hi.set_index(["method", "op"]).loc[list(zip(lo["method"], lo["op"])), "miou"].values).all()
    jpeg = df[(df["method"] == "jpeg") & (df["snr_db"] == 20)].set_index("op")
    assert jpeg.loc["q=90", "miou_vs_orig"] > jpeg.loc["q=10", "miou_vs_orig"]


def test_clean_miou_matches_an_independent_computation(run):
    from simlink.data import load_dataset
    from simlink.methods import build_method
    from simlink.methods.base import ImageKeys
    from simlink.sweep.prepare import training_context

    sc, out, df, cache = run
    ctx = training_context(sc, "cpu", lambda s: None, cache)
    d = sc.dataset
    data = load_dataset(d.name, split=d.split, n_images=d.n_images, image_size=d.image_size, seed=sc.seed)
    cfg = next(m for m in sc.methods if m.name == "jpeg")
    method = build_method(cfg)
    op = next(o for o in method.operating_points() if o.label == "q=50")
    keys = ImageKeys.derive(np.arange(len(data)), sc.seed, cfg.display_name, op.label)
    rec = method.decode(method.encode(data.images, op, keys), op, data.image_shape, keys)
    pred = ctx.task.predict(rec.images)
    row = df[(df["method"] == "jpeg") & (df["op"] == "q=50")].iloc[0]
    assert row["miou_clean"] == pytest.approx(_independent_miou(pred, data.masks, len(data.classes)))
    assert row["pixel_acc_clean"] == pytest.approx((pred == data.masks).mean())
    orig = ctx.task.predict(data.images)
    assert row["miou_vs_orig_clean"] == pytest.approx(_independent_miou(pred, orig, len(data.classes)))
    on_orig = json.loads((out / "manifest.json").read_text())["task_on_originals"]  # the receiver's ceiling
    assert on_orig["miou"] == pytest.approx(_independent_miou(orig, data.masks, len(data.classes)))
    assert on_orig["pixel_acc"] == pytest.approx((orig == data.masks).mean())
    assert 0 < on_orig["miou_ci"] < 0.5 and not any("_vs_orig" in k for k in on_orig)


def test_per_class_table_is_tidy_and_resumes(run):
    from simlink.sweep.runner import run_scenario

    sc, out, df, cache = run
    per_class = pd.read_parquet(out / "results_per_class.parquet")
    classes = 9  # synthetic: background + 8 shapes
    assert len(per_class) == len(df) * classes
    assert {"method", "op", "channel", "snr_db", "repeat", "class_id", "class", "iou", "iou_vs_orig",
            "iou_clean", "gt_pixels"} <= set(per_class.columns)
    cell = per_class[(per_class["method"] == "jpeg") & (per_class["op"] == "q=90") & (per_class["snr_db"] == 20)]
    assert len(cell) == classes
    present = cell["iou"].dropna()
    row = df[(df["method"] == "jpeg") & (df["op"] == "q=90") & (df["snr_db"] == 20)].iloc[0]
    assert present.mean() == pytest.approx(row["miou"])  # mIoU is the mean of the classes present
    again = run_scenario(sc, out, quiet=True, plots=False, cache_root=cache)  # nothing left to compute
    pd.testing.assert_frame_equal(again, df)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results_per_class.parquet"), per_class)


def test_miou_plots_and_bd_miou_report(run):
    from typer.testing import CliRunner

    from simlink.cli import app

    _, out, _, _ = run
    assert (out / "plots" / "miou_vs_snr.png").exists()
    assert (out / "plots" / "miou_vs_bpp.png").exists()
    res = CliRunner().invoke(app, ["report", str(out), "--metric", "miou", "--anchor", "jpeg"])
    assert res.exit_code == 0, res.output
    bd = pd.read_csv(out / "report_bd_miou.csv")
    webp = bd[(bd["method"] == "webp") & (bd["channel"] == "error-free")]
    assert len(webp) == 1 and np.isfinite(webp["bd_metric"].iloc[0])
