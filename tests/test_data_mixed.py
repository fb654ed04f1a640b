"""Mixed-size image sets: ImageSet's list form, and the loaders that return it at native size."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simlink.data import ImageSet, load_dataset
from simlink.data.loaders.transforms import resize_crop, stack

# (file name, H, W): 48x32 landscape, 32x48 portrait, 40x40 square, another 48x32 (width x height).
MIXED = [("a.png", 32, 48), ("b.png", 48, 32), ("c.png", 40, 40), ("d.png", 32, 48)]


pytestmark = pytest.mark.usefixtures("isolated_home")  # no real caches or SIMLINK_DATA leak in


def _noise(rng, h, w) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_folder(folder: Path, spec, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name, h, w in spec:
        Image.fromarray(_noise(rng, h, w)).save(folder / name)
        paths.append(folder / name)
    (folder / "readme.txt").write_text("not an image")
    return paths


def _pil(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _mixed_set(seed: int = 1, with_masks: bool = True, with_labels: bool = True) -> ImageSet:
    rng = np.random.default_rng(seed)
    images = [_noise(rng, h, w) for _, h, w in MIXED]
    masks = [rng.integers(0, 5, (h, w), dtype=np.uint8) for _, h, w in MIXED] if with_masks else None
    labels = np.array([3, 1, 4, 1], np.int64) if with_labels else None
    return ImageSet(images=images, labels=labels, masks=masks, classes=["a", "b", "c", "d", "e"],
                    name="mix", split="test", ignore_index=4, meta={"files": [n for n, _, _ in MIXED]})


# ----------------------------------------------------------------------------- folder loader


def test_mixed_folder_loads_at_native_size(tmp_path):
    paths = _write_folder(tmp_path / "kodak", MIXED)
    s = load_dataset("folder", root=tmp_path / "kodak")
    assert not s.uniform and isinstance(s.images, list) and len(s) == 4
    assert s.labels is None and s.masks is None
    assert s.meta["files"] == ["a.png", "b.png", "c.png", "d.png"]
    assert s.shapes == [(32, 48, 3), (48, 32, 3), (40, 40, 3), (32, 48, 3)]
    assert s.pixels.dtype == np.int64 and s.pixels.tolist() == [1536, 1536, 1600, 1536]
    for i, p in enumerate(paths):
        im = s.image(i)
        assert isinstance(im, np.ndarray) and im.dtype == np.uint8
        assert im.shape == _pil(p).shape and np.array_equal(im, _pil(p))
        assert im is s.images[i]
    assert np.array_equal(s.image(-1), _pil(paths[3]))
    for attr in ("image_shape", "num_pixels"):
        with pytest.raises(ValueError, match="differ in size") as info:
            getattr(s, attr)
        msg = str(info.value)
        assert "shapes" in msg and "pixels" in msg and "shape_groups()" in msg and attr in msg
        assert "48x32" in msg and "32x48" in msg


def test_mixed_folder_subset_selection_keeps_files(tmp_path):
    paths = _write_folder(tmp_path / "k", MIXED)
    s = load_dataset("folder", root=tmp_path / "k", n_images=3, seed=2)
    assert len(s) == 3 and s.meta["n_available"] == 4
    by_name = {p.name: _pil(p) for p in paths}
    for i, name in enumerate(s.meta["files"]):
        assert np.array_equal(s.image(i), by_name[name])
    assert s.shapes == [by_name[n].shape for n in s.meta["files"]]


def test_shape_groups_cover_every_index_once(tmp_path):
    paths = _write_folder(tmp_path / "k", MIXED)
    s = load_dataset("folder", root=tmp_path / "k")
    groups = s.shape_groups()
    assert [g.image_shape for _, g in groups] == [(32, 48, 3), (48, 32, 3), (40, 40, 3)]  # first appearance
    assert [idx.tolist() for idx, _ in groups] == [[0, 3], [1], [2]]
    covered = np.concatenate([idx for idx, _ in groups])
    assert sorted(covered.tolist()) == list(range(len(s)))
    for idx, g in groups:
        assert idx.dtype == np.int64
        assert g.uniform and isinstance(g.images, np.ndarray) and g.images.dtype == np.uint8
        assert len(g) == len(idx) and g.num_pixels == g.image_shape[0] * g.image_shape[1]
        assert np.array_equal(g.images, np.stack([_pil(paths[i]) for i in idx]))
        assert g.meta["files"] == s.meta["files"] and g.name == "folder"


def test_uniform_folder_is_an_array_as_before(tmp_path):
    spec = [("x1.png", 24, 36), ("x2.png", 24, 36), ("x3.png", 24, 36)]
    paths = _write_folder(tmp_path / "u", spec)
    s = load_dataset("folder", root=tmp_path / "u")
    expected = np.stack([_pil(p) for p in paths])
    assert s.uniform and type(s.images) is np.ndarray
    assert s.images.dtype == np.uint8 and s.images.shape == (3, 24, 36, 3)
    assert np.array_equal(s.images, expected) and s.images.flags.c_contiguous
    assert s.image_shape == (24, 36, 3) and s.num_pixels == 24 * 36
    assert s.shapes == [(24, 36, 3)] * 3 and s.pixels.tolist() == [864] * 3 and s.pixels.dtype == np.int64
    # The strict stack (what the folder loader used before) gives the very same batch.
    before, _ = stack([_pil(p) for p in paths], None, "u")
    assert np.array_equal(s.images, before) and s.images.shape == before.shape
    (idx, g), = s.shape_groups()
    assert g is s and np.array_equal(idx, np.arange(3)) and idx.dtype == np.int64
    assert np.array_equal(s.image(1), expected[1])


@pytest.mark.parametrize("size", [16, 40])
def test_image_size_still_gives_squares(tmp_path, size):
    paths = _write_folder(tmp_path / "k", MIXED)
    s = load_dataset("folder", root=tmp_path / "k", image_size=size)
    assert s.uniform and s.images.shape == (4, size, size, 3) and s.image_shape == (size, size, 3)
    assert s.meta["image_size"] == size
    for i, p in enumerate(paths):
        assert np.array_equal(s.images[i], resize_crop(_pil(p), None, size)[0])


# ----------------------------------------------------------------------------- other loaders via stack


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_npz_of_mixed_sizes(tmp_path):
    rng = np.random.default_rng(3)
    images = [_noise(rng, h, w) for _, h, w in MIXED]
    blobs = [_png(im) for im in images]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    np.savez(tmp_path / "test.npz", images=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets,
             labels=np.arange(4, dtype=np.int64))
    s = load_dataset("npz", root=tmp_path / "test.npz")
    assert not s.uniform and s.shapes == [im.shape for im in images]
    assert all(np.array_equal(s.image(i), images[i]) for i in range(4))
    assert s.labels.tolist() == [0, 1, 2, 3]
    sq = load_dataset("npz", root=tmp_path / "test.npz", image_size=8)
    assert sq.uniform and sq.images.shape == (4, 8, 8, 3)


def test_camvid_folders_of_mixed_sizes(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "camvid"
    (root / "test").mkdir(parents=True)
    (root / "testannot").mkdir()
    sizes = [(24, 40), (40, 24)]
    images, masks = [], []
    for i, (h, w) in enumerate(sizes):
        images.append(_noise(rng, h, w))
        masks.append(rng.integers(0, 14, (h, w)).astype(np.uint8))
        Image.fromarray(images[-1]).save(root / "test" / f"f{i}.png")
        Image.fromarray(masks[-1], mode="L").save(root / "testannot" / f"f{i}.png")
    s = load_dataset("camvid", "test", root=root)
    assert not s.uniform and isinstance(s.masks, list) and s.ignore_index == 11
    for i in range(2):
        assert np.array_equal(s.image(i), images[i])
        assert np.array_equal(s.masks[i], np.minimum(masks[i], 11))
    sq = load_dataset("camvid", "test", root=root, image_size=12)
    assert sq.uniform and sq.images.shape == (2, 12, 12, 3) and sq.masks.shape == (2, 12, 12)


def test_stack_strict_and_mixed():
    rng = np.random.default_rng(5)
    a, b = _noise(rng, 4, 6), _noise(rng, 6, 4)
    ma, mb = np.zeros((4, 6), np.uint8), np.ones((6, 4), np.uint8)
    with pytest.raises(ValueError, match="image_size"):
        stack([a, b], None, "x")
    imgs, msks = stack([a, b], [ma, mb], "x", allow_mixed=True)
    assert isinstance(imgs, list) and isinstance(msks, list)
    assert np.array_equal(imgs[1], b) and np.array_equal(msks[1], mb)
    same, m = stack([a, a], [ma, ma], "x", allow_mixed=True)
    assert isinstance(same, np.ndarray) and same.shape == (2, 4, 6, 3) and m.shape == (2, 4, 6)
    with pytest.raises(ValueError, match="mask 1 is 4x6 but its image is 6x4"):
        stack([a, a], [ma, ma.T], "x", allow_mixed=True)


# ----------------------------------------------------------------------------- ImageSet list form


def test_subset_of_a_mixed_set():
    s = _mixed_set()
    sub = s.subset(np.array([1, 2]))
    assert not sub.uniform and sub.shapes == [s.shapes[1], s.shapes[2]]
    assert np.array_equal(sub.image(0), s.image(1)) and np.array_equal(sub.masks[1], s.masks[2])
    assert sub.labels.tolist() == [1, 4] and sub.meta == s.meta and sub.meta is not s.meta
    assert sub.classes == s.classes and sub.ignore_index == 4 and sub.name == "mix" and sub.split == "test"
    sl = s.subset(slice(1, None, 2))  # images 1 and 3
    assert sl.shapes == [(48, 32, 3), (32, 48, 3)] and sl.labels.tolist() == [1, 1]
    assert np.array_equal(sl.image(1), s.image(3))
    mask = np.array([True, False, False, True])  # both 48x32: a uniform subset, stacked
    u = s.subset(mask)
    assert u.uniform and u.images.shape == (2, 32, 48, 3) and u.masks.shape == (2, 32, 48)
    assert np.array_equal(u.images[1], s.image(3)) and np.array_equal(u.masks[0], s.masks[0])
    assert u.labels.tolist() == [3, 1] and u.image_shape == (32, 48, 3)
    neg = s.subset(np.array([-1, 0]))
    assert np.array_equal(neg.image(0), s.image(3)) and neg.labels.tolist() == [1, 3]
    assert len(s.subset(np.array([], np.int64))) == 0
    with pytest.raises(IndexError):
        s.subset(np.array([True, False]))  # wrong-length boolean mask
    with pytest.raises(IndexError):
        s.subset(np.array([7]))
    with pytest.raises(ValueError, match="index must be"):
        s.subset(2)


def test_mixed_set_shape_groups_keep_labels_and_masks():
    s = _mixed_set()
    groups = s.shape_groups()
    assert [idx.tolist() for idx, _ in groups] == [[0, 3], [1], [2]]
    for idx, g in groups:
        assert g.uniform and g.masks.shape == g.images.shape[:3]
        assert g.labels.tolist() == s.labels[idx].tolist()
        for k, i in enumerate(idx):
            assert np.array_equal(g.images[k], s.image(i)) and np.array_equal(g.masks[k], s.masks[i])
    # Same height or same width is not the same shape.
    z = [np.zeros(shape, np.uint8) for shape in [(8, 6, 3), (8, 5, 3), (7, 6, 3), (8, 6, 3)]]
    t = ImageSet(images=z)
    assert [idx.tolist() for idx, _ in t.shape_groups()] == [[0, 3], [1], [2]]
    assert [g.image_shape for _, g in t.shape_groups()] == [(8, 6, 3), (8, 5, 3), (7, 6, 3)]


def test_list_of_one_size_is_stacked():
    rng = np.random.default_rng(6)
    ims = [_noise(rng, 5, 7) for _ in range(3)]
    ms = [rng.integers(0, 3, (5, 7), dtype=np.uint8) for _ in range(3)]
    s = ImageSet(images=ims, masks=ms)
    assert s.uniform and type(s.images) is np.ndarray and s.images.shape == (3, 5, 7, 3)
    assert type(s.masks) is np.ndarray and s.masks.shape == (3, 5, 7)
    assert np.array_equal(s.images[2], ims[2]) and np.array_equal(s.masks[1], ms[1])
    arr = np.stack(ims)
    t = ImageSet(images=arr, masks=ms)  # array images, list masks: masks stacked too
    assert t.images is arr and type(t.masks) is np.ndarray and np.array_equal(t.masks, np.stack(ms))
    e = ImageSet(images=[])
    assert len(e) == 0 and not e.uniform and e.shapes == [] and e.pixels.shape == (0,)
    assert e.shape_groups() == []
    with pytest.raises(ValueError, match="no images"):
        e.image_shape


def test_uniform_array_set_unchanged():
    rng = np.random.default_rng(7)
    arr = rng.integers(0, 256, (4, 6, 8, 3), dtype=np.uint8)
    m = rng.integers(0, 3, (4, 6, 8), dtype=np.uint8)
    s = ImageSet(images=arr, masks=m, labels=np.arange(4))
    assert s.images is arr and s.masks is m  # stored as given, no copy
    sub = s.subset(slice(1, 3))
    assert sub.images.base is arr and np.array_equal(sub.images, arr[1:3]) and np.array_equal(sub.masks, m[1:3])
    b = s.subset(np.array([True, False, True, False]))
    assert np.array_equal(b.images, arr[[0, 2]]) and b.labels.tolist() == [0, 2]
    assert s.shapes == [(6, 8, 3)] * 4 and s.image(3) is not None and np.array_equal(s.image(3), arr[3])
    with pytest.raises(ValueError, match=r"uint8\[N, H, W, 3\], got float32"):
        ImageSet(images=arr.astype(np.float32))
    with pytest.raises(ValueError, match="does not match images"):
        ImageSet(images=arr, masks=m[:, :5])


def test_image_validation_messages():
    rng = np.random.default_rng(8)
    good = _noise(rng, 4, 4)
    with pytest.raises(ValueError, match=r"images\[1\] must be uint8\[H, W, 3\], got float64\[4, 4, 3\]"):
        ImageSet(images=[good, good.astype(np.float64)])
    with pytest.raises(ValueError, match=r"images\[0\] must be uint8\[H, W, 3\], got uint8\[4, 4\]"):
        ImageSet(images=[good[..., 0], good])
    with pytest.raises(ValueError, match=r"images\[1\] must be .*got list"):
        ImageSet(images=[good, [[1, 2, 3]]])
    with pytest.raises(ValueError, match="array or a list"):
        ImageSet(images="not images")
    with pytest.raises(ValueError, match="labels has 2 entries for 4 images"):
        ImageSet(images=_mixed_set(with_masks=False).images, labels=np.zeros(2, np.int64))


def test_mask_validation_messages():
    s = _mixed_set(with_masks=True)
    images, masks = s.images, s.masks
    with pytest.raises(ValueError, match="masks has 3 entries for 4 images"):
        ImageSet(images=images, masks=masks[:3])
    with pytest.raises(ValueError, match=r"masks\[1\] shape \[32, 48\] does not match image 1 shape \[48, 32\]"):
        ImageSet(images=images, masks=[masks[0], masks[0], masks[2], masks[3]])
    with pytest.raises(ValueError, match=r"masks\[2\] must be uint8\[H, W\], got int64\[40, 40\]"):
        ImageSet(images=images, masks=[masks[0], masks[1], masks[2].astype(np.int64), masks[3]])
    with pytest.raises(ValueError, match=r"masks\[0\] must be uint8\[H, W\], got uint8\[32, 48, 1\]"):
        ImageSet(images=images, masks=[masks[0][..., None], masks[1], masks[2], masks[3]])
    with pytest.raises(ValueError, match=r"masks\[1\] shape \[32, 48\] does not match image 1"):
        ImageSet(images=images, masks=np.zeros((4, 32, 48), np.uint8))  # one array cannot fit mixed images
    with pytest.raises(ValueError, match="masks must be"):
        ImageSet(images=images, masks="nope")
    ok = ImageSet(images=images, masks=masks)
    assert isinstance(ok.masks, list) and all(m is n for m, n in zip(ok.masks, masks))
    with pytest.raises(ValueError, match=r"masks\[0\] shape \[5, 7\] does not match image 0 shape \[5, 6\]"):
        ImageSet(images=[np.zeros((5, 6, 3), np.uint8)] * 2, masks=[np.zeros((5, 7), np.uint8)] * 2)
