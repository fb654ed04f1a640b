"""The method protocol: every source / joint source-channel method answers the same calls.

A *method* (JPEG, WebP, TOSC-SR, deep JSCC, ...) offers *operating points* — the rate knob —
and turns a batch of images into a :class:`Payload` (``encode``) and a received payload into a
:class:`Reception` (``decode``). The sweep never needs to know which family it runs:

* digital methods produce :class:`DigitalPayload` (real bitstreams per image, in one or more
  named :class:`PayloadPart` s, each in its own code blocks) that goes through the bit-true link
  (code-block segmentation, CRC, LDPC, QAM, channel, BP decoding); what the receiver gets back
  carries the bit ranges that were in failed code blocks (``erasures``);
* analog methods produce :class:`AnalogPayload` (complex channel symbols per image) that go
  through the analog link (power normalisation, channel, equalisation).

A :class:`Reception` holds the images the receiver shows, per-image ``ok`` flags and a dict of
named receiver outputs (``class_logits``, ``seg_logits``, ...): a method with a task head adds an
entry instead of a new hook. Both calls receive :class:`ImageKeys`: each image's index in the
scenario's image set and the seed of its receiver randomness, derived from (scenario seed,
method, operating point, image index) — not from the cell — so a stochastic decoder draws the
same noise for an image whatever channel, SNR or batch it is decoded in, and the transmitter
knows the seed its receiver will use.

Images are always ``uint8[N, H, W, 3]`` RGB numpy arrays of one shape on both sides (the sweep
groups images of mixed sizes by shape).

This module imports neither torch nor Sionna (the scenario schema is built on it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from simlink.hashing import derive_seed
from simlink.phy.config import DEFAULT_PART, part_name_problem  # torch-free (pydantic only)
from simlink.registry import Registry


@dataclass(frozen=True)
class OperatingPoint:
    """One setting of a method's rate knob.

    Attributes:
        label: short text used in tables and legends, e.g. ``"q=50"`` or ``"bpp=0.50"``.
        params: the knob's values, e.g. ``{"quality": 50}`` or ``{"target_bpp": 0.5}``.
    """

    label: str
    params: dict = field(default_factory=dict, hash=False, compare=False)


def image_seed(base_seed: int, method: str, op: str, index: int) -> int:
    """Seed of one image's receiver (and transmitter) randomness: a hash of the scenario seed,
    the method's display name, the operating point's label and the image's index (``[0, 2^63)``)."""
    return derive_seed(base_seed, method, op, int(index))


@dataclass(frozen=True)
class ImageKeys:
    """Who the images of a batch are.

    Attributes:
        index: ``int64[N]`` position of each image in the scenario's image set.
        seeds: ``int64[N]`` seed of each image's randomness (:func:`image_seed`), in ``[0, 2^63)``.
    """

    index: np.ndarray
    seeds: np.ndarray

    @classmethod
    def derive(cls, index, base_seed: int, method: str, op: str) -> "ImageKeys":
        """Keys of the images at ``index`` for ``(base_seed, method, op)``."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        seeds = np.array([image_seed(base_seed, method, op, i) for i in index], dtype=np.int64)
        return cls(index, seeds)

    def __len__(self) -> int:
        return len(self.index)

    def take(self, idx) -> "ImageKeys":
        """The keys at positions ``idx`` of this batch (int array, bool mask or slice)."""
        return ImageKeys(self.index[idx], self.seeds[idx])

    def generator(self, i: int, device: str = "cpu"):
        """A ``torch.Generator`` on ``device`` seeded with image ``i``'s seed (position ``i`` in
        this batch): draw an image's noise from it and the result does not depend on the batch."""
        import torch

        return torch.Generator(device=device).manual_seed(int(self.seeds[i]))

    def rng(self, i: int) -> np.random.Generator:
        """A NumPy generator seeded with image ``i``'s seed."""
        return np.random.default_rng(int(self.seeds[i]))


def default_keys(n: int, method: str = "", op: str = "") -> ImageKeys:
    """Keys for ``n`` images used outside a sweep: indices ``0..n-1``, base seed 0."""
    return ImageKeys.derive(np.arange(n), 0, method, op)


@dataclass(frozen=True)
class PayloadPart:
    """One named part of a method's digital payload (its own code blocks, possibly its own code).

    Attributes:
        name: lower-case identifier (``labels``, ``features`` ...): the key in
            :attr:`DigitalPayload.parts`, in the scenario's ``link.parts`` and in the table's per-part
            columns (``bler_<name>`` ...).
        essential: without this part the image cannot be shown: under ``error_policy: conceal``
            an image whose essential part has a failed code block is concealed. A failed
            non-essential part is handed to the decoder with its erasures
            (:attr:`DigitalPayload.erasures`), and the decoder degrades as ``on_loss`` says.
        on_loss: how the decoder degrades when this (non-essential) part fails, for ``simlink
            list`` and the docs (e.g. "lost classes are filled from a global generator").
    """

    name: str
    essential: bool = True
    on_loss: str = ""

    def __post_init__(self) -> None:
        problem = part_name_problem(self.name)
        if problem:
            raise ValueError(f"PayloadPart: {problem}")


