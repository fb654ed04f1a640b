"""What the receiver makes of one transmission: the error policy, applied per image.

The policies (scenario key ``error_policy``):

* ``conceal`` — an image with a failed code block (CRC failure) in an *essential* payload part
  is replaced by the *concealment image*. An image whose essential parts all pass is decoded
  from the received bytes (identical to the sent ones unless the CRC missed an error), together
  with the erasures of any failed non-essential part, so the method degrades as it declares
  (:class:`simlink.methods.base.PayloadPart`). A one-part payload's part is essential: any
  failed block conceals the image.
* ``decode_anyway`` — the received bytes of every image, corrupted or not, go to the source
  decoder (with the erasures: the bit ranges that were in failed blocks); where the decoder
  cannot produce an image it falls back to the concealment image.

An image counts as *lost* (``lost_frac``) when any block of any part failed, and its part as
lost (``lost_frac_<part>``, among the images that send the part) when a block of that part failed.

The concealment image is a constant mid-grey image (all channels 128), the receiver's best
guess with no information. Images that arrived intact (received bytes equal the sent bytes and
every block passed) reuse the error-free reconstruction computed once per (method, operating
point), so only images that were actually hit are decoded again: those whose bytes differ, and
those with a failed block that are not concealed (their decoder gets erasures, even when the
bytes happen to be right, e.g. only CRC bits were hit).

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
        metrics: ``{name: float64[N]}`` quality of what the receiver shows (``float64[N, ...]``
            for a task kind's per-image aggregates, e.g. segmentation confusion matrices).
        lost: ``bool[N]`` the image had at least one failed code block (in any part).
        concealed: ``bool[N]`` the receiver showed the concealment image.
        decoded_again: number of images the source decoder had to run on for this cell.
    """

    metrics: dict[str, np.ndarray]
    lost: np.ndarray
    concealed: np.ndarray
    decoded_again: int


@dataclass
class PartDelivery:
    """One payload part of every image, as sent and as received.

    Attributes:
        sent, received: per-image bytes of the part before and after the link (same lengths).
        ok: ``bool[N]``: every code block of the part passed its CRC (True for an empty part).
        essential: the image cannot be shown without this part
            (:attr:`simlink.methods.base.PayloadPart.essential`).
    """

    sent: list[bytes]
    received: list[bytes]
    ok: np.ndarray
    essential: bool = True


#: ``redecode(idx) -> (metrics, ok)``: decode what arrived for the images at ``idx`` (every part,
#: with its erasures) and measure them; ``ok bool[len(idx)]`` where an image came out, ``metrics``
#: the per-image metrics of those (``{name: float64[ok.sum()]}``).
Redecode = Callable[[np.ndarray], tuple[dict[str, np.ndarray], np.ndarray]]


def apply_error_policy(
    policy: str,
    parts: dict[str, PartDelivery],
    clean_metrics: dict[str, np.ndarray],
    conceal_metrics: dict[str, np.ndarray],
    redecode: Redecode,
) -> Outcome:
    """Turn what arrived of every part into per-image metrics under ``policy``.

    * ``conceal``: an image with a failed block in an *essential* part is concealed; an image
      whose failures are all in non-essential parts is decoded from what arrived, erasures
      included, so the method degrades as it declares (a one-part payload: failed = concealed).
    * ``decode_anyway``: every image whose bytes changed or that has a failed block is decoded
      from what arrived (corrupted parts included, with their erasures).

    In both, an image that arrived intact (same bytes, every block passed) keeps its error-free
    metrics, and an image the decoder cannot produce falls back to the concealment image.

    Args:
        policy: ``"conceal"`` or ``"decode_anyway"``.
        parts: ``{part: PartDelivery}`` (at least one).
        clean_metrics: per-image metrics of the error-free reconstruction.
        conceal_metrics: per-image metrics of the concealment image.
        redecode: decodes and measures the images that need it (see :data:`Redecode`).
    """
    if policy not in ERROR_POLICIES:
        raise ValueError(f"error_policy {policy!r} is not one of {', '.join(ERROR_POLICIES)}")
    first = next(iter(parts.values()))
    n = len(first.sent)
    lost = np.zeros(n, dtype=bool)
    essential_lost = np.zeros(n, dtype=bool)
    changed = np.zeros(n, dtype=bool)
    for part in parts.values():
        failed = ~np.asarray(part.ok, dtype=bool)
        lost |= failed
        if part.essential:
            essential_lost |= failed
        changed |= np.array([r != s for r, s in zip(part.received, part.sent)], dtype=bool)
    if policy == "conceal":
        concealed = essential_lost.copy()
        to_decode = (changed | lost) & ~concealed  # non-essential losses, undetected errors
    else:
        concealed = np.zeros(n, dtype=bool)
        to_decode = changed | lost

    metrics = {k: np.where(_per_row(concealed, clean_metrics[k]), conceal_metrics[k], clean_metrics[k])
               for k in clean_metrics}
    idx = np.flatnonzero(to_decode)
    if idx.size:
        fresh, ok = redecode(idx)
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


def _per_row(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``mask bool[N]`` shaped to broadcast over ``values float[N, ...]`` (per-image metrics have
    one axis, per-image aggregates such as confusion matrices more)."""
    return np.reshape(mask, (-1,) + (1,) * (np.ndim(values) - 1))
