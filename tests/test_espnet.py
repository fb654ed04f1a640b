"""ESPNet (simlink.tasks.espnet): shapes, input normalisation, weights record, strict loading of
the authors' CamVid checkpoint, and its quality on CamVid test.

The full evaluation (all 233 test images, at 360x480 and 184x240) runs only with
``SIMLINK_ESPNET_FULL=1``, or as a script: ``python tests/test_espnet.py [out.txt]``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from simlink.errors import SimlinkError
from simlink.tasks.espnet import (CAMVID_MEAN_BGR, CAMVID_STD_BGR, ESPNET_CAMVID, ESPNet, ESPNetInput,
                                  espnet_segmenter, load_espnet_camvid_net)
from simlink.tasks.weights import resolve_weights

WEIGHTS = Path("/work/shared/weights/espnet_p_2_q_8_camvid.pth")
CAMVID = Path("/work/shared/data/camvid")
HAVE_WEIGHTS = WEIGHTS.is_file()
HAVE_TEST = (CAMVID / "test.npz").is_file()
FULL = os.environ.get("SIMLINK_ESPNET_FULL") == "1"

needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason=f"checkpoint {WEIGHTS} not present")
needs_data = pytest.mark.skipif(not (HAVE_WEIGHTS and HAVE_TEST),
                                reason=f"checkpoint {WEIGHTS} or CamVid {CAMVID}/test.npz not present")


def _is_running_stat(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


# ---------------------------------------------------------------------- architecture
@needs_weights
def test_parameter_count_matches_checkpoint():
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    expected = sum(v.numel() for k, v in state.items() if not _is_running_stat(k))
    net = ESPNet(12, 2, 8)
    assert sum(p.numel() for p in net.parameters()) == expected
    assert 340_000 < expected < 370_000  # the README's "358 k" ballpark


def test_parameter_count_without_checkpoint():
    # fixed by the architecture (same value the checkpoint test measures from the file)
    n = sum(p.numel() for p in espnet_segmenter().parameters())
    assert 340_000 < n < 370_000
    assert sum(b.numel() for b in espnet_segmenter().normalize.buffers()) == 6


@pytest.mark.parametrize("size", [(32, 32), (184, 240), (360, 480)])
def test_output_shape(size):
    torch.manual_seed(0)
    model = espnet_segmenter(num_outputs=12).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 12, *size) and y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("k", [1, 2, 4, 5, 9])
def test_other_num_outputs_and_depths(k):
    # fewer than 5 outputs: the decoder's ESP block keeps only k branches (see _SpatialPyramid)
    model = espnet_segmenter(num_outputs=k, p=1, q=2).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 64)).shape == (2, k, 32, 64)


@pytest.mark.parametrize("size", [(30, 32), (32, 36), (100, 100)])
def test_size_not_multiple_of_8_raises(size):
    model = espnet_segmenter().eval()
    with pytest.raises(ValueError, match=f"{size[0]}x{size[1]}"):
        model(torch.rand(1, 3, *size))


@pytest.mark.parametrize("size", [(32, 32), (184, 240)])
def test_trains_in_train_mode(size):
    torch.manual_seed(0)
    model = espnet_segmenter(num_outputs=12).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(2, 3, *size)
    target = torch.randint(0, 12, (2, *size))
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), target, ignore_index=11)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]


def test_registered_architecture_rebuilds_from_kwargs():
    from simlink.tasks.classifier import build_architecture

    kwargs = {"num_outputs": 4, "p": 1, "q": 1, "mean_bgr": [1.0, 2.0, 3.0], "std_bgr": [4.0, 5.0, 6.0]}
    net = build_architecture("espnet", **kwargs)
    assert net.net.num_outputs == 4 and len(net.net.encoder.level3) == 1
    assert net.normalize.mean.flatten().tolist() == [1.0, 2.0, 3.0]


# ---------------------------------------------------------------------- input normalisation
def test_input_normalisation_values():
    norm = ESPNetInput(CAMVID_MEAN_BGR, CAMVID_STD_BGR)
    x = torch.rand(2, 3, 8, 8)
    bgr255 = x[:, [2, 1, 0]] * 255
    mean = torch.tensor(CAMVID_MEAN_BGR).view(1, 3, 1, 1)
    std = torch.tensor(CAMVID_STD_BGR).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), (bgr255 - mean) / std / 255)
    assert {k for k, _ in norm.named_buffers()} == {"mean", "std"}
    assert not list(norm.parameters())


def test_input_normalisation_is_differentiable():
    model = espnet_segmenter().eval()
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    model(x)[:, 3].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_record_statistics_are_rgb_unit_versions_of_bgr():
    np.testing.assert_allclose(ESPNET_CAMVID.mean, np.array(CAMVID_MEAN_BGR[::-1]) / 255, atol=1e-6)
    np.testing.assert_allclose(ESPNET_CAMVID.std, np.array(CAMVID_STD_BGR[::-1]) / 255, atol=1e-6)
    assert len(ESPNET_CAMVID.sha256) == 64 and not ESPNET_CAMVID.is_prefix_hash


# ---------------------------------------------------------------------- weights
def test_wrong_checksum_rejected(tmp_path):
    fake = tmp_path / ESPNET_CAMVID.filename
    fake.write_bytes(b"not the ESPNet checkpoint")
    with pytest.raises(SimlinkError, match="checksum"):
        resolve_weights(ESPNET_CAMVID, path=fake)
    with pytest.raises(SimlinkError, match="checksum"):
        load_espnet_camvid_net(tmp_path)  # a folder holding a wrong file


@needs_weights
def test_strict_load_of_real_checkpoint():
    model = load_espnet_camvid_net(WEIGHTS)
    assert not model.training
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert len(state) == 189
    ours = model.net.state_dict()
    for k, v in state.items():
        torch.testing.assert_close(ours[k], v, rtol=0, atol=0)
    with torch.no_grad():
        y = model(torch.rand(1, 3, 64, 96))
    assert y.shape == (1, 12, 64, 96) and torch.isfinite(y).all()


@needs_weights
def test_pretrained_registry_entry(tmp_path):
    from simlink.tasks.classifier import TaskModel
    from simlink.tasks.loading import PRETRAINED
    from simlink.tasks.segmenter import SegmentationModel

    model = PRETRAINED["espnet_camvid"](str(WEIGHTS))
    assert isinstance(model, SegmentationModel) and model.kind == "segmentation"
    assert model.num_classes == 11 and model.size_multiple == 8
    assert not any(p.requires_grad for p in model.net.parameters())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 36, 50, 3), dtype=np.uint8)  # padded to 40x56 inside
    pred = model.predict(images)
    assert pred.shape == (2, 36, 50) and pred.dtype == np.uint8 and pred.max() < 11
    model.save(tmp_path / "espnet.pt")
    again = TaskModel.load(tmp_path / "espnet.pt")
    assert isinstance(again, SegmentationModel)
    np.testing.assert_array_equal(again.predict(images), pred)


@needs_data
def test_real_camvid_accuracy_first_16():
    from simlink.data import load_dataset
    from simlink.metrics.segmentation import confusion_matrices, scores

    data = load_dataset("camvid", split="test", root=str(CAMVID))
    model = load_espnet_camvid_net(WEIGHTS)
    pred = _predict(model, data.images[:16])
    s = scores(confusion_matrices(pred, data.masks[:16], 11, ignore_index=11).sum(0))
    assert s["pixel_acc"] > 0.8, s
    assert s["miou"] > 0.4, s


# ---------------------------------------------------------------------- full evaluation
def _predict(model, images: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """``uint8[N, H, W]`` argmax over the 11 CamVid outputs (void excluded)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).permute(0, 3, 1, 2).float() / 255
            out.append(model(x)[:, :11].argmax(1).to(torch.uint8).numpy())
    return np.concatenate(out)


