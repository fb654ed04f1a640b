"""Binary edge maps for the map-conditioned methods (RL-ASC, Diff-GO), and their lossless coding.

Two kinds:

* :func:`label_edges`: the boundaries of a label map. It is a pure function of the map, so a
  receiver that has the map recomputes it and sending it costs nothing. Diff-GO takes Canny on the
  segmentation map; on a piecewise-constant map Canny only finds these boundaries, smoothed and
  thinned by its parameters, so the exact, parameter-free boundary is used instead.
* :func:`image_edges`: Canny edges of the image's luminance (scikit-image). These carry
  information the map does not, so they cost bits: :func:`encode_edge_map` codes them with the
  label-map coder (:mod:`simlink.entropy.labelmap`; labels 0 / 1).
"""

from __future__ import annotations

import numpy as np

from simlink.entropy.labelmap import decode_label_map, encode_label_map

__all__ = ["decode_edge_map", "encode_edge_map", "image_edges", "label_edges"]


def label_edges(labels: np.ndarray) -> np.ndarray:
    """``bool[H, W]``: True where a pixel's label differs from its right or lower neighbour
    (``labels``: any integer ``[H, W]``); the last column and row compare with nothing."""
    m = np.asarray(labels)
    if m.ndim != 2:
        raise ValueError(f"label_edges: expected a [H, W] label map, got shape {list(m.shape)}")
    out = np.zeros(m.shape, bool)
    out[:, :-1] |= m[:, 1:] != m[:, :-1]
    out[:-1, :] |= m[1:, :] != m[:-1, :]
    return out


def image_edges(image: np.ndarray, sigma: float = 2.0, low: float | None = None,
                high: float | None = None) -> np.ndarray:
    """``bool[H, W]`` Canny edges of ``uint8[H, W, 3]`` RGB (on its luminance in [0, 1]):
    ``skimage.feature.canny`` with Gaussian ``sigma`` and hysteresis thresholds ``low`` /
    ``high`` (``None``: scikit-image's defaults, 10 % / 20 % of the dtype's range)."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"image_edges: expected uint8[H, W, 3], got shape {list(img.shape)}")
    return canny(rgb2gray(img), sigma=sigma, low_threshold=low, high_threshold=high)


def encode_edge_map(edges: np.ndarray) -> bytes:
    """Losslessly code a ``bool[H, W]`` edge map (:func:`~simlink.entropy.labelmap.encode_label_map`)."""
    e = np.asarray(edges)
    if e.ndim != 2 or e.dtype != bool:
        raise ValueError(f"encode_edge_map: expected bool[H, W], got {e.dtype}{list(e.shape)}")
    return encode_label_map(e.astype(np.uint8))


def decode_edge_map(data: bytes) -> np.ndarray:
    """The ``bool[H, W]`` edge map of an :func:`encode_edge_map` stream (raises
    :class:`~simlink.errors.DecodeError` like :func:`~simlink.entropy.labelmap.decode_label_map`)."""
    return decode_label_map(data) != 0
