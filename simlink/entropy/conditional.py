"""Discretised Gaussian and Gaussian-mixture conditionals for hyperprior codecs.

For an integer (or noisy, during training) value y the likelihood is

    p(y) = sum_m w_m [Phi((y + 1/2 - mu_m) / s_m) - Phi((y - 1/2 - mu_m) / s_m)]

with ``s_m >= SCALE_BOUND`` (0.11) and ``p >= LIKELIHOOD_BOUND`` (1e-9). A single Gaussian
is the M = 1 case. Bits are ``-log2 p``. During training, ``add_noise`` replaces rounding by
additive U(-1/2, 1/2) noise; at inference, ``quantize`` rounds and the integer symbols are
coded with :mod:`simlink.entropy.coder`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from simlink.entropy._bounds import lower_bound

SCALE_BOUND = 0.11
LIKELIHOOD_BOUND = 1e-9


def std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x), computed as ``erfc(-x/sqrt 2)/2`` for accuracy in the lower tail."""
    return 0.5 * torch.erfc(-x * (1.0 / math.sqrt(2.0)))


def add_noise(y: torch.Tensor) -> torch.Tensor:
    """Training proxy for rounding: ``y + U(-1/2, 1/2)``, same shape/dtype as ``y``."""
    return y + torch.empty_like(y).uniform_(-0.5, 0.5)


def quantize(y: torch.Tensor, means: torch.Tensor | None = None) -> torch.Tensor:
    """Inference quantisation: ``round(y - means) + means`` if means given, else ``round(y)``."""
    if means is None:
        return torch.round(y)
    return torch.round(y - means) + means


def _gaussian_bin_mass(y: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Mass of N(means, scales^2) on [y - 1/2, y + 1/2]; uses the symmetric form for accuracy."""
    v = torch.abs(y - means)
    upper = std_normal_cdf((0.5 - v) / scales)
    lower = std_normal_cdf((-0.5 - v) / scales)
    return upper - lower


class GaussianConditional(nn.Module):
    """Discretised Gaussian likelihood.

    forward / likelihood(y, means, scales): all float tensors of one shape, typically
    [B, C, H, W]; returns likelihoods (probabilities, unitless) of the same shape,
    each in [LIKELIHOOD_BOUND, 1].
    """

    def __init__(self, scale_bound: float = SCALE_BOUND,
                 likelihood_bound: float = LIKELIHOOD_BOUND) -> None:
        super().__init__()
        self.scale_bound = float(scale_bound)
        self.likelihood_bound = float(likelihood_bound)

    add_noise = staticmethod(add_noise)
    quantize = staticmethod(quantize)

    def likelihood(self, y: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        scales = lower_bound(scales, self.scale_bound)
        p = _gaussian_bin_mass(y, means, scales)
        return lower_bound(p, self.likelihood_bound)

    def forward(self, y: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        return self.likelihood(y, means, scales)


class GaussianMixtureConditional(nn.Module):
    """Discretised Gaussian-mixture likelihood with ``num_components`` = M components.

    likelihood(y, weight_logits, means, scales):
        y: [B, C, H, W]; weight_logits, means, scales: [B, C, M, H, W].
        Weights are ``softmax(weight_logits, dim=2)``. Returns [B, C, H, W] likelihoods in
        [LIKELIHOOD_BOUND, 1].
    """

    def __init__(self, num_components: int, scale_bound: float = SCALE_BOUND,
                 likelihood_bound: float = LIKELIHOOD_BOUND) -> None:
        super().__init__()
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        self.num_components = int(num_components)
        self.scale_bound = float(scale_bound)
        self.likelihood_bound = float(likelihood_bound)

    add_noise = staticmethod(add_noise)
    quantize = staticmethod(quantize)

    def likelihood(self, y: torch.Tensor, weight_logits: torch.Tensor, means: torch.Tensor,
                   scales: torch.Tensor) -> torch.Tensor:
        if weight_logits.dim() != 5 or weight_logits.shape[2] != self.num_components:
            raise ValueError(
                f"mixture params must be [B, C, {self.num_components}, H, W], "
                f"got {tuple(weight_logits.shape)}")
        w = torch.softmax(weight_logits, dim=2)
        scales = lower_bound(scales, self.scale_bound)
        p = (w * _gaussian_bin_mass(y.unsqueeze(2), means, scales)).sum(dim=2)
        return lower_bound(p, self.likelihood_bound)

    def forward(self, y: torch.Tensor, weight_logits: torch.Tensor, means: torch.Tensor,
                scales: torch.Tensor) -> torch.Tensor:
        return self.likelihood(y, weight_logits, means, scales)
