"""The lossless label-map coder: exact round trips, smaller than zlib, corrupt streams handled."""

import io
import zlib
from pathlib import Path

import numpy as np
import pytest

from simlink.entropy.labelmap import decode_label_map, encode_label_map
from simlink.errors import DecodeError

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid" / "test.npz"


@pytest.mark.parametrize("shape, k", [((1, 1), 1), ((1, 17), 3), ((23, 1), 4), ((9, 13), 256), ((32, 32), 9)])
def test_round_trip_is_exact(shape, k):
    rng = np.random.default_rng(sum(shape) + k)
    m = rng.integers(0, k, shape).astype(np.uint8)
    m.flat[0] = k - 1  # the label count comes from the max
    assert np.array_equal(decode_label_map(encode_label_map(m)), m)


def test_synthetic_masks_round_trip_and_beat_zlib():
    from simlink.data import load_dataset

    masks = load_dataset("synthetic", n_images=16, image_size=64, seed=0).masks
    ours = zl = 0
    for m in masks:
        s = encode_label_map(m)
        assert np.array_equal(decode_label_map(s), m)
        ours, zl = ours + len(s), zl + len(zlib.compress(m.tobytes(), 9))
    assert ours < 0.9 * zl, (ours, zl)


@pytest.mark.skipif(not CAMVID.is_file(), reason="needs ../shared/data/camvid")
@pytest.mark.parametrize("size", [[184, 240], [360, 480]])
def test_camvid_masks_smaller_than_zlib_and_png(size):
    from PIL import Image

    from simlink.data import load_dataset

    data = load_dataset("camvid", split="test", n_images=5, image_size=size, root=CAMVID.parent)
    ours = zl = png = 0
    for m in data.masks:
        s = encode_label_map(m)
        assert np.array_equal(decode_label_map(s), m)
        buf = io.BytesIO()
        Image.fromarray(m).save(buf, format="PNG", optimize=True)
        ours, zl, png = ours + len(s), zl + len(zlib.compress(m.tobytes(), 9)), png + len(buf.getvalue())
    assert ours < zl < png, (ours, zl, png)


def test_corrupt_streams_never_crash_or_hang():
    from simlink.data import load_dataset

    m = load_dataset("synthetic", n_images=1, image_size=32, seed=1).masks[0]
    good = bytearray(encode_label_map(m))
    rng = np.random.default_rng(0)
    outcomes = set()
    for trial in range(60):
        bad = bytearray(good)
        if trial % 3 == 0:
            bad = bad[: rng.integers(0, len(bad))]  # truncated
        else:
            for i in rng.integers(5, len(bad), 3):  # flipped body bytes
                bad[i] ^= int(rng.integers(1, 256))
        try:
            out = decode_label_map(bytes(bad))
        except DecodeError:
            outcomes.add("rejected")
            continue
        assert out.shape == m.shape and out.dtype == np.uint8
        outcomes.add("decoded")
    assert outcomes  # every trial ended one way or the other
    with pytest.raises(DecodeError, match="header"):
        decode_label_map(b"\x01\x00")
    with pytest.raises(DecodeError, match="not a valid size"):
        decode_label_map(b"\x00\x00\x05\x00\x02")


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        encode_label_map(np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match="uint8"):
        encode_label_map(np.zeros((0, 4), np.uint8))
