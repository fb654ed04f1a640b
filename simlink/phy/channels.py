"""Channels: their scenario entries (``channels:`` list) and their simulation.

Model, per complex channel use ``t`` of codeword ``b``::

    y[b, t] = h[b, t] * x[b, t] + w[b, t],    w ~ CN(0, N0),  E|x|^2 = 1,  E|h|^2 = 1

* ``awgn``: ``h = 1``.
* ``rayleigh_block``: ``h ~ CN(0, 1)`` constant over a block; ``granularity: block`` draws one
  coefficient per codeword (independent across codewords), ``granularity: image`` one per image
  (all codewords of an image share it).
* ``rayleigh_fast``: ``h ~ CN(0, 1)`` i.i.d. per symbol (ideal interleaving).

The receiver has perfect CSI: zero-forcing equalisation ``y / h`` with the per-symbol effective
noise variance ``N0 / |h|^2``, which fed to the APP demapper gives the exact bit LLRs.

Random numbers come from Sionna's generator ``sionna.phy.config.torch_rng(device)`` (fading via
Sionna's ``RayleighBlockFading`` / ``complex_normal``, noise via Sionna's ``AWGN``), so a run is
reproducible from ``sionna.phy.config.seed``. Fading is drawn before noise.

Each model is one :class:`Channel` subclass registered in :data:`CHANNELS` (scenario keys, label,
description and its :meth:`Channel.fading`); this module imports torch and Sionna only when a
channel is simulated, so the scenario schema stays light.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar, Literal

from simlink.registry import Registry
from simlink.schema import Strict, registry_entry

if TYPE_CHECKING:
    import torch

#: Every channel model, by its scenario ``name``; filled by :func:`register_channel`.
CHANNELS: Registry[type["Channel"]] = Registry("channel")


class Channel(Strict):
    """Base of a ``channels:`` entry: the scenario keys of one channel model and how it fades.

    A new channel model is one subclass with a ``name: Literal["..."]`` field, a ``description``,
    optionally a ``label`` and :meth:`fading`, registered with :func:`register_channel`; the
    digital and analog links, the scenario schema and ``simlink list`` then know it.
    """

    description: ClassVar[str] = ""
    name: str

    @property
    def label(self) -> str:
        """Short unique name for tables and legends (default: ``name``)."""
        return self.name

    def fading(self, rows: int, row_len: int, row_image: "torch.Tensor", num_images: int,
               device: str) -> "torch.Tensor | None":
        """Fading coefficients for ``rows`` rows of ``row_len`` symbols (a row is a codeword of
        the digital link, one user's symbols of an image on the analog link).

        Inputs:
            rows: ``B``; row_len: ``S``.
            row_image: ``int64[B]`` image index of each row (on ``device``).
            num_images: ``N`` (images indexed ``0..N-1``).
            device: torch device string.
        Output: ``complex64[B, S]`` (possibly a broadcast view) on ``device``, or ``None`` for no
        fading (``h = 1``). Random draws come from Sionna's generator for ``device``.
        """
        return None


def register_channel(cls: type[Channel]) -> type[Channel]:
    """Class decorator: add a :class:`Channel` subclass to :data:`CHANNELS` under the default of
    its ``name`` field. Registering a name twice is an error."""
    return CHANNELS.add(cls.model_fields["name"].default, cls)


@lru_cache(maxsize=None)
def _block_fading(device: str):
    from sionna.phy.channel import RayleighBlockFading

    return RayleighBlockFading(num_rx=1, num_rx_ant=1, num_tx=1, num_tx_ant=1, device=device)


@register_channel
class AWGNChannel(Channel):
    """``{name: awgn}``: additive white Gaussian noise, no fading."""

    description: ClassVar[str] = "additive white Gaussian noise, no fading"
    name: Literal["awgn"] = "awgn"


@register_channel
class RayleighBlockChannel(Channel):
    """``{name: rayleigh_block, granularity: block|image}``: one CN(0,1) fade per codeword or per image."""

    description: ClassVar[str] = (
        "Rayleigh block fading, perfect CSI; granularity: block (one fade per codeword) "
        "or image (one fade per image)"
    )
    name: Literal["rayleigh_block"] = "rayleigh_block"
    granularity: Literal["block", "image"] = "block"

    @property
    def label(self) -> str:
        """Short unique name for tables and legends, e.g. ``rayleigh_block(image)``."""
        return f"rayleigh_block({self.granularity})"

    def fading(self, rows, row_len, row_image, num_images, device):
        import torch

        shape = (rows, row_len)
        draws = rows if self.granularity == "block" else num_images
        if draws == 0:
            return torch.zeros(shape, dtype=torch.complex64, device=device)
        h, _ = _block_fading(device)(batch_size=draws, num_time_steps=1, sampling_frequency=1.0)
        h = h.reshape(draws)
        if self.granularity == "image":
            h = h[row_image]
        return h.unsqueeze(1).expand(shape)


@register_channel
class RayleighFastChannel(Channel):
    """``{name: rayleigh_fast}``: i.i.d. CN(0,1) fade per symbol."""

    description: ClassVar[str] = "Rayleigh fast fading (i.i.d. per symbol), perfect CSI"
    name: Literal["rayleigh_fast"] = "rayleigh_fast"

    def fading(self, rows, row_len, row_image, num_images, device):
        from sionna.phy import config
        from sionna.phy.utils import complex_normal

        return complex_normal([rows, row_len], device=device, generator=config.torch_rng(device))


ChannelConfig = registry_entry(CHANNELS, Channel)
"""Field type of one ``channels:`` entry: a mapping whose ``name`` picks the registered class."""


class ChannelSimulator:
    """Draws fades and noise for a batch of rows (codewords, or users' symbols) on one device.

    Args:
        device: torch device string (``"cpu"``, ``"cuda:0"``; must be in Sionna's available devices).
    """

    def __init__(self, device: str):
        from sionna.phy.channel import AWGN

        self.device = device
        self._awgn = AWGN(device=device)

    def coefficients(self, channel: Channel, num_codewords: int, symbols_per_codeword: int,
                     block_image: "torch.Tensor", num_images: int) -> "torch.Tensor | None":
        """``channel.fading(...)`` on this simulator's device (see :meth:`Channel.fading`)."""
        return channel.fading(num_codewords, symbols_per_codeword, block_image, num_images, self.device)

    def __call__(self, channel: Channel, x: "torch.Tensor", no, block_image: "torch.Tensor",
                 num_images: int) -> "tuple[torch.Tensor, torch.Tensor | None]":
        """Pass symbols through the channel (fading drawn before noise).

        Inputs:
            channel: a :class:`Channel`.
            x: ``complex64[B, S]`` unit-energy symbols on the device.
            no: noise variance ``N0`` per complex symbol (linear): a float or ``float[B, 1]``.
            block_image: ``int64[B]`` image index per row; num_images: ``N``.
        Output: ``(y complex64[B, S], h complex64[B, S] or None without fading)``.
        """
        h = self.coefficients(channel, x.shape[0], x.shape[1], block_image, num_images)
        faded = x if h is None else h * x
        if x.numel() == 0:
            return faded, h
        return self._awgn(faded, no), h


def equalise(y: "torch.Tensor", h: "torch.Tensor | None", no) -> "tuple[torch.Tensor, torch.Tensor | float]":
    """Zero-forcing equalisation with perfect CSI.

    Inputs: ``y complex64[B, S]``, ``h complex64[B, S]`` or ``None`` (AWGN), ``no`` = N0 (linear).
    Output: ``(y / h, N0 / |h|^2)``: equalised symbols ``complex64[B, S]`` and the effective noise
    variance per symbol (``float32[B, S]``, or the scalar ``no`` for AWGN) — the inputs of the
    APP demapper that give exact LLRs.
    """
    import torch

    if h is None:
        return y, no
    gain = (h.real.square() + h.imag.square()).clamp_min(torch.finfo(torch.float32).tiny)
    return y * h.conj() / gain, no / gain
