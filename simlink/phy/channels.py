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
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

import torch
from pydantic import BaseModel, ConfigDict, Field


class AWGNChannel(BaseModel):
    """``{name: awgn}``: additive white Gaussian noise, no fading."""

    model_config = ConfigDict(extra="forbid")
    description: ClassVar[str] = "additive white Gaussian noise, no fading"

    name: Literal["awgn"] = "awgn"

    @property
    def label(self) -> str:
        """Short unique name for tables and legends."""
        return "awgn"


class RayleighBlockChannel(BaseModel):
    """``{name: rayleigh_block, granularity: block|image}``: one CN(0,1) fade per codeword or per image."""

    model_config = ConfigDict(extra="forbid")
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


class RayleighFastChannel(BaseModel):
    """``{name: rayleigh_fast}``: i.i.d. CN(0,1) fade per symbol."""

    model_config = ConfigDict(extra="forbid")
    description: ClassVar[str] = "Rayleigh fast fading (i.i.d. per symbol), perfect CSI"

    name: Literal["rayleigh_fast"] = "rayleigh_fast"

    @property
    def label(self) -> str:
        """Short unique name for tables and legends."""
        return "rayleigh_fast"


ChannelConfig = Annotated[
    Union[AWGNChannel, RayleighBlockChannel, RayleighFastChannel],
    Field(discriminator="name"),
]
"""One entry of a scenario's ``channels:`` list (discriminated by ``name``)."""

CHANNELS: dict[str, str] = {
    cls.model_fields["name"].default: cls.description
    for cls in (AWGNChannel, RayleighBlockChannel, RayleighFastChannel)
}
"""Channel name -> one-line description (for ``simlink list``)."""


class ChannelSimulator:
    """Draws fades and noise for a batch of codewords on one device.

    Args:
        device: torch device string (``"cpu"``, ``"cuda:0"``; must be in Sionna's available devices).
    """

    def __init__(self, device: str):
        from sionna.phy.channel import AWGN, RayleighBlockFading

        self.device = device
        self._awgn = AWGN(device=device)
        self._block_fading = RayleighBlockFading(num_rx=1, num_rx_ant=1, num_tx=1, num_tx_ant=1, device=device)

    def coefficients(
        self,
        channel: AWGNChannel | RayleighBlockChannel | RayleighFastChannel,
        num_codewords: int,
        symbols_per_codeword: int,
        block_image: torch.Tensor,
        num_images: int,
    ) -> torch.Tensor | None:
        """Fading coefficients.

        Inputs:
            channel: a channel config.
            num_codewords: ``B``; symbols_per_codeword: ``S``.
            block_image: ``int64[B]`` image index of each codeword (on the device).
            num_images: ``N`` (images indexed ``0..N-1``).
        Output: ``complex64[B, S]`` (possibly a broadcast view) on the device, ``None`` for AWGN.
        """
        from sionna.phy import config
        from sionna.phy.utils import complex_normal

        shape = (num_codewords, symbols_per_codeword)
        if isinstance(channel, AWGNChannel):
            return None
        if isinstance(channel, RayleighFastChannel):
            return complex_normal(list(shape), device=self.device, generator=config.torch_rng(self.device))
        if isinstance(channel, RayleighBlockChannel):
            draws = num_codewords if channel.granularity == "block" else num_images
            if draws == 0:
                return torch.zeros(shape, dtype=torch.complex64, device=self.device)
            h, _ = self._block_fading(batch_size=draws, num_time_steps=1, sampling_frequency=1.0)
            h = h.reshape(draws)
            if channel.granularity == "image":
                h = h[block_image]
            return h.unsqueeze(1).expand(shape)
        raise TypeError(f"unknown channel config {channel!r}")

    def __call__(
        self,
        channel: AWGNChannel | RayleighBlockChannel | RayleighFastChannel,
        x: torch.Tensor,
        no: float,
        block_image: torch.Tensor,
        num_images: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pass symbols through the channel.

        Inputs:
            channel: a channel config.
            x: ``complex64[B, S]`` unit-energy symbols on the device.
            no: noise variance ``N0`` per complex symbol (linear).
            block_image: ``int64[B]`` image index per codeword; num_images: ``N``.
        Output: ``(y complex64[B, S], h complex64[B, S] or None for AWGN)``.
        """
        h = self.coefficients(channel, x.shape[0], x.shape[1], block_image, num_images)
        faded = x if h is None else h * x
        if x.numel() == 0:
            return faded, h
        return self._awgn(faded, no), h


def equalise(y: torch.Tensor, h: torch.Tensor | None, no: float) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Zero-forcing equalisation with perfect CSI.

    Inputs: ``y complex64[B, S]``, ``h complex64[B, S]`` or ``None`` (AWGN), ``no`` = N0 (linear).
    Output: ``(y / h, N0 / |h|^2)``: equalised symbols ``complex64[B, S]`` and the effective noise
    variance per symbol (``float32[B, S]``, or the scalar ``no`` for AWGN) — the inputs of the
    APP demapper that give exact LLRs.
    """
    if h is None:
        return y, no
    gain = (h.real.square() + h.imag.square()).clamp_min(torch.finfo(torch.float32).tiny)
    return y * h.conj() / gain, no / gain