class DigitalPayload:
    """Per-image bitstreams, exactly the bytes a receiver needs (headers included), in one or more
    named parts.

    ``DigitalPayload(streams)`` is the one-part payload (part :data:`DEFAULT_PART`);
    ``DigitalPayload(parts={"labels": [...], "features": [...]})`` carries several parts per
    image, each sent in its own code blocks (with its own code if the scenario's ``link.parts``
    says so).

    Attributes:
        parts: ``{part: [bytes per image]}``, in the method's part order; every part has one
            entry per image (``b""`` for an image without that part).
        meta: per-payload side information (e.g. the quality chosen per image by a target-bpp
            search); a value that is a sequence of one entry per image is kept per image when the
            sweep splits or merges payloads.
        erasures: what the receiver knows was lost, or ``None`` (a sent or error-free payload):
            ``{part: [int64[m, 2] per image]}``, the ``[start, stop)`` *bit* ranges of the part's
            stream (bit 0 is the MSB of byte 0) that were in code blocks whose CRC failed, merged
            where adjacent. A code block carries ``k - crc_len`` bits, so ranges need not fall on
            byte boundaries; the bytes inside them are what the BP decoder output (usually wrong).
    """

    def __init__(self, streams: list[bytes] | None = None, meta: dict | None = None, *,
                 parts: dict[str, list[bytes]] | None = None,
                 erasures: dict[str, list[np.ndarray]] | None = None):
        if (streams is None) == (parts is None):
            raise ValueError("DigitalPayload: give either streams (one part) or parts, not both")
        self.parts: dict[str, list[bytes]] = {DEFAULT_PART: list(streams)} if parts is None else \
            {k: list(v) for k, v in parts.items()}
        if not self.parts:
            raise ValueError("DigitalPayload: parts is empty")
        sizes = {k: len(v) for k, v in self.parts.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"DigitalPayload: every part needs one stream per image, got {sizes}")
        self.meta = dict(meta or {})
        self.erasures = erasures

    @property
    def streams(self) -> list[bytes]:
        """The bitstreams of a one-part payload (raises for a payload of several parts)."""
        if len(self.parts) != 1:
            raise ValueError(f"this payload has parts {list(self.parts)}; use payload.parts[name]")
        return next(iter(self.parts.values()))

    @property
    def part_names(self) -> list[str]:
        return list(self.parts)

    @property
    def num_bits(self) -> np.ndarray:
        """``int64[N]``: bits per image over all parts, ``8 * sum(len(stream))``."""
        return sum(np.array([8 * len(s) for s in v], dtype=np.int64) for v in self.parts.values())

    def __len__(self) -> int:
        return len(next(iter(self.parts.values())))

    def erased(self, part: str, i: int) -> np.ndarray:
        """``int64[m, 2]``: image ``i``'s erased bit ranges ``[start, stop)`` in ``part`` (empty if none)."""
        if self.erasures is None or part not in self.erasures:
            return np.zeros((0, 2), dtype=np.int64)
        return np.asarray(self.erasures[part][i], dtype=np.int64).reshape(-1, 2)

    def erased_bits(self, part: str, i: int) -> np.ndarray:
        """``bool[8 * len(stream)]``: True for each bit of image ``i``'s ``part`` in a failed block."""
        mask = np.zeros(8 * len(self.parts[part][i]), dtype=bool)
        for a, b in self.erased(part, i):
            mask[a:b] = True
        return mask

    def erased_bytes(self, part: str, i: int) -> np.ndarray:
        """``bool[len(stream)]``: True for each byte of image ``i``'s ``part`` with a bit in a failed block."""
        return self.erased_bits(part, i).reshape(-1, 8).any(axis=1)

    def __repr__(self) -> str:
        sizes = {k: sum(map(len, v)) for k, v in self.parts.items()}
        return f"DigitalPayload({len(self)} images, bytes per part {sizes}, erasures={self.erasures is not None})"


@dataclass
class AnalogPayload:
    """Complex channel symbols per image (deep JSCC): ``symbols`` is a ``complex64[N, U, S]`` torch
    tensor (``U`` users / transmitters per image, ``S`` channel uses each); the analog link
    normalises every user's power to 1 per symbol (see :mod:`simlink.phy.analog`)."""

    symbols: Any
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.symbols)


