"""``layered_toy``: a two-part test method with an erasure-aware decoder (a scenario plugin).

Written against the public method protocol only. Every image is sent as two named parts:

* ``base`` (essential): the mean colour of every ``tile`` x ``tile`` tile, one byte per channel;
* ``detail`` (not essential): the residual ``image - upsampled base``, quantised with step ``q``
  (the operating point) to one signed byte per pixel and channel, stored tile after tile.

The receiver adds the residual to the upsampled base. Where the link reports bits of
``detail`` erased (``payload.erasures``), the bytes they touch are replaced by a zero residual,
so a failed block of ``detail`` costs those pixels their detail — they show their tile's mean
colour — instead of adding noise; with ``use_erasures: false`` the decoder ignores the erasure
information and trusts the corrupted bytes. A failed ``base`` conceals the image (it is essential).
Images with fewer than ``detail_from`` pixels send an empty ``detail`` (base only).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from simlink.methods import (
    DigitalPayload,
    ImageKeys,
    Method,
    MethodConfig,
    OperatingPoint,
    PayloadPart,
    Reception,
    register_method,
)


class LayeredToyConfig(MethodConfig):
    name: str = "layered_toy"
    tile: int = Field(4, ge=1)
    q: list[int] = Field(default_factory=lambda: [4], min_length=1)
    use_erasures: bool = True
    detail_from: int = Field(0, ge=0)


def _tiles(x: np.ndarray, t: int) -> np.ndarray:
    """``[N, H, W, 3]`` -> ``[N, H/t, W/t, t, t, 3]`` (tile after tile)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // t, t, w // t, t, c).transpose(0, 1, 3, 2, 4, 5)


def _untile(x: np.ndarray) -> np.ndarray:
    n, a, b, t, _, c = x.shape
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, a * t, b * t, c)


@register_method
class LayeredToy(Method):
    name = "layered_toy"
    kind = "digital"
    Config = LayeredToyConfig
    description = "test method: tile means (essential) + quantised residual (erasure-aware)"
    parts = (
        PayloadPart("base"),
        PayloadPart("detail", essential=False, on_loss="erased residual bytes show their tile's mean colour"),
    )

    def operating_points(self) -> list[OperatingPoint]:
        return [OperatingPoint(f"q={q}", {"q": q}) for q in self.config.q]

    def encode(self, images: np.ndarray, op: OperatingPoint, keys: ImageKeys | None = None) -> DigitalPayload:
        t, q = self.config.tile, op.params["q"]
        tiles = _tiles(images.astype(np.float64), t)
        base = np.clip(np.round(tiles.mean(axis=(3, 4))), 0, 255).astype(np.uint8)  # [N, a, b, 3]
        residual = tiles - base[:, :, :, None, None, :]
        r = np.clip(np.round(residual / q), -128, 127).astype(np.int16) + 128
        send_detail = images.shape[1] * images.shape[2] >= self.config.detail_from
        return DigitalPayload(parts={"base": [b.tobytes() for b in base],
                                     "detail": [x.astype(np.uint8).tobytes() if send_detail else b"" for x in r]})

    def decode(self, payload: DigitalPayload, op: OperatingPoint, image_shape, keys: ImageKeys | None = None) -> Reception:
        t, q = self.config.tile, op.params["q"]
        h, w, c = image_shape
        a, b = h // t, w // t
        n = len(payload)
        out = np.zeros((n, h, w, c), dtype=np.uint8)
        ok = np.zeros(n, dtype=bool)
        for i in range(n):
            base_bytes, detail_bytes = payload.parts["base"][i], payload.parts["detail"][i]
            if len(base_bytes) != a * b * c or len(detail_bytes) not in (0, h * w * c):
                continue
            base = np.frombuffer(base_bytes, np.uint8).reshape(1, a, b, c).astype(np.float64)
            r = np.frombuffer(detail_bytes, np.uint8).astype(np.float64) - 128 if detail_bytes else np.zeros(h * w * c)
            if self.config.use_erasures and detail_bytes:
                r[payload.erased_bytes("detail", i)] = 0.0
            tiles = base[:, :, :, None, None, :] + q * r.reshape(1, a, b, t, t, c)
            out[i] = np.clip(np.round(_untile(tiles)), 0, 255).astype(np.uint8)[0]
            ok[i] = True
        return Reception(out, ok)
