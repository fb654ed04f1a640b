"""Rectangular image sizes: ``image_size`` as ``[H, W]`` besides an int (a square side).

Geometry is checked against an independent computation (the scale-to-cover formula worked out
here, Pillow's resize and numpy slicing instead of the loader's crop box), plus images whose
pixel values encode their column / row index so the kept region's centre can be read off.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from simlink.data.loaders.transforms import normalize_size, resize_crop, resize_crop_batch
from simlink.data.registry import load_dataset
from simlink.errors import ScenarioError
from simlink.scenario import parse_scenario

from conftest import SHARED_DATA

H0, W0 = 360, 480  # CamVid's native frame


# ----------------------------------------------------------------------------- helpers
def _ramp_image(h: int = H0, w: int = W0) -> np.ndarray:
    """``uint8[h, w, 3]``: R rises linearly with the column (0 .. 255), G with the row, B constant."""
    cols = np.rint(np.arange(w) * 255.0 / (w - 1))
    rows = np.rint(np.arange(h) * 255.0 / (h - 1))
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = cols[None, :]
    img[..., 1] = rows[:, None]
    img[..., 2] = 77
    return img


def _block_mask(h: int = H0, w: int = W0) -> np.ndarray:
    """``uint8[h, w]`` labels ``8 * (row // 60) + col // 60`` (0 .. 47; no two blocks share an id)."""
    rr, cc = np.mgrid[0:h, 0:w]
    return (8 * (rr // 60) + cc // 60).astype(np.uint8)


def _expected_geometry(h: int, w: int, out_h: int, out_w: int):
    """Independent: resized size and crop offsets for covering ``out_h x out_w``."""
    scale = max(out_h / h, out_w / w)
    nw, nh = max(out_w, round(w * scale)), max(out_h, round(h * scale))
    return nw, nh, (nw - out_w) // 2, (nh - out_h) // 2


def _source_coord(j, offset: int, n_out: int, n_in: int):
    """Continuous source pixel index of output index ``j`` after resizing ``n_in -> n_out`` and
    cropping ``offset`` pixels (pixel centres at integers)."""
    return (np.asarray(j) + offset + 0.5) * n_in / n_out - 0.5


def _old_square(image: np.ndarray, size: int) -> np.ndarray:
    """The square resize_crop as it was before rectangular sizes (shorter side, centre crop)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    scale = size / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    out = Image.fromarray(image)
    if (nw, nh) != (w, h):
        out = out.resize((nw, nh), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8)[top:top + size, left:left + size]


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _write_packed_camvid(folder, images, masks, split: str = "test"):
    """A CamVid-format packed npz: encoded PNGs concatenated, offsets, masks."""
    blobs = [np.frombuffer(_png(im), np.uint8) for im in images]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    np.savez(folder / f"{split}.npz", images=np.concatenate(blobs), offsets=offsets, masks=np.stack(masks))


# ----------------------------------------------------------------------------- normalize_size
@pytest.mark.parametrize("size, expected", [(None, None), (32, (32, 32)), ([184, 240], (184, 240)),
                                            ((7, 9), (7, 9)), (np.int64(5), (5, 5))])
def test_normalize_size_accepts(size, expected):
    assert normalize_size(size) == expected


@pytest.mark.parametrize("size", [True, 0, -3, [1, 2, 3], [4], [4, True], [4.0, 4], "32", 32.0, [0, 5]])
def test_normalize_size_rejects(size):
    with pytest.raises(ValueError, match=r"dataset.image_size must be None, an integer >= 1 .*\[H, W\].*got"):
        normalize_size(size, "dataset.image_size")


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("out_h, out_w", [(184, 240), (128, 256)])
def test_resize_crop_matches_independent_geometry(out_h, out_w):
    img, mask = _ramp_image(), _block_mask()
    out, m = resize_crop(img, mask, [out_h, out_w])
    assert out.shape == (out_h, out_w, 3) and out.dtype == np.uint8
    assert m.shape == (out_h, out_w) and m.dtype == np.uint8
    nw, nh, left, top = _expected_geometry(H0, W0, out_h, out_w)
    full = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BILINEAR))
    assert np.array_equal(out, full[top:top + out_h, left:left + out_w])
    full_m = np.asarray(Image.fromarray(mask).resize((nw, nh), Image.Resampling.NEAREST))
    assert np.array_equal(m, full_m[top:top + out_h, left:left + out_w])


@pytest.mark.parametrize("out_h, out_w", [(184, 240), (128, 256)])
def test_crop_is_centred(out_h, out_w):
    """The ramps read back where each output row / column came from: the kept region is centred."""
    img = _ramp_image()
    out = resize_crop(img, None, (out_h, out_w))[0].astype(np.float64)
    nw, nh, left, top = _expected_geometry(H0, W0, out_h, out_w)
    for axis, n_out, n_res, n_in, offset, ch in [(1, out_w, nw, W0, left, 0), (0, out_h, nh, H0, top, 1)]:
        profile = out[..., ch].mean(axis=1 - axis)  # channel value per output column (axis 1) / row (axis 0)
        j = np.arange(n_out)
        expect = _source_coord(j, offset, n_res, n_in) * 255.0 / (n_in - 1)
        inner = slice(3, n_out - 3)  # away from the borders, where the filter support is clipped
        assert np.abs(profile[inner] - expect[inner]).max() < 1.0
        # The kept region's centre maps to the source centre, up to the odd leftover pixel of the crop.
        centre = _source_coord((n_out - 1) / 2, offset, n_res, n_in)
        assert abs(centre - (n_in - 1) / 2) <= 0.5 * n_in / n_res + 1e-9
        assert abs(profile[n_out // 2 - 1:n_out // 2 + 1].mean() - centre * 255.0 / (n_in - 1)) < 0.75
        # Symmetric crop: what is lost on each side differs by at most one resized pixel.
        lost_lo, lost_hi = offset, n_res - n_out - offset
        assert 0 <= lost_hi - lost_lo <= 1


def test_184x240_crops_columns_and_128x256_rows():
    nw, nh, left, top = _expected_geometry(H0, W0, 184, 240)
    assert (nw, nh, left, top) == (245, 184, 2, 0)
    nw, nh, left, top = _expected_geometry(H0, W0, 128, 256)
    assert (nw, nh, left, top) == (256, 192, 0, 32)


@pytest.mark.parametrize("out_h, out_w", [(184, 240), (128, 256), (64, 64), (400, 300)])
def test_masks_nearest_and_aligned(out_h, out_w):
    img, mask = _ramp_image(), _block_mask()
    out, m = resize_crop(img, mask, [out_h, out_w])
    assert set(np.unique(m)) <= set(np.unique(mask))
    # Alignment: each output pixel's label is the block of the source pixel its image value came from.
    nw, nh, left, top = _expected_geometry(H0, W0, out_h, out_w)
    src_x = np.floor((np.arange(out_w) + left + 0.5) * W0 / nw).astype(int)
    src_y = np.floor((np.arange(out_h) + top + 0.5) * H0 / nh).astype(int)
    expect = mask[np.clip(src_y, 0, H0 - 1)][:, np.clip(src_x, 0, W0 - 1)]
    assert (m != expect).mean() < 0.01  # Pillow's rounding may differ exactly on a sample boundary
    # ... and the image, read through its column ramp, is in the same column block as the mask.
    col_from_image = out[out_h // 2, :, 0].astype(np.float64) * (W0 - 1) / 255.0
    block = m[out_h // 2] % 8
    far_from_edges = np.abs((col_from_image % 60) - 30) < 25
    assert np.array_equal((col_from_image // 60).astype(int)[far_from_edges], block[far_from_edges])


def test_upscaling_and_identity():
    img, mask = _ramp_image(30, 40), _block_mask(30, 40)
    same_img, same_mask = resize_crop(img, mask, [30, 40])
    assert same_img is img and same_mask is mask
    big, bm = resize_crop(img, mask, [90, 60])  # scale = max(3, 1.5) = 3 -> 120x90, crop 30 columns each side
    assert big.shape == (90, 60, 3) and bm.shape == (90, 60)
    full = np.asarray(Image.fromarray(img).resize((120, 90), Image.Resampling.BILINEAR))
    assert np.array_equal(big, full[:, 30:90])


# ----------------------------------------------------------------------------- int == [s, s]
@pytest.mark.parametrize("shape, s", [((360, 480), 64), ((480, 360), 100), ((37, 53), 16), ((20, 20), 32),
                                      ((64, 64), 64)])
def test_int_and_square_pair_are_bit_identical(shape, s):
    rng = np.random.default_rng(sum(shape) + s)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    mask = rng.integers(0, 12, shape, dtype=np.uint8)
    a_img, a_mask = resize_crop(img, mask, s)
    for form in ([s, s], (s, s)):
        b_img, b_mask = resize_crop(img, mask, form)
        assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    assert np.array_equal(a_img, _old_square(img, s))  # square results unchanged from before
    batch = rng.integers(0, 256, (3, *shape, 3), dtype=np.uint8)
    assert np.array_equal(resize_crop_batch(batch, s), resize_crop_batch(batch, [s, s]))


def test_batch_rectangular():
    batch = np.stack([_ramp_image(), _ramp_image()[:, ::-1].copy()])
    out = resize_crop_batch(batch, [128, 256])
    assert out.shape == (2, 128, 256, 3)
    assert np.array_equal(out[0], resize_crop(batch[0], None, (128, 256))[0])
    assert resize_crop_batch(batch, [H0, W0]).shape == batch.shape


# ----------------------------------------------------------------------------- loaders
def _camvid_frames(n: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = [np.clip(_ramp_image().astype(int) + rng.integers(-20, 21, (H0, W0, 3)), 0, 255).astype(np.uint8)
              for _ in range(n)]
    masks = []
    for _ in range(n):
        m = _block_mask() % 12
        m[rng.random((H0, W0)) < 0.01] = 255  # void pixels: CamVid maps anything above 11 to 11
        masks.append(m.astype(np.uint8))
    return images, masks


def test_packed_camvid_rectangular(tmp_path):
    images, masks = _camvid_frames()
    _write_packed_camvid(tmp_path, images, masks)
    s = load_dataset("camvid", "test", root=tmp_path, image_size=[184, 240])
    assert s.uniform and s.images.shape == (3, 184, 240, 3) and s.images.dtype == np.uint8
    assert s.masks.shape == (3, 184, 240) and s.masks.dtype == np.uint8
    assert s.masks.max() <= 11 and s.ignore_index == 11
    assert s.meta["image_size"] == [184, 240]
    for i in range(3):
        exp_img, exp_mask = resize_crop(images[i], np.minimum(masks[i], 11), (184, 240))
        assert np.array_equal(s.images[i], exp_img) and np.array_equal(s.masks[i], exp_mask)
    wide = load_dataset("camvid", "test", root=tmp_path, n_images=2, image_size=(128, 256))
    assert wide.images.shape == (2, 128, 256, 3) and wide.masks.shape == (2, 128, 256)


def test_packed_int_and_pair_same_pixels_meta_as_given(tmp_path):
    images, masks = _camvid_frames(2, seed=1)
    _write_packed_camvid(tmp_path, images, masks)
    a = load_dataset("camvid", "test", root=tmp_path, image_size=48)
    b = load_dataset("camvid", "test", root=tmp_path, image_size=[48, 48])
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert a.meta["image_size"] == 48 and isinstance(a.meta["image_size"], int)
    assert b.meta["image_size"] == [48, 48]


def test_folder_rectangular(tmp_path):
    Image.fromarray(_ramp_image()).save(tmp_path / "a.png")
    Image.fromarray(_ramp_image(480, 360)).save(tmp_path / "b.png")  # portrait
    s = load_dataset("folder", root=tmp_path, image_size=[184, 240])
    assert s.uniform and s.images.shape == (2, 184, 240, 3) and s.meta["image_size"] == [184, 240]


def test_load_dataset_rejects_bad_sizes():
    for bad in (True, [1, 2, 3], [0, 8], "64"):
        with pytest.raises(ValueError, match="image_size must be None"):
            load_dataset("synthetic", n_images=2, image_size=bad)


def test_synthetic_square_pair_and_non_square():
    a = load_dataset("synthetic", n_images=3, image_size=32, seed=1)
    b = load_dataset("synthetic", n_images=3, image_size=[32, 32], seed=1)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert a.meta["image_size"] == 32 and b.meta["image_size"] == [32, 32]
    with pytest.raises(ValueError, match=r"image_size \[32, 64\] is not one of 32, 64"):
        load_dataset("synthetic", n_images=3, image_size=[32, 64])
    from simlink.data.synthetic import load_synthetic

    with pytest.raises(ValueError, match=r"must be one of \[32, 64\] \(squares only"):
        load_synthetic(n_images=3, image_size=(64, 32))


# ----------------------------------------------------------------------------- scenario
def _parse(d):
    return parse_scenario(d, "s.yaml")


@pytest.mark.parametrize("value, message", [
    (True, "dataset.image_size: true is not an integer"),
    ([True, 32], "dataset.image_size: [true, 32] is not [H, W] of two integers"),
    ([32, 32, 32], "dataset.image_size: [32, 32, 32] is not [H, W]: a size list has two values (height, width), got 3"),
    (4, "dataset.image_size: 4 is not >= 8 (an image side is at least 8 pixels)"),
    ([4, 4], "dataset.image_size: [4, 4] is not [H, W] with both sides >= 8 pixels"),
    ("big", "dataset.image_size: 'big' is not an integer or a list [H, W] of two integers"),
    ([32, 64], "dataset.image_size: [32, 64] is not one of 32, 64 for dataset 'synthetic'"),
])
def test_scenario_image_size_errors(tiny_scenario_dict, value, message):
    tiny_scenario_dict["dataset"]["image_size"] = value
    with pytest.raises(ScenarioError) as e:
        _parse(tiny_scenario_dict)
    assert str(e.value) == f"s.yaml: {message}"


def test_scenario_square_pair_is_the_int(tiny_scenario_dict):
    base = _parse(tiny_scenario_dict)
    tiny_scenario_dict["dataset"]["image_size"] = [32, 32]
    pair = _parse(tiny_scenario_dict)
    assert pair.dataset.image_size == 32 and isinstance(pair.dataset.image_size, int)
    assert pair.context_hash() == base.context_hash()
    assert pair.legacy_context_hashes() == base.legacy_context_hashes()


def test_scenario_rectangular_for_real_data(tiny_scenario_dict, tmp_path):
    tiny_scenario_dict["dataset"] = {"name": "camvid", "root": str(tmp_path), "n_images": 2,
                                     "image_size": [184, 240]}
    sc = _parse(tiny_scenario_dict)
    assert sc.dataset.image_size == [184, 240]
    assert sc.to_yaml_dict()["dataset"]["image_size"] == [184, 240]
    assert _parse(sc.to_yaml_dict()).context_hash() == sc.context_hash()  # round-trips through the manifest
    tiny_scenario_dict["dataset"]["image_size"] = [240, 184]
    assert _parse(tiny_scenario_dict).context_hash() != sc.context_hash()


# ----------------------------------------------------------------------------- real CamVid (optional)
CAMVID_TEST = SHARED_DATA / "camvid" / "test.npz"


@pytest.mark.skipif(not CAMVID_TEST.is_file(), reason=f"{CAMVID_TEST} not present")
def test_real_camvid_test_split_184x240():
    s = load_dataset("camvid", "test", image_size=[184, 240], root=CAMVID_TEST.parent)
    n = len(s)
    assert n == 233  # the SegNet test split
    assert s.images.shape == (n, 184, 240, 3) and s.images.dtype == np.uint8
    assert s.masks.shape == (n, 184, 240) and s.masks.dtype == np.uint8
    assert s.masks.min() >= 0 and s.masks.max() <= 11
    assert s.images.std() > 10  # real pictures, not blank frames