@dataclass
class Reception:
    """What a receiver makes of a (possibly corrupted) payload.

    Attributes:
        images: ``uint8[N, H, W, 3]`` what the receiver shows. Where ``ok`` is False the image is
            undefined and the sweep substitutes its concealment image.
        ok: ``bool[N]``: False where the decoder could not produce an image from that stream.
        outputs: named receiver outputs, each an array whose first axis is the image, e.g.
            ``class_logits`` ``float32[N, C]`` of a classification head or ``seg_logits``
            ``float32[N, C, H, W]`` of a segmentation head; the task kinds score them
            (:mod:`simlink.tasks.kinds`).
    """

    images: np.ndarray
    ok: np.ndarray
    outputs: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ok = np.asarray(self.ok, dtype=bool)
        n = len(self.ok)
        if len(self.images) != n or any(len(v) != n for v in self.outputs.values()):
            sizes = {"images": len(self.images), **{k: len(v) for k, v in self.outputs.items()}}
            raise ValueError(f"Reception: {n} ok flags but {sizes}")

    def __len__(self) -> int:
        return len(self.ok)

    def take(self, idx) -> "Reception":
        """The images and outputs at ``idx`` (int array, bool mask or slice)."""
        return Reception(self.images[idx], self.ok[idx], {k: v[idx] for k, v in self.outputs.items()})


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

    Subclasses set ``name`` (the scenario's ``methods[].name``), ``kind`` (the payload kind:
    ``"digital"`` bitstreams or ``"analog"`` channel symbols, a name in
    :data:`simlink.sweep.payloads.PAYLOAD_KINDS`) and ``Config`` (a :class:`MethodConfig` subclass
    that validates the method's scenario entry), implement :meth:`operating_points`,
    :meth:`encode` and :meth:`decode`, and are registered with :func:`register_method`. Learned
    methods train in :meth:`fit` through :func:`simlink.learned.trainer.train_stages` with a
    :class:`~simlink.learned.trainer.TrainingStep` of their own. See the README, "Adding a method".
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    description: ClassVar[str] = ""
    parts: ClassVar[tuple[PayloadPart, ...]] = (PayloadPart(DEFAULT_PART),)
    """The parts of a digital payload, in sending order (see :meth:`payload_parts`)."""

    def __init__(self, config: MethodConfig):
        self.config = config

    @abstractmethod
    def operating_points(self) -> list[OperatingPoint]:
        """The rate knob's settings named in the scenario, in increasing rate order if known."""

    @abstractmethod
    def encode(self, images: np.ndarray, op: OperatingPoint, keys: ImageKeys | None = None) -> Payload:
        """Source-encode ``uint8[N, H, W, 3]`` images (one shape) at ``op``.

        ``keys``: the images' indices and seeds (:class:`ImageKeys`; ``None`` outside a sweep:
        :func:`default_keys`). A transmitter that must know what its receiver will draw (e.g. a
        diffusion decoder's noise) uses ``keys.seeds``.
        """

    @abstractmethod
    def decode(self, payload: Payload, op: OperatingPoint, image_shape: tuple[int, int, int],
               keys: ImageKeys | None = None) -> Reception:
        """Decode a (possibly corrupted) payload of images of shape ``image_shape`` ``(H, W, 3)``.

        ``keys``: as for :meth:`encode`; a stochastic decoder draws image ``i``'s randomness from
        ``keys.generator(i)`` only, so an image decodes the same whatever else is in the batch.
        Returns a :class:`Reception`. Must never raise because of a corrupted stream.
        """

    def payload_parts(self) -> tuple[PayloadPart, ...]:
        """The named parts :meth:`encode` returns in a :class:`DigitalPayload` (default: the class's
        ``parts``, one essential part :data:`DEFAULT_PART`). Override when the parts depend on the
        configuration (e.g. one part per semantic class)."""
        return self.parts

    def fit(self, ctx) -> None:  # noqa: B027 - optional hook
        """Train what the method needs, or load it from the model cache (learned methods).

        ``ctx`` is a :class:`simlink.learned.context.TrainingContext` (training images, seed,
        device, the frozen task model, cache folder). Classic codecs need no training. Called by
        ``simlink run`` / ``simlink train`` before any ``encode``.
        """

    def image_keys(self, n: int, op: OperatingPoint, keys: ImageKeys | None) -> ImageKeys:
        """``keys`` if given (checked against ``n``), else :func:`default_keys` for ``n`` images."""
        if keys is None:
            return default_keys(n, self.config.display_name, op.label)
        if len(keys) != n:
            raise ValueError(f"{len(keys)} image keys for {n} images")
        return keys

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
        """Every setting of this method (its validated config, all fields): what the version-1
        method hash covered (:func:`simlink.sweep.runner.legacy_method_hash`). Today's
        :func:`~simlink.sweep.runner.method_hash` hashes only the settings that differ from their
        defaults."""
        return {"method": self.name, **self.config.model_dump()}


#: Every method by its scenario ``name``, in registration order (built-ins first: the plot
#: palette follows this order). The built-in modules register on first use.
METHODS: Registry[type[Method]] = Registry(
    "method", builtins=("simlink.methods.classic", "simlink.methods.tosc_sr", "simlink.methods.jscc_multiuser"))


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: add ``cls`` to :data:`METHODS` under ``cls.name`` (a name registered twice
    is an error)."""
    return METHODS.add(cls.name, cls)
