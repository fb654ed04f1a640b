"""What the receiver makes of one transmission: the error policy, applied per image.

The policies (scenario key ``error_policy``):

* ``conceal`` — an image with any failed code block (CRC failure) is replaced by the
  *concealment image* and counted as lost. An image whose blocks all pass is decoded from the
  received bytes (identical to the sent ones unless the CRC missed an error).
* ``decode_anyway`` — the received bytes of every image, corrupted or not, go to the source
  decoder; where the decoder cannot produce an image it falls back to the concealment image.

The concealment image is a constant mid-grey image (all channels 128), the receiver's best
guess with no information. Images whose received bytes equal the sent bytes reuse the
error-free reconstruction computed once per (method, operating point), so only images that
were actually hit are decoded again.

What is measured (image quality, task scores) is :class:`simlink.metrics.measure.Measure`'s job;
this module only decides which images are shown concealed and which are decoded again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

CONCEALMENT_VALUE = 128
ERROR_POLICIES = ("conceal", "decode_anyway")


def concealment_images(n: int, image_shape: tuple[int, int, int]) -> np.ndarray:
    """``uint8[n, H, W, 3]`` filled with :data:`CONCEALMENT_VALUE`."""
    return np.full((n, *image_shape), CONCEALMENT_VALUE, dtype=np.uint8)


@dataclass
class Outcome:
    """Per-image result of one cell.

    Attributes:
        metrics: ``{name: float64[N]}`` quality of what the receiver shows.
        lost: ``bool[N]`` the image had at least one failed code block.
        concealed: ``bool[N]`` the receiver showed the concealment image.
        decoded_again: number of images the source decoder had to run on for this cell.
    """

    metrics: dict[str, np.ndarray]
    lost: np.ndarray
    concealed: np.ndarray
    decoded_again: int


#: ``redecode(idx, streams) -> (metrics, ok)``: decode the received ``streams`` of the images at
#: ``idx`` and measure them; ``ok bool[len(idx)]`` where an image came out, ``metrics`` the
#: per-image metrics of those (``{name: float64[ok.sum()]}``).
Redecode = Callable[[np.ndarray, list[bytes]], tuple[dict[str, np.ndarray], np.ndarray]]


def apply_error_policy(
    policy: str,
    sent: list[bytes],
    received: list[bytes],
    image_ok: np.ndarray,
    clean_metrics: dict[str, np.ndarray],
    conceal_metrics: dict[str, np.ndarray],
    redecode: Redecode,
) -> Outcome:
    """Turn received bitstreams into per-image metrics under ``policy``.

    Args:
        policy: ``"conceal"`` or ``"decode_anyway"``.
        sent, received: per-image bitstreams before and after the link (same lengths).
        image_ok: ``bool[N]``, all code blocks of the image passed their CRC.
        clean_metrics: per-image metrics of the error-free reconstruction.
        conceal_metrics: per-image metrics of the concealment image.
        redecode: decodes and measures the images that need it (see :data:`Redecode`).
    """
    n = len(sent)
    lost = ~np.asarray(image_ok, dtype=bool)
    intact = np.array([r == s for r, s in zip(received, sent)], dtype=bool)
    if policy == "conceal":
        concealed = lost.copy()
        to_decode = ~intact & ~lost  # CRC passed but bytes differ: an undetected error
    elif policy == "decode_anyway":
        concealed = np.zeros(n, dtype=bool)
        to_decode = ~intact
    else:
        raise ValueError(f"error_policy {policy!r} is not one of {', '.join(ERROR_POLICIES)}")

    metrics = {k: np.where(concealed, conceal_metrics[k], clean_metrics[k]) for k in clean_metrics}
    idx = np.flatnonzero(to_decode)
    if idx.size:
        fresh, ok = redecode(idx, [received[i] for i in idx])
        ok = np.asarray(ok, dtype=bool)
        good = idx[ok]
        for k in metrics:
            if good.size:
                metrics[k][good] = fresh[k]
        bad = idx[~ok]
        concealed[bad] = True
        for k in metrics:
            metrics[k][bad] = conceal_metrics[k][bad]
    return Outcome(metrics=metrics, lost=lost, concealed=concealed, decoded_again=int(idx.size))
