"""Edge maps: label-map boundaries (free at the receiver), Canny edges of images, lossless coding."""

import zlib

import numpy as np
import pytest

from simlink.entropy.edges import decode_edge_map, encode_edge_map, image_edges, label_edges


def test_label_edges_mark_exactly_the_boundaries():
    m = np.zeros((5, 6), np.uint8)
    m[1:3, 2:5] = 3
    e = label_edges(m)
    expected = np.zeros((5, 6), bool)
    expected[0, 2:5] = True      # above the square: its lower neighbour differs
    expected[1:3, 1] = True      # left of the square: its right neighbour differs
    expected[2, 2:5] = True      # the square's last row: the pixel below differs
    expected[1:3, 4] = True      # the square's last column: the pixel to the right differs
    np.testing.assert_array_equal(e, expected)
    assert not label_edges(np.full((4, 4), 7)).any()


def test_canny_finds_the_border_of_a_square():
    img = np.zeros((48, 48, 3), np.uint8)
    img[12:36, 12:36] = 200
    e = image_edges(img, sigma=1.0)
    assert e[12:36, 10:14].any(axis=1).all() and e[10:14, 12:36].any(axis=0).all()  # left and top borders
    assert not e[20:28, 20:28].any() and not e[:6, :6].any()  # flat regions have none


def test_edge_maps_round_trip_and_cost_less_than_zlib():
    from simlink.data import load_dataset

    data = load_dataset("synthetic", n_images=8, image_size=64, seed=2)
    ours = zl = 0
    for img, m in zip(data.images, data.masks):
        for e in (label_edges(m), image_edges(img)):
            s = encode_edge_map(e)
            np.testing.assert_array_equal(decode_edge_map(s), e)
            ours, zl = ours + len(s), zl + len(zlib.compress(np.packbits(e).tobytes(), 9))
    assert ours < zl, (ours, zl)
    with pytest.raises(ValueError, match="bool"):
        encode_edge_map(np.zeros((4, 4), np.uint8))
