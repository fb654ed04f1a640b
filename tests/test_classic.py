"""Tests for the classic image codecs (simlink.methods.classic)."""

from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest
from pydantic import ValidationError

from simlink.methods import classic
from simlink.methods.base import METHODS, DigitalPayload

CODECS = ["jpeg", "jpeg2000", "webp", "avif", "heif"]
HIGH_QUALITY = {"jpeg": 95, "jpeg2000": 50, "webp": 95, "avif": 90, "heif": 90}


def smooth_images(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """``uint8[n, h, w, 3]``: random gradients, a rectangle and a disc, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        img = np.empty((h, w, 3))
        for c in range(3):
            a, b, off = rng.uniform(-120, 120, 3)
            img[..., c] = 128 + off * 0.5 + a * xx + b * yy
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.uniform(0, 255, 3)
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, 1 + max(h, w) / 4)
        img[(yy * max(h, w) - cy) ** 2 + (xx * max(h, w) - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 2, img.shape)
        out[i] = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return out


def psnr_np(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def bpp(stream: bytes, h: int, w: int) -> float:
    return 8 * len(stream) / (h * w)


def make(name: str, **kw):
    cls = METHODS[name]
    return cls(cls.Config(name=name, **kw))


@pytest.fixture(scope="module")
def im32() -> np.ndarray:
    return smooth_images(3, 32, 32, seed=1)


@pytest.fixture(scope="module")
def im64() -> np.ndarray:
    return smooth_images(2, 64, 64, seed=2)


def test_registered():
    for name in CODECS:
        cls = METHODS[name]
        assert cls.name == name
        assert cls.kind == "digital"
        assert issubclass(cls, classic.ClassicCodec)
        assert cls.description and "\n" not in cls.description


@pytest.mark.parametrize("name", CODECS)
def test_round_trip_high_quality(name, im64):
    m = make(name, quality=[HIGH_QUALITY[name]])
    (op,) = m.operating_points()
    payload = m.encode(im64, op)
    assert isinstance(payload, DigitalPayload) and len(payload.streams) == len(im64)
    assert payload.meta["quality"] == [HIGH_QUALITY[name]] * len(im64)
    rec = m.decode(payload, op, im64.shape[1:])
    out, ok = rec.images, rec.ok
    assert out.dtype == np.uint8 and out.shape == im64.shape
    assert ok.dtype == bool and ok.all()
    for a, b in zip(im64, out):
        assert psnr_np(a, b) > 30.0


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("shape", [(32, 32), (17, 23), (8, 8)])
def test_small_and_odd_sizes(name, shape):
    imgs = smooth_images(1, *shape, seed=3)
    m = make(name, quality=[HIGH_QUALITY[name]])
    (op,) = m.operating_points()
    rec = m.decode(m.encode(imgs, op), op, imgs.shape[1:])
    out, ok = rec.images, rec.ok
    assert ok.all() and out.shape == imgs.shape
    assert psnr_np(imgs[0], out[0]) > 25.0


@pytest.mark.parametrize("name", CODECS)
def test_bpp_increases_with_quality(name, im32):
    ladder = [5, 25, 50, 75, 95]
    m = make(name, quality=ladder)
    ops = m.operating_points()
    assert [op.label for op in ops] == [f"q={q}" for q in ladder]
    assert [op.params for op in ops] == [{"quality": q} for q in ladder]
    mean_bpp = np.array([m.encode(im32, op).num_bits.mean() / (32 * 32) for op in ops])
    assert np.all(np.diff(mean_bpp) >= -0.01 * mean_bpp[:-1]), mean_bpp
    assert mean_bpp[-1] > mean_bpp[0]


@pytest.mark.parametrize("name", CODECS)
def test_target_bpp_search(name, im32):
    m = make(name, quality=[50])
    lo, hi = m.quality_range
    h, w = im32.shape[1:3]
    b_lo = np.mean([bpp(m._encode_one(x, lo), h, w) for x in im32])
    b_hi = np.mean([bpp(m._encode_one(x, hi), h, w) for x in im32])
    target = round(b_lo + 0.4 * (b_hi - b_lo), 2)

    mt = make(name, target_bpp=[target, 0.01])
    ops = mt.operating_points()
    assert [op.params for op in ops] == [{"target_bpp": 0.01}, {"target_bpp": target}]
    assert ops[1].label == f"bpp={target:.2f}"

    payload = mt.encode(im32, ops[1])
    assert len(payload.meta["quality"]) == len(im32)
    for x, s, q, met in zip(im32, payload.streams, payload.meta["quality"], payload.meta["target_met"]):
        assert met
        assert bpp(s, h, w) <= target
        assert mt._encode_one(x, q) == s  # the reported quality reproduces the stream
        if q < hi:
            assert bpp(mt._encode_one(x, q + 1), h, w) > target

    low = mt.encode(im32, ops[0])  # unachievable: lowest quality, recorded as not met
    assert low.meta["quality"] == [lo] * len(im32)
    assert low.meta["target_met"] == [False] * len(im32)
    assert low.streams == [mt._encode_one(x, lo) for x in im32]
    rec = mt.decode(low, ops[0], im32.shape[1:])
    ok = rec.ok
    assert ok.all()


@pytest.mark.parametrize("name", CODECS)
def test_deterministic(name, im32):
    m = make(name, quality=[40])
    (op,) = m.operating_points()
    p1, p2 = m.encode(im32, op), m.encode(im32, op)
    assert p1.streams == p2.streams
    rec = m.decode(p1, op, im32.shape[1:])
    d1, ok1 = rec.images, rec.ok
    rec = m.decode(p2, op, im32.shape[1:])
    d2, ok2 = rec.images, rec.ok
    assert ok1.all() and ok2.all()
    np.testing.assert_array_equal(d1, d2)


def test_labels_and_sorting():
    m = make("jpeg", target_bpp=[0.5, 0.125])
    assert [op.label for op in m.operating_points()] == ["bpp=0.125", "bpp=0.50"]
    m = make("webp", quality=[90, 10])
    assert [op.label for op in m.operating_points()] == ["q=10", "q=90"]


@pytest.mark.parametrize(
    ("name", "kw", "field"),
    [
        ("jpeg", {"quality": [50], "colour": 1}, "colour"),
        ("jpeg", {"quality": [50], "target_bpp": [0.5]}, "target_bpp"),
        ("jpeg", {}, "quality"),
        ("jpeg", {"quality": [0]}, "quality"),
        ("jpeg", {"quality": [101]}, "quality"),
        ("webp", {"quality": [-1]}, "quality"),
        ("avif", {"quality": [50, 101]}, "quality"),
        ("jpeg2000", {"quality": [0]}, "quality"),
        ("heif", {"quality": [50, 50]}, "quality"),
        ("heif", {"quality": []}, "quality"),
        ("webp", {"target_bpp": [0.0]}, "target_bpp"),
        ("jpeg", {"quality": [50], "subsampling": "422"}, "subsampling"),
        ("avif", {"quality": [50], "speed": 11}, "speed"),
    ],
)
def test_config_errors(name, kw, field):
    with pytest.raises(ValidationError) as err:
        METHODS[name].Config(name=name, **kw)
    assert field in str(err.value)


def test_config_range_message():
    with pytest.raises(ValidationError, match=r"1\.\.100"):
        METHODS["jpeg"].Config(name="jpeg", quality=[0])
    with pytest.raises(ValidationError, match=r"0\.\.100"):
        METHODS["avif"].Config(name="avif", quality=[101])


def _corruptions(stream: bytes, rng: np.random.Generator, k: int) -> list[bytes]:
    """``k`` corrupted copies: bit flips, random bytes, truncations, zeroed tails, junk."""
    out = [b"", b"\x00" * 4, bytes(rng.integers(0, 256, 200, dtype=np.uint8)), stream[:1]]
    while len(out) < k:
        b = bytearray(stream)
        kind = len(out) % 4
        if kind == 0:
            for _ in range(rng.integers(1, 4)):
                b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            for _ in range(rng.integers(1, 20)):
                b[rng.integers(len(b))] = rng.integers(256)
        elif kind == 2:
            b = b[: rng.integers(0, len(b))]
        else:
            cut = int(rng.integers(0, len(b)))
            b[cut:] = bytes(len(b) - cut)
        out.append(bytes(b))
    return out


@pytest.mark.parametrize("name", CODECS)
def test_fuzz_corrupted_streams_never_raise(name, im32):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    lo, hi = METHODS[name].Config.quality_range
    m = make(name, quality=[lo + 10, (lo + hi) // 2, hi - 5])
    streams = [m.encode(im32[:1], op).streams[0] for op in m.operating_points()]
    bad = [c for s in streams for c in _corruptions(s, rng, 40)]  # 120 cases per codec
    payload = DigitalPayload(streams=[streams[0], *bad, streams[1]])
    t0 = time.perf_counter()
    rec = m.decode(payload, m.operating_points()[0], im32.shape[1:])
    out, ok = rec.images, rec.ok
    elapsed = time.perf_counter() - t0
    assert out.shape == (len(payload.streams), 32, 32, 3) and out.dtype == np.uint8
    assert ok.dtype == bool and ok[0] and ok[-1]  # intact streams around the corrupt ones still decode
    assert not ok[1:5].any()  # empty / junk / 1-byte streams
    assert elapsed < 10.0
    assert np.all(out[~ok] == 0)


@pytest.mark.parametrize("name", CODECS)
def test_wrong_expected_shape_is_not_ok(name, im32):
    m = make(name, quality=[50])
    (op,) = m.operating_points()
    payload = m.encode(im32[:1], op)
    rec = m.decode(payload, op, (32, 48, 3))
    out, ok = rec.images, rec.ok
    assert out.shape == (1, 32, 48, 3) and not ok.any()


def test_j2k_inflated_size_rejected_fast():
    """A flipped SIZ field once made OpenJPEG spend ~40 s on a garbage 128x128 stream."""
    imgs = smooth_images(1, 128, 128, seed=4)
    m = make("jpeg2000", quality=[40])
    (op,) = m.operating_points()
    s = bytearray(m.encode(imgs, op).streams[0])
    assert classic.j2k_declared_size(bytes(s)) == (128, 128)
    struct.pack_into(">I", s, 8, 0x5F000080)  # Xsiz
    t0 = time.perf_counter()
    rec = m.decode(DigitalPayload([bytes(s)]), op, imgs.shape[1:])
    ok = rec.ok
    assert not ok[0] and time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("name", CODECS)
def test_header_probe_reads_size(name):
    imgs = smooth_images(1, 24, 40, seed=5)
    m = make(name, quality=[50])
    s = m.encode(imgs, m.operating_points()[0]).streams[0]
    assert m._declared_size(s) == (24, 40)


def test_j2k_comment_stripped(im32):
    m = make("jpeg2000", quality=[40])
    s = m.encode(im32[:1], m.operating_points()[0]).streams[0]
    assert b"OpenJPEG" not in s
    assert s[:2] == b"\xff\x4f" and s[-2:] == b"\xff\xd9"  # bare J2K codestream: SOC ... EOC


def test_bad_images_rejected():
    m = make("jpeg", quality=[50])
    (op,) = m.operating_points()
    with pytest.raises(ValueError, match="uint8"):
        m.encode(np.zeros((1, 8, 8, 3), dtype=np.float32), op)
    with pytest.raises(ValueError, match="uint8"):
        m.encode(np.zeros((8, 8, 3), dtype=np.uint8), op)
