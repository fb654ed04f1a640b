"""Images of mixed sizes (Kodak mixes 768x512 and 512x768): a ``folder`` dataset at native size
(``image_size: null``) is coded per shape, and every per-image figure counts the image's own
pixels, so the sweep's row equals the mean of coding each image alone."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from simlink.data import load_dataset
from simlink.methods import build_method
from simlink.scenario import parse_scenario
from simlink.sweep import run_scenario

SIZES = [(48, 32), (32, 48), (40, 40), (48, 32)]  # (height, width): both orientations, a square, a repeat


def _write_folder(root, images) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(root / f"im{i}.png")


def _scenario(root, n: int) -> dict:
    return {
        "name": "mixed", "seed": 1, "device": "cpu",
        "dataset": {"name": "folder", "root": str(root), "n_images": n, "image_size": None},
        "methods": [{"name": "jpeg", "quality": [40]}, {"name": "webp", "quality": [60]}],
        "link": {"code": {"k": 512, "n": 768, "num_iter": 10}, "modulation": 16},
        "channels": [{"name": "awgn"}],
        "snr_db": [25.0],
    }


@pytest.fixture(scope="module")
def crops():
    base = load_dataset("synthetic", n_images=len(SIZES), image_size=64, seed=2).images
    return [base[i, :h, 64 - w:] for i, (h, w) in enumerate(SIZES)]


def test_mixed_orientations_equal_coding_each_image_alone(tmp_path, crops):
    _write_folder(tmp_path / "all", crops)
    mixed = run_scenario(parse_scenario(_scenario(tmp_path / "all", len(SIZES))), tmp_path / "out", quiet=True, plots=False)
    alone = []
    for i, im in enumerate(crops):
        _write_folder(tmp_path / f"one{i}", [im])
        alone.append(run_scenario(parse_scenario(_scenario(tmp_path / f"one{i}", 1)), tmp_path / f"out{i}",
                                  quiet=True, plots=False))
    assert (mixed.lost_frac == 0).all() and (mixed.n_images == len(SIZES)).all()
    for method in ("jpeg", "webp"):
        row = mixed[mixed.method == method].iloc[0]
        singles = [a[a.method == method].iloc[0] for a in alone]
        for col in ("bpp", "cpp", "psnr", "ssim", "ms_ssim", "psnr_clean"):
            assert row[col] == pytest.approx(np.mean([s[col] for s in singles]), rel=1e-9), (method, col)
        # each image's own pixel count: its stream's bits over its H*W (coded here, independently)
        m = build_method(parse_scenario(_scenario(tmp_path / "all", len(SIZES))).methods[0 if method == "jpeg" else 1])
        (op,) = m.operating_points()
        bpp = [8 * len(m.encode(im[None], op).streams[0]) / (h * w) for im, (h, w) in zip(crops, SIZES)]
        assert row.bpp == pytest.approx(np.mean(bpp), rel=1e-12)
        assert row.n_blocks == sum(s.n_blocks for s in singles)
    # the same images cropped to one size are another context, and resized squares still work
    d = _scenario(tmp_path / "all", len(SIZES))
    d["dataset"]["image_size"] = 32
    sq = run_scenario(parse_scenario(d), tmp_path / "square", quiet=True, plots=False)
    assert len(sq) == 2 and (sq.cpp > 0).all()


def test_mixed_sizes_survive_a_noisy_link(tmp_path, crops):
    """decode_anyway in the waterfall: corrupted streams of every shape are decoded again (or
    fail and are concealed) group by group; the row stays finite."""
    _write_folder(tmp_path / "all", crops)
    d = _scenario(tmp_path / "all", len(SIZES))
    d["error_policy"] = "decode_anyway"
    d["snr_db"] = [6.0, 8.0, 9.0]
    d["channels"] = [{"name": "awgn"}, {"name": "rayleigh_block"}]
    df = run_scenario(parse_scenario(d), tmp_path / "out", quiet=True, plots=False)
    assert np.isfinite(df[["psnr", "ssim", "ms_ssim"]].to_numpy()).all()
    assert (df.lost_frac > 0).any() and (df.concealed_frac > 0).any()  # some streams failed to decode
