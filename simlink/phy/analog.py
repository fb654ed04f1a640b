"""The analog link of deep JSCC methods: learned channel symbols -> channel -> equalised symbols.

No bits, no code: a method's encoder outputs real features that are paired into complex
baseband symbols (:func:`real_to_complex`), normalised so that each user's average power per
channel use is 1 (:func:`power_normalise`), and sent through the *same* channel simulator as
the digital link (:class:`~simlink.phy.channels.ChannelSimulator`: Sionna's AWGN and Rayleigh
fading). The receiver has perfect CSI and zero-forces the fades (:func:`~simlink.phy.channels.equalise`).

Shapes: a payload holds ``complex64[N, U, S]`` symbols — ``N`` images, ``U`` users (transmitters)
per image, ``S`` complex channel uses per user. One user's ``S`` symbols play the part of a
codeword for the fading models: ``rayleigh_block`` with ``granularity: block`` draws one
fade per user and image (every user has its own link), ``granularity: image`` one fade per image
(shared by its users), ``rayleigh_fast`` one per symbol.

SNR is Es/N0 in dB per complex channel use with ``Es = 1`` (see :mod:`simlink.phy.snr`), so
``N0 = 10^(-snr/10)``. The channel uses per image are ``U * S``, exactly what the rows' ``cpp``
column counts, so analog and digital methods compare at equal channel use.

Everything here is differentiable with respect to the symbols, so methods train through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from simlink.phy.channels import ChannelConfig, ChannelSimulator, equalise
from simlink.phy.link import sionna_seed, torch_device
from simlink.phy.snr import esno_db_to_no


def real_to_complex(features: torch.Tensor) -> torch.Tensor:
    """Pair real features into complex symbols.

    Input: ``float[..., 2S]``. Output: ``complex64[..., S]`` with ``features[..., :S]`` as the real
    and ``features[..., S:]`` as the imaginary parts.
    """
    if features.shape[-1] % 2:
        raise ValueError(f"need an even number of real features, got {features.shape[-1]}")
    s = features.shape[-1] // 2
    return torch.complex(features[..., :s].float(), features[..., s:].float())


def complex_to_real(symbols: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`real_to_complex`: ``complex[..., S]`` -> ``float32[..., 2S]``."""
    return torch.cat([symbols.real, symbols.imag], dim=-1).float()


def power_normalise(symbols: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """Scale every vector along the last axis to average power ``power`` per complex symbol.

    Input: ``complex[..., S]`` (one row per user and image). Output: same shape with
    ``mean(|x|^2) == power`` along the last axis (an all-zero row stays zero).
    """
    p = symbols.real.square() + symbols.imag.square()
    scale = torch.sqrt(power / p.mean(dim=-1, keepdim=True).clamp_min(1e-12))
    return symbols * scale


#: Rows whose mean power is this close to 1 are already normalised (float32 rounding).
UNIT_POWER_TOL = 1e-5


def unit_power(symbols: torch.Tensor) -> torch.Tensor:
    """What the link sends: every row (user and image) of ``complex[..., S]`` at mean power 1.

    Rows already at power 1 within :data:`UNIT_POWER_TOL` (an encoder that normalises, as deep
    JSCC encoders do) pass unchanged, bit for bit, so normalising twice cannot perturb results;
    every other row is scaled by :func:`power_normalise`. Differentiable."""
    p = (symbols.real.square() + symbols.imag.square()).mean(dim=-1, keepdim=True)
    off = (p - 1.0).abs() > UNIT_POWER_TOL
    if not bool(off.any()):
        return symbols
    return torch.where(off, power_normalise(symbols), symbols)


@dataclass
class AnalogRx:
    """What the analog receiver gets.

    Attributes:
        symbols: ``complex64[N, U, S]`` equalised received symbols (``y / h``; ``y`` for AWGN).
        noise_var: effective noise variance per symbol after equalisation, ``float32[N, U, S]``
            (``N0 / |h|^2``) or the scalar ``N0`` for AWGN.
        channel_uses: ``int64[N]`` complex channel uses per image (``U * S``).
    """

    symbols: torch.Tensor
    noise_var: torch.Tensor | float
    channel_uses: np.ndarray


class AnalogLink:
    """Power normalisation + channel + perfect-CSI equalisation for ``complex[N, U, S]`` symbols.

    The link itself scales every user's symbols of every image to average power 1 per channel
    use (:func:`unit_power`) before the channel, whatever the encoder produced, so that Es/N0
    means what it says: symbols of mean power 4 sent at 0 dB arrive at 0 dB, not +6 dB.

    Args:
        device: torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    """

    def __init__(self, device: str = "cpu"):
        self.device = torch_device(device)
        self.channel = ChannelSimulator(self.device)

    def __call__(self, symbols: torch.Tensor, channel: ChannelConfig, no: float | torch.Tensor) -> AnalogRx:
        """Differentiable pass through the channel (draws from Sionna's current generator state).

        Inputs:
            symbols: ``complex64[N, U, S]`` on the link's device, any power (normalised here per
                user and image to mean ``|x|^2 = 1``; differentiable).
            channel: a channel config.
            no: noise variance ``N0`` per complex symbol: a float, or ``float[N]`` (one SNR per image,
                e.g. sampled during training).
        Output: :class:`AnalogRx`.
        """
        if symbols.ndim != 3 or not symbols.is_complex():
            raise ValueError(f"analog symbols must be complex [N, users, S], got {symbols.dtype} {list(symbols.shape)}")
        n, u, s = symbols.shape
        flat = unit_power(symbols).reshape(n * u, s)
        block_image = torch.arange(n, device=flat.device).repeat_interleave(u)
        no_rows = no
        if isinstance(no, torch.Tensor):
            no_rows = no.to(flat.device, torch.float32).reshape(n, 1).repeat_interleave(u, dim=0)
        y, h = self.channel(channel, flat, no_rows, block_image, n)
        y_eq, no_eff = equalise(y, h, no_rows)
        if isinstance(no_eff, torch.Tensor):
            no_eff = no_eff.expand(n * u, s).reshape(n, u, s)
        uses = np.full(n, u * s, dtype=np.int64)
        return AnalogRx(symbols=y_eq.reshape(n, u, s), noise_var=no_eff, channel_uses=uses)

    def transmit(self, symbols: torch.Tensor, channel: ChannelConfig, esno_db: float, seed: int) -> AnalogRx:
        """Send a payload at Es/N0 ``esno_db`` (dB per complex channel use); the result depends on
        ``seed`` alone (not on earlier calls). No gradients are kept."""
        with torch.no_grad(), sionna_seed(seed):
            return self(symbols.to(self.device), channel, esno_db_to_no(esno_db))