def evaluate_on_camvid(image_size=None, weights=WEIGHTS, root=CAMVID, threads: int = 2) -> dict:
    """Run the pretrained ESPNet on all CamVid test images and score it (one confusion matrix
    over all pixels, void ignored).

    Args:
        image_size: ``None`` for the native 360x480, or ``[H, W]`` (``load_dataset``'s cover +
            centre-crop resize of images and masks).

    Returns:
        ``{"size", "n_images", "miou", "class_acc", "pixel_acc", "per_class_iou" (dict), "s_per_image"}``.
    """
    from simlink.data import load_dataset
    from simlink.metrics.segmentation import confusion_matrices, per_class_iou, scores

    torch.set_num_threads(threads)
    data = load_dataset("camvid", split="test", root=str(root), image_size=image_size)
    model = load_espnet_camvid_net(weights)
    t0 = time.perf_counter()
    pred = _predict(model, data.images)
    wall = time.perf_counter() - t0
    cm = confusion_matrices(pred, data.masks, 11, ignore_index=11).sum(0)
    s = scores(cm)
    iou = per_class_iou(cm)
    return {"size": list(data.images.shape[1:3]), "n_images": len(data.images), "miou": float(s["miou"]),
            "class_acc": float(s["class_acc"]), "pixel_acc": float(s["pixel_acc"]),
            "per_class_iou": dict(zip(data.classes, map(float, iou))), "s_per_image": wall / len(data.images)}


def format_report(results: list[dict]) -> str:
    lines = [f"ESPNet p=2 q=8, pretrained CamVid checkpoint ({ESPNET_CAMVID.filename}), CamVid test split",
             f"published (authors' README, 360x480): mIoU {ESPNET_CAMVID.meta['reported_miou']:.2f} %, "
             f"class-avg acc {ESPNET_CAMVID.meta['reported_class_acc']:.2f} %",
             f"torch threads: {torch.get_num_threads()}", ""]
    for r in results:
        h, w = r["size"]
        lines.append(f"size {h}x{w} (HxW), {r['n_images']} images, {r['s_per_image']:.3f} s/image (CPU)")
        lines.append(f"  mIoU {100 * r['miou']:.2f} %   class-avg acc {100 * r['class_acc']:.2f} %   "
                     f"global pixel acc {100 * r['pixel_acc']:.2f} %")
        for name, v in r["per_class_iou"].items():
            lines.append(f"    IoU {name:<12s} {100 * v:6.2f} %")
        lines.append("")
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="full CamVid evaluation: set SIMLINK_ESPNET_FULL=1")
@needs_data
def test_full_camvid_evaluation():
    results = [evaluate_on_camvid(None), evaluate_on_camvid([184, 240])]
    print("\n" + format_report(results))
    native = results[0]
    assert native["n_images"] == 233
    assert abs(100 * native["miou"] - ESPNET_CAMVID.meta["reported_miou"]) < 3.0
    assert abs(100 * native["class_acc"] - ESPNET_CAMVID.meta["reported_class_acc"]) < 4.0


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/espnet_eval.txt")
    report = format_report([evaluate_on_camvid(None), evaluate_on_camvid([184, 240])])
    out.write_text(report + "\n")
    print(report)
