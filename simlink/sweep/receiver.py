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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simlink.methods.base import AnalogPayload, DigitalPayload, Method, OperatingPoint
from simlink.metrics import ms_ssim, psnr, ssim

CONCEALMENT_VALUE = 128

#: Per-image quality metrics, ``f(originals, reconstructions) -> float[N]``.
IMAGE_METRICS = {"psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim}


def concealment_images(n: int, image_shape: tuple[int, int, int]) -> np.ndarray:
    """``uint8[n, H, W, 3]`` filled with :data:`CONCEALMENT_VALUE`."""
    return np.full((n, *image_shape), CONCEALMENT_VALUE, dtype=np.uint8)


def image_metrics(originals: np.ndarray, recon: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of :data:`IMAGE_METRICS`, per image: ``{name: float64[N]}``."""
    return {name: np.asarray(f(originals, recon), dtype=np.float64) for name, f in IMAGE_METRICS.items()}


class Measure:
    """Per-image metrics of reconstructions of (a subset of) the sent images.

    Args:
        originals: ``uint8[N, H, W, 3]`` the images that were sent.
        labels: ``int64[N]`` class labels (needed with a task model).
        task: a frozen classifier (:class:`simlink.tasks.TaskModel`) run on every reconstruction,
            or ``None``. Adds ``accuracy`` (1.0 where the top-1 prediction is right, else 0.0) and,
            for more than 10 classes, ``top5``.
        device: torch device for the task model.

    Calling ``measure(recon, idx)`` with ``recon uint8[len(idx), H, W, 3]`` reconstructions of
    the images at ``idx`` (all images if ``idx`` is None) returns ``{name: float64[len(idx)]}``.
    """

    def __init__(self, originals: np.ndarray, labels: np.ndarray | None = None, task=None, device: str = "cpu"):
        if task is not None and labels is None:
            from simlink.errors import SimlinkError

            raise SimlinkError("task: the dataset has no class labels, so a task model cannot be scored on it")
        self.originals, self.labels, self.task, self.device = originals, labels, task, device

    def __call__(self, recon: np.ndarray, idx: np.ndarray | None = None,
                 logits: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per-image metrics; ``logits float[len(idx), C]`` are the receiver's own class scores
        (a method with a task head): they give ``accuracy`` (and ``top5``), and the frozen task
        model's score on the reconstruction becomes ``recon_accuracy``."""
        orig = self.originals if idx is None else self.originals[idx]
        out = image_metrics(orig, recon)
        labels = None if self.labels is None else (self.labels if idx is None else self.labels[idx])
        if logits is not None:
            if labels is None:
                from simlink.errors import SimlinkError

                raise SimlinkError("the dataset has no class labels, so a method's classification head cannot be scored")
            out.update(_classification(np.asarray(logits), labels))
        if self.task is not None:
            scores = _classification(self.task.logits(recon, device=self.device), labels)
            if logits is None:
                out.update(scores)
            else:
                out["recon_accuracy"] = scores["accuracy"]
        return out


def _classification(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """``accuracy`` (1.0 where the top-1 class is right) and, for more than 10 classes, ``top5``."""
    out = {"accuracy": (logits.argmax(axis=1) == labels).astype(np.float64)}
    if logits.shape[1] > 10:
        top5 = np.argsort(-logits, axis=1)[:, :5]
        out["top5"] = (top5 == labels[:, None]).any(axis=1).astype(np.float64)
    return out


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


def apply_error_policy(
    policy: str,
    method: Method,
    op: OperatingPoint,
    sent: list[bytes],
    received: list[bytes],
    image_ok: np.ndarray,
    measure: Measure,
    clean_metrics: dict[str, np.ndarray],
    conceal_metrics: dict[str, np.ndarray],
) -> Outcome:
    """Turn received bitstreams into per-image metrics under ``policy``.

    Args:
        policy: ``"conceal"`` or ``"decode_anyway"``.
        method, op: the source decoder and its operating point.
        sent, received: per-image bitstreams before and after the link (same lengths).
        image_ok: ``bool[N]``, all code blocks of the image passed their CRC.
        measure: computes per-image metrics of re-decoded images (see :class:`Measure`).
        clean_metrics: per-image metrics of the error-free reconstruction.
        conceal_metrics: per-image metrics of the concealment image.
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
        raise ValueError(f"error_policy {policy!r} is not one of conceal, decode_anyway")

    metrics = {k: np.where(concealed, conceal_metrics[k], clean_metrics[k]) for k in clean_metrics}
    idx = np.flatnonzero(to_decode)
    if idx.size:
        payload = DigitalPayload([received[i] for i in idx])
        images, ok = method.decode(payload, op, measure.originals.shape[1:])
        ok = np.asarray(ok, dtype=bool)
        good = idx[ok]
        if good.size:
            fresh = measure(images[ok], good)
            for k in metrics:
                metrics[k][good] = fresh[k]
        bad = idx[~ok]
        concealed[bad] = True
        for k in metrics:
            metrics[k][bad] = conceal_metrics[k][bad]
    return Outcome(metrics=metrics, lost=lost, concealed=concealed, decoded_again=int(idx.size))


def analog_outcome(method: Method, op: OperatingPoint, received: AnalogPayload, measure: Measure) -> Outcome:
    """Per-image metrics of an analog transmission: every image is decoded from its received
    symbols (an analog receiver always shows an image, so nothing is lost or concealed); the
    method's own classification head, if any, scores ``accuracy`` (see :meth:`Measure.__call__`)."""
    shape = measure.originals.shape[1:]
    images, _ = method.decode(received, op, shape)
    metrics = measure(images, None, method.class_logits(received, op))
    n = len(images)
    return Outcome(metrics=metrics, lost=np.zeros(n, dtype=bool), concealed=np.zeros(n, dtype=bool), decoded_again=n)
