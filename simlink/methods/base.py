"""The method protocol: every source / joint source-channel method answers the same calls.

A *method* (JPEG, WebP, TOSC-SR, deep JSCC, ...) offers *operating points* — the rate knob —
and turns a batch of images into a :class:`Payload` and back. The sweep never needs to know
which family it runs:

* digital methods produce :class:`DigitalPayload` (one real bitstream per image) that goes
  through the bit-true link (segmentation, CRC, LDPC, QAM, channel, BP decoding);
* analog methods produce :class:`AnalogPayload` (complex channel symbols per image) that go
  through the analog link (power normalisation, channel, equalisation).

Images are always ``uint8[N, H, W, 3]`` RGB numpy arrays on both sides.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict



@dataclass(frozen=True)
class OperatingPoint:
    """One setting of a method's rate knob.

    Attributes:
        label: short text used in tables and legends, e.g. ``"q=50"`` or ``"bpp=0.50"``.
        params: the knob's values, e.g. ``{"quality": 50}`` or ``{"target_bpp": 0.5}``.
    """

    label: str
    params: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass
class DigitalPayload:
    """Per-image bitstreams, exactly the bytes a receiver needs (headers included).

    Attributes:
        streams: one ``bytes`` object per image.
        meta: per-payload side information (e.g. the quality chosen per image by a target-bpp search).
    """

    streams: list[bytes]
    meta: dict = field(default_factory=dict)

    @property
    def num_bits(self) -> np.ndarray:
        """``int64[N]``: bits per image, ``8 * len(stream)``."""
        return np.array([8 * len(s) for s in self.streams], dtype=np.int64)


@dataclass
class AnalogPayload:
    """Complex channel symbols per image (deep JSCC): ``symbols`` is a ``complex64[N, U, S]`` torch
    tensor (``U`` users / transmitters per image, ``S`` channel uses each), average power 1 per
    symbol and user; see :mod:`simlink.phy.analog`."""

    symbols: Any
    meta: dict = field(default_factory=dict)


Payload = DigitalPayload | AnalogPayload


class MethodConfig(BaseModel):
    """Base of every method's scenario entry. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    name: str
    label: str | None = None  # display name in tables and legends; defaults to ``name``

    @property
    def display_name(self) -> str:
        """``label`` if given, else ``name`` (unique within a scenario)."""
        return self.label or self.name


class Method(ABC):
    """A source (or joint source-channel) coding method.

    Subclasses set ``name``, ``kind`` and ``Config`` (a :class:`MethodConfig` subclass that
    validates the method's scenario entry) and are registered with :func:`register_method`.
    """

    name: ClassVar[str]
    kind: ClassVar[Literal["digital", "analog"]]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    description: ClassVar[str] = ""

    def __init__(self, config: MethodConfig):
        self.config = config

    @abstractmethod
    def operating_points(self) -> list[OperatingPoint]:
        """The rate knob's settings named in the scenario, in increasing rate order if known."""

    @abstractmethod
    def encode(self, images: np.ndarray, op: OperatingPoint) -> Payload:
        """Source-encode ``uint8[N, H, W, 3]`` images at ``op``."""

    @abstractmethod
    def decode(self, payload: Payload, op: OperatingPoint, image_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Decode a (possibly corrupted) payload.

        Returns:
            ``(images, ok)``: ``uint8[N, H, W, 3]`` reconstructions and ``bool[N]``, False where
            the decoder could not produce an image from that stream (the image at that index is
            then undefined and the caller substitutes its concealment image). Must never raise
            because of a corrupted stream.
        """

    def fit(self, ctx) -> None:  # noqa: B027 - optional hook
        """Train what the method needs, or load it from the model cache (learned methods).

        ``ctx`` is a :class:`simlink.learned.context.TrainingContext` (training images, seed,
        device, the frozen task model, cache folder). Classic codecs need no training. Called by
        ``simlink run`` / ``simlink train`` before any ``encode``.
        """

    def class_logits(self, payload: Payload, op: OperatingPoint) -> np.ndarray | None:
        """``float[N, C]`` class logits of the receiver's own task head for a received payload, or
        ``None`` (the default) when the receiver has none and a frozen task model classifies the
        reconstructions instead. A method with a head (e.g. ``jscc_multiuser``) reports its
        accuracy from these logits."""
        return None

    def latents(self, images: np.ndarray, op: OperatingPoint) -> np.ndarray | None:
        """What the method sends, as features: ``float32[N, d]`` per image (the quantised latent of a
        learned codec, the real and imaginary parts of a JSCC's channel symbols), or ``None`` for
        methods without a latent (classic codecs). Used by ``simlink mi`` to estimate ``I(X; Z)``;
        needs :meth:`fit` first for learned methods."""
        return None

    def training_report(self) -> list[dict]:
        """One dict per trained model after :meth:`fit`: ``op``, ``status`` (trained | cached),
        ``wall_s``, ``last_epoch`` (mean losses), ``cache`` (folder). Empty for classic codecs."""
        return []

    def not_trained(self, op: OperatingPoint) -> Exception:
        """The error a learned method raises when coding before :meth:`fit`."""
        from simlink.errors import SimlinkError

        return SimlinkError(f"{self.config.display_name} {op.label}: not trained; call fit() first "
                            "(simlink run / simlink train do this)")

    def cache_key(self) -> dict:
        """What identifies this method's encodings (for caching): its validated config."""
        return {"method": self.name, **self.config.model_dump()}


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: add ``cls`` to :data:`METHODS` under ``cls.name``."""
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls
