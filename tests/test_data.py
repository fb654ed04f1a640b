"""Tests for simlink.data: the synthetic generator, every real-data loader on tiny fake data in the
official layouts, the search / error messages, and the download path (file:// URLs)."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simlink.data import DATASETS, ImageSet, list_datasets, load_dataset
from simlink.data import download as dl
from simlink.data import synthetic
from simlink.errors import DatasetNotFoundError

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"


pytestmark = pytest.mark.usefixtures("isolated_home")  # no real caches or SIMLINK_DATA leak in


def _rng_images(rng, n, h, w):
    """Smooth random RGB images (JPEG-friendly), ``uint8[n, h, w, 3]``."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(0, 255, (n, 1, 1, 3))
    fx, fy = rng.uniform(0.05, 0.3, (2, n, 1, 1, 1))
    wave = 60 * np.sin(xx[None, :, :, None] * fx + yy[None, :, :, None] * fy)
    return np.clip(base + wave, 0, 255).astype(np.uint8)


def _positions(subset: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Index in ``full`` of each image of ``subset`` (closest by mean absolute difference)."""
    d = np.abs(subset[:, None].astype(np.int16) - full[None].astype(np.int16)).mean(axis=(2, 3, 4))
    return d.argmin(axis=1)


def _jpeg_bytes(img: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _write_packed(path: Path, images: np.ndarray, labels=None, masks=None, classes=None) -> None:
    blobs = [_jpeg_bytes(im) for im in images]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    arrays = {"images": np.frombuffer(b"".join(blobs), np.uint8), "offsets": offsets}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, np.int64)
    if masks is not None:
        arrays["masks"] = np.asarray(masks, np.uint8)
    if classes is not None:
        arrays["classes"] = np.asarray(classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


# ----------------------------------------------------------------------------- registry


def test_registry_lists_all_datasets():
    names = [n for n, _ in list_datasets()]
    assert names == list(DATASETS)
    assert {"synthetic", "cifar10", "stl10", "camvid", "cityscapes", "folder", "npz"} <= set(names)
    for spec in DATASETS.values():
        assert spec.description and callable(spec.loader)


def test_unknown_name_and_split_list_allowed():
    with pytest.raises(ValueError, match="cifar10.*synthetic|synthetic.*cifar10"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="train.*test"):
        load_dataset("cifar10", split="validation")
    with pytest.raises(ValueError, match="n_images"):
        load_dataset("synthetic", n_images=0)


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_deterministic_and_split_dependent():
    a = load_dataset("synthetic", "test", n_images=40, seed=3)
    b = load_dataset("synthetic", "test", n_images=40, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.masks, b.masks)
    c = load_dataset("synthetic", "test", n_images=40, seed=4)
    d = load_dataset("synthetic", "train", n_images=40, seed=3)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.images, d.images)
    # A smaller request is a prefix of a larger one (generation is chunked, not n-dependent).
    e = load_dataset("synthetic", "test", n_images=300, seed=3)
    assert np.array_equal(e.images[:40], a.images)


@pytest.mark.parametrize("size", [32, 64])
def test_synthetic_shapes_dtypes(size):
    s = load_dataset("synthetic", "val", n_images=50, image_size=size)
    assert isinstance(s, ImageSet)
    assert s.images.shape == (50, size, size, 3) and s.images.dtype == np.uint8
    assert s.labels.shape == (50,) and s.labels.dtype == np.int64
    assert s.masks.shape == (50, size, size) and s.masks.dtype == np.uint8
    assert s.classes[0] == "background" and len(s.classes) == len(synthetic.SHAPE_CLASSES) + 1
    assert s.labels.min() >= 1 and s.labels.max() < len(s.classes)
    assert s.masks.max() < len(s.classes)
    # Images are not flat: real texture everywhere.
    assert s.images.reshape(50, -1, 3).std(axis=1).mean() > 10


def test_synthetic_bad_size_and_count():
    with pytest.raises(ValueError, match="32.*64"):
        load_dataset("synthetic", image_size=48)
    with pytest.raises(ValueError, match=r"5000.*1000"):
        load_dataset("synthetic", "test", n_images=5000)


def test_synthetic_label_mask_consistency():
    size = 32
    s = load_dataset("synthetic", "train", n_images=600, image_size=size, seed=1)
    counts = np.array([(m == lab).sum() for m, lab in zip(s.masks, s.labels)])
    # The main object is drawn last, fully inside the frame, with a radius >= 0.15 * size.
    assert counts.min() >= 12
    # It is the largest object: more pixels than any other class in the mask.
    for m, lab in zip(s.masks[:200], s.labels[:200]):
        hist = np.bincount(m.ravel(), minlength=len(s.classes))
        hist[0] = 0
        assert hist.argmax() == lab
    # Every shape class occurs as a label, balanced in any prefix; background is never a label.
    for n in (8, 13, 600):
        hist = np.bincount(s.labels[:n], minlength=len(s.classes))
        assert hist[0] == 0 and hist[1:].max() - hist[1:].min() <= 1
    # Distractors exist: some masks show two or more object classes.
    n_classes = np.array([len(np.unique(m[m > 0])) for m in s.masks])
    assert (n_classes >= 2).mean() > 0.3


# ----------------------------------------------------------------------------- compression hurts


def _jpeg_roundtrip(images: np.ndarray, quality: int) -> np.ndarray:
    out = np.empty_like(images)
    for i, im in enumerate(images):
        with Image.open(io.BytesIO(_jpeg_bytes(im, quality))) as dec:
            out[i] = np.asarray(dec.convert("RGB"))
    return out


def _random_feature_classifier(train: ImageSet, n_filters: int = 64, k: int = 5):
    """Fixed random 5x5 filters at full and half resolution -> ReLU(+/-) -> global max / mean and
    2x2 max pooling -> logistic regression (L-BFGS). A cheap stand-in for a task model
    (a few seconds on 2 cores). Returns ``predict(uint8[N, H, W, 3]) -> int64[N]``."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    w = torch.randn(n_filters, 3, k, k, generator=g)
    w -= w.mean((1, 2, 3), keepdim=True)
    w /= w.flatten(1).norm(dim=1)[:, None, None, None]

    def features(images: np.ndarray) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for i in range(0, len(images), 500):
                x = torch.from_numpy(images[i:i + 500]).permute(0, 3, 1, 2).float().div(255)
                x = x - x.mean((2, 3), keepdim=True)
                h = F.conv2d(x, w, padding=k // 2)
                h = torch.cat([F.relu(h), F.relu(-h)], 1)
                h2 = F.conv2d(F.avg_pool2d(x, 2), w, padding=k // 2)  # the same filters at half resolution
                h2 = torch.cat([F.relu(h2), F.relu(-h2)], 1)
                out.append(torch.cat([h.amax((2, 3)), h.mean((2, 3)), F.adaptive_max_pool2d(h, 2).flatten(1),
                                      h2.amax((2, 3)), h2.mean((2, 3))], 1))
        return torch.cat(out)

    f = features(train.images)
    mu, sd = f.mean(0), f.std(0) + 1e-6
    f = (f - mu) / sd
    y = torch.from_numpy(train.labels)
    torch.manual_seed(0)
    lin = torch.nn.Linear(f.shape[1], len(train.classes))
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=150, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(f), y) + 1e-3 * lin.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return lin((features(images) - mu) / sd).argmax(1).numpy()

    return predict


def test_synthetic_jpeg_compression_hurts_a_classifier():
    train = load_dataset("synthetic", "train", n_images=4000, seed=0)
    test = load_dataset("synthetic", "test", n_images=1000, seed=0)
    predict = _random_feature_classifier(train)
    chance = 1.0 / (len(test.classes) - 1)
    clean = float((predict(test.images) == test.labels).mean())
    q5 = float((predict(_jpeg_roundtrip(test.images, 5)) == test.labels).mean())
    print(f"synthetic classifier accuracy: clean {clean:.3f}, JPEG q5 {q5:.3f}, chance {chance:.3f}")
    assert clean > 1.8 * chance  # observed about 0.31 (chance 0.125)
    assert clean - q5 > 0.06  # observed about 0.15


# ----------------------------------------------------------------------------- CIFAR-10


def _write_cifar_batches(folder: Path, per_batch: int = 20, seed: int = 0) -> dict[str, tuple]:
    """Official python layout, labels ordered by class like the real files. Returns the raw arrays."""
    rng = np.random.default_rng(seed)
    out = {}
    (folder / "cifar-10-batches-py").mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = sorted(i % 10 for i in range(per_batch))  # ordered by class, like the real files
        with open(folder / "cifar-10-batches-py" / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f, protocol=2)
        out[name] = (data, np.array(labels))
    return out


def test_cifar10_official_layout(tmp_path):
    raw = _write_cifar_batches(tmp_path / "cifar10")
    full = load_dataset("cifar10", "test", root=tmp_path / "cifar10")
    data, labels = raw["test_batch"]
    assert full.images.shape == (20, 32, 32, 3) and full.images.dtype == np.uint8
    assert np.array_equal(full.images, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert np.array_equal(full.labels, labels) and full.labels.dtype == np.int64
    assert full.classes[0] == "airplane" and len(full.classes) == 10

    train = load_dataset("cifar10", "train", root=tmp_path)  # root/<name> is searched too
    assert len(train) == 100
    assert np.array_equal(train.labels[20:40], raw["data_batch_2"][1])

    sub = load_dataset("cifar10", "train", n_images=30, root=tmp_path, seed=5)
    again = load_dataset("cifar10", "train", n_images=30, root=tmp_path, seed=5)
    other = load_dataset("cifar10", "train", n_images=30, root=tmp_path, seed=6)
    assert np.array_equal(sub.images, again.images) and not np.array_equal(sub.images, other.images)
    # Each selected image keeps its own label; the subset is shuffled and class-balanced.
    pos = _positions(sub.images, train.images)
    assert np.array_equal(sub.images, train.images[pos]) and len(set(pos)) == 30
    assert np.array_equal(sub.labels, train.labels[pos])
    assert max(pos) >= 30
    assert np.array_equal(np.bincount(sub.labels, minlength=10), np.full(10, 3))
    # A smaller subset is a prefix of a larger one.
    first10 = load_dataset("cifar10", "train", n_images=10, root=tmp_path, seed=5)
    assert np.array_equal(first10.images, sub.images[:10])

    big = load_dataset("cifar10", "test", n_images=8, image_size=48, root=tmp_path)
    assert big.images.shape == (8, 48, 48, 3)

    with pytest.raises(ValueError, match=r"500.*100|100.*500"):
        load_dataset("cifar10", "train", n_images=500, root=tmp_path)


def test_cifar10_packed_and_env_var(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    images = _rng_images(rng, 12, 32, 32)
    labels = np.repeat(np.arange(4), 3)
    _write_packed(tmp_path / "data" / "cifar10" / "test.npz", images, labels=labels,
                  classes=["a", "b", "c", "d"])
    monkeypatch.setenv("SIMLINK_DATA", str(tmp_path / "data"))
    s = load_dataset("cifar10", "test", n_images=6, seed=2)
    idx = _positions(s.images, images)
    assert s.images.shape == (6, 32, 32, 3) and len(set(idx)) == 6
    assert np.array_equal(s.labels, labels[idx]) and s.classes == ["a", "b", "c", "d"]
    assert np.abs(s.images.astype(int) - images[idx]).mean() < 6  # JPEG q95 round trip
    assert sorted(np.bincount(s.labels, minlength=4)) == [1, 1, 2, 2]  # class-balanced subset
    assert s.meta["layout"] == "packed npz"


def test_missing_dataset_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMLINK_DATA", str(tmp_path / "envdata"))
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", "test", root=tmp_path / "nowhere")
    msg = str(info.value)
    for place in [tmp_path / "nowhere", tmp_path / "nowhere" / "cifar10", tmp_path / "envdata" / "cifar10",
                  Path.home() / ".cache" / "simlink" / "datasets" / "cifar10"]:
        assert str(place) in msg
    assert "cifar-10-batches-py/test_batch" in msg and "test.npz" in msg
    assert "root:" in msg and "SIMLINK_DATA" in msg and "download: true" in msg

    monkeypatch.delenv("SIMLINK_DATA")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("camvid", "val")
    msg = str(info.value)
    assert "SIMLINK_DATA is not set" in msg and "root:" in msg and "valannot/" in msg
    assert str(Path.home() / ".cache" / "simlink" / "datasets" / "camvid") in msg
    assert "download: true" not in msg  # camvid has no automatic download


# ----------------------------------------------------------------------------- STL-10


def test_stl10_binary_layout(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "stl10" / "stl10_binary"
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, (7, 96, 96, 3), dtype=np.uint8)
    labels = rng.integers(1, 11, 7).astype(np.uint8)
    images.transpose(0, 3, 2, 1).tofile(folder / "test_X.bin")  # column-major, as in the release
    labels.tofile(folder / "test_y.bin")
    (folder / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    s = load_dataset("stl10", "test", root=tmp_path / "stl10")
    assert np.array_equal(s.images, images)
    assert np.array_equal(s.labels, labels.astype(np.int64) - 1) and s.classes[3] == "c3"
    sub = load_dataset("stl10", "test", n_images=3, root=tmp_path, seed=1)
    pos = _positions(sub.images, images)
    assert np.array_equal(sub.images, images[pos]) and np.array_equal(sub.labels, s.labels[pos])
    small = load_dataset("stl10", "test", n_images=3, image_size=32, root=tmp_path, seed=1)
    assert small.images.shape == (3, 32, 32, 3) and np.array_equal(small.labels, sub.labels)
    with pytest.raises(DatasetNotFoundError, match="train_X.bin"):
        load_dataset("stl10", "train", root=tmp_path / "stl10")


# ----------------------------------------------------------------------------- CamVid


def _write_camvid(folder: Path, split: str, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    (folder / split).mkdir(parents=True)
    (folder / f"{split}annot").mkdir()
    images = _rng_images(rng, n, 24, 40)
    masks = rng.integers(0, 14, (n, 24, 40)).astype(np.uint8)  # 12, 13 are out of range -> void
    for i in range(n):
        Image.fromarray(images[i]).save(folder / split / f"0001TP_{i:04d}.png")
        Image.fromarray(masks[i], mode="L").save(folder / f"{split}annot" / f"0001TP_{i:04d}.png")
    return images, masks


def test_camvid_segnet_folders(tmp_path):
    rng = np.random.default_rng(3)
    images, masks = _write_camvid(tmp_path / "camvid", "test", 5, rng)
    s = load_dataset("camvid", "test", root=tmp_path / "camvid")
    assert np.array_equal(s.images, images)  # PNG is lossless
    assert np.array_equal(s.masks, np.minimum(masks, 11))
    assert s.ignore_index == 11 and len(s.classes) == 11 and s.classes[0] == "sky"
    assert s.meta["files"] == sorted(s.meta["files"])
    sub = load_dataset("camvid", "test", n_images=3, root=tmp_path / "camvid", seed=9)
    idx = _positions(sub.images, images)
    assert len(set(idx)) == 3 and np.array_equal(sub.images, images[idx])
    assert np.array_equal(sub.masks, np.minimum(masks[idx], 11))
    assert sub.meta["files"] == [f"0001TP_{i:04d}.png" for i in idx]


def test_resize_and_centre_crop_on_packed_masks(tmp_path):
    """Shorter side to image_size, centre crop; masks nearest (no new values), images bilinear."""
    rng = np.random.default_rng(4)
    n, h, w = 3, 24, 40
    images = _rng_images(rng, n, h, w)
    # Class = column // 5 (0..7): after scaling 40 -> 27 columns and cropping the middle 16,
    # the outermost classes 0 and 7 are cut away and 1..6 remain.
    masks = np.broadcast_to((np.arange(w) // 5).astype(np.uint8), (n, h, w)).copy()
    _write_packed(tmp_path / "camvid" / "val.npz", images, masks=masks)
    s = load_dataset("camvid", "val", image_size=16, root=tmp_path)
    assert s.images.shape == (n, 16, 16, 3) and s.masks.shape == (n, 16, 16)
    assert set(np.unique(s.masks)) == {1, 2, 3, 4, 5, 6}
    assert (np.diff(s.masks.astype(int), axis=2) >= 0).all()  # left-to-right order kept
    assert s.classes[0] == "sky" and s.ignore_index == 11
    native = load_dataset("camvid", "val", root=tmp_path)
    assert native.images.shape == (n, h, w, 3) and np.array_equal(native.masks, masks)


# ----------------------------------------------------------------------------- Cityscapes


def test_cityscapes_official_layout_maps_train_ids(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "cs"
    label_ids = np.array([[7, 8, 26, 0], [33, 9, 23, 24]], np.uint8).repeat(4, 0).repeat(4, 1)  # 8x16
    expected = np.array([[0, 1, 13, 255], [18, 255, 10, 11]], np.uint8).repeat(4, 0).repeat(4, 1)
    names = []
    for city in ["bremen", "aachen"]:
        for k in range(2):
            stem = f"{city}_000000_{k:06d}"
            (root / "leftImg8bit" / "val" / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / "val" / city).mkdir(parents=True, exist_ok=True)
            img_path = root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png"
            Image.fromarray(_rng_images(rng, 1, 8, 16)[0]).save(img_path)
            Image.fromarray(label_ids, mode="L").save(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png")
            names.append(f"{stem}_leftImg8bit.png")
    s = load_dataset("cityscapes", "val", root=root)
    assert s.images.shape == (4, 8, 16, 3) and len(s.classes) == 19 and s.ignore_index == 255
    assert all(np.array_equal(m, expected) for m in s.masks)
    assert s.meta["files"] == sorted(names)  # aachen before bremen
    small = load_dataset("cityscapes", "val", n_images=2, image_size=4, root=root)
    assert small.masks.shape == (2, 4, 4) and set(np.unique(small.masks)) <= set(np.unique(expected))
    # A missing label file is named.
    (root / "gtFine" / "val" / "aachen" / "aachen_000000_000001_gtFine_labelIds.png").unlink()
    with pytest.raises(ValueError, match="aachen_000000_000001_gtFine_labelIds.png"):
        load_dataset("cityscapes", "val", root=root)


# ----------------------------------------------------------------------------- folder / npz


def test_folder_of_images(tmp_path):
    rng = np.random.default_rng(6)
    a, b = _rng_images(rng, 1, 20, 30)[0], _rng_images(rng, 1, 30, 20)[0]
    Image.fromarray(a).save(tmp_path / "kodim02.png")
    Image.fromarray(b).save(tmp_path / "kodim01.bmp")
    Image.fromarray(a).save(tmp_path / "kodim03.jpg", quality=95)
    (tmp_path / "notes.txt").write_text("not an image")
    mixed = load_dataset("folder", root=tmp_path)  # mixed sizes without image_size: native, one array each
    assert not mixed.uniform and isinstance(mixed.images, list)
    assert mixed.shapes == [(30, 20, 3), (20, 30, 3), (20, 30, 3)]
    assert np.array_equal(mixed.image(0), b) and np.array_equal(mixed.image(1), a)  # bmp, png: lossless
    with pytest.raises(ValueError, match="differ in size"):
        mixed.image_shape
    s = load_dataset("folder", root=tmp_path, image_size=16)
    assert s.images.shape == (3, 16, 16, 3) and s.labels is None and s.masks is None
    assert s.meta["files"] == ["kodim01.bmp", "kodim02.png", "kodim03.jpg"]
    with pytest.raises(DatasetNotFoundError, match="root"):
        load_dataset("folder")
    (tmp_path / "same").mkdir()
    Image.fromarray(a).save(tmp_path / "same" / "x.png")
    assert np.array_equal(load_dataset("folder", root=tmp_path / "same").images[0], a)


def test_npz_file_or_folder(tmp_path):
    rng = np.random.default_rng(7)
    images = _rng_images(rng, 5, 16, 16)
    _write_packed(tmp_path / "mine" / "train.npz", images, labels=[0, 1, 0, 1, 1])
    s = load_dataset("npz", "train", root=tmp_path / "mine")
    assert len(s) == 5 and np.array_equal(s.labels, [0, 1, 0, 1, 1]) and s.masks is None
    f = load_dataset("npz", "anything", root=tmp_path / "mine" / "train.npz", n_images=2)
    assert len(f) == 2 and f.split == "anything"
    np.savez(tmp_path / "bad.npz", images=np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="offsets"):
        load_dataset("npz", root=tmp_path / "bad.npz")
    with pytest.raises(DatasetNotFoundError, match="missing.npz"):
        load_dataset("npz", root=tmp_path / "missing.npz")


# ----------------------------------------------------------------------------- download


def _make_tarball(tmp_path: Path, members: dict[str, Path]) -> tuple[Path, str]:
    tar_path = tmp_path / "archive.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for arcname, src in members.items():
            tar.add(src, arcname=arcname)
    return tar_path, hashlib.md5(tar_path.read_bytes()).hexdigest()


def test_download_md5_extract(tmp_path, monkeypatch):
    src = tmp_path / "src"
    raw = _write_cifar_batches(src)
    tar_path, md5 = _make_tarball(tmp_path, {"cifar-10-batches-py": src / "cifar-10-batches-py"})
    monkeypatch.setitem(dl.SOURCES, "cifar10", dl.Source(tar_path.as_uri(), md5, "cifar-10-python.tar.gz"))
    with pytest.raises(DatasetNotFoundError):
        load_dataset("cifar10", "test")  # not without download=True
    s = load_dataset("cifar10", "test", download=True)
    cache = Path.home() / ".cache" / "simlink" / "datasets" / "cifar10"
    assert np.array_equal(s.labels, raw["test_batch"][1])
    assert (cache / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert not (cache / "cifar-10-python.tar.gz").exists()  # archive removed after extraction
    assert s.meta["root"] == str(cache)


def test_download_wrong_md5_and_unsafe_archive(tmp_path, monkeypatch):
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    tar_path, md5 = _make_tarball(tmp_path, {"stl10_binary/class_names.txt": payload})
    dest = tmp_path / "dest"
    with pytest.raises(dl.DownloadError, match="md5"):
        dl.download_dataset("stl10", dest=dest, source=dl.Source(tar_path.as_uri(), "0" * 32, "a.tar.gz"))
    assert not (dest / "a.tar.gz").exists()
    monkeypatch.setitem(dl.SOURCES, "stl10", dl.Source(tar_path.as_uri(), "f" * 32, "a.tar.gz"))
    with pytest.raises(DatasetNotFoundError, match="md5"):
        load_dataset("stl10", "test", download=True)
    with pytest.raises(dl.DownloadError, match="could not download"):
        dl.download_dataset("stl10", dest=dest, source=dl.Source((tmp_path / "nope.tgz").as_uri(), md5, "b.tgz"))
    evil, evil_md5 = _make_tarball(tmp_path / "dest", {"../escape.txt": payload})
    with pytest.raises(dl.DownloadError, match="unsafe"):
        dl.download_dataset("stl10", dest=tmp_path / "dest2", source=dl.Source(evil.as_uri(), evil_md5, "c.tgz"))
    assert not (tmp_path / "escape.txt").exists()


# ----------------------------------------------------------------------------- shared offline data


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "cifar10" / "test.npz").is_file(), reason="../shared/data/cifar10 absent")
def test_shared_cifar10():
    s = load_dataset("cifar10", "train", n_images=200, root=SHARED / "cifar10", seed=0)
    assert s.images.shape == (200, 32, 32, 3) and s.classes[0] == "airplane"
    assert len(np.unique(s.labels)) == 10  # shuffled across the class-ordered file
    t = load_dataset("cifar10", "test", n_images=50, root=SHARED)
    assert t.images.shape == (50, 32, 32, 3) and t.meta["n_available"] == 10000


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "camvid" / "val.npz").is_file(), reason="../shared/data/camvid absent")
def test_shared_camvid():
    s = load_dataset("camvid", "val", n_images=4, image_size=64, root=SHARED)
    assert s.images.shape == (4, 64, 64, 3) and s.masks.shape == (4, 64, 64)
    assert s.masks.max() <= 11 and s.ignore_index == 11 and len(s.classes) == 11
    native = load_dataset("camvid", "test", n_images=2, root=SHARED / "camvid")
    assert native.images.shape == (2, 360, 480, 3) and native.meta["n_available"] == 233


def test_cifar_batch_refuses_code_in_pickles(tmp_path):
    """A pickle that names an arbitrary callable (how a malicious batch runs code) is refused."""
    import os
    import pickle

    from simlink.data.loaders.cifar10 import read_batch

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(ValueError, match="refusing to load"):
        read_batch(p)
    assert not (tmp_path / "pwned").exists()
