"""Generalized divisive normalization (Ballé, Laparra & Simoncelli 2016).

GDN:  y_i = x_i / sqrt(beta_i + sum_j gamma_ij * x_j^2)
IGDN: y_i = x_i * sqrt(beta_i + sum_j gamma_ij * x_j^2)   (``inverse=True``)

The sum over j is a 1x1 convolution of ``x**2`` with weight ``gamma`` and bias ``beta``.
``beta`` and ``gamma`` are kept non-negative by the usual reparametrisation: the stored
parameter ``p`` maps to ``lower_bound(p, sqrt(min + pedestal))**2 - pedestal`` with
``pedestal = 2**-36``, so ``beta >= beta_min > 0`` and ``gamma >= 0`` always hold,
whatever the optimizer does to ``p``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from simlink.entropy._bounds import lower_bound

_PEDESTAL = 2.0**-36


class _NonNegative(nn.Module):
    """Maps an unconstrained stored tensor to values ``>= minimum`` (see module docstring)."""

    def __init__(self, minimum: float = 0.0) -> None:
        super().__init__()
        self.minimum = float(minimum)
        self.bound = (self.minimum + _PEDESTAL) ** 0.5

    def init(self, value: torch.Tensor) -> torch.Tensor:
        """Stored-parameter value that maps back to ``value``."""
        return torch.sqrt(torch.clamp(value + _PEDESTAL, min=_PEDESTAL))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return lower_bound(p, self.bound) ** 2 - _PEDESTAL


class GDN(nn.Module):
    """GDN / IGDN layer.

    Args:
        channels: number of channels C.
        inverse: if True, multiply by the normaliser (IGDN) instead of dividing.
        beta_min: lower bound for beta (keeps the denominator away from zero).
        gamma_init: initial diagonal value of gamma (off-diagonal entries start at 0).

    Input/output: float tensor [B, C, H, W]; the output has the input's shape and dtype.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6,
                 gamma_init: float = 0.1) -> None:
        super().__init__()
        self.channels = int(channels)
        self.inverse = bool(inverse)
        self._beta_map = _NonNegative(beta_min)
        self._gamma_map = _NonNegative(0.0)
        self.beta_param = nn.Parameter(self._beta_map.init(torch.ones(channels)))
        self.gamma_param = nn.Parameter(self._gamma_map.init(gamma_init * torch.eye(channels)))

    @property
    def beta(self) -> torch.Tensor:
        """Effective beta, shape [C], every entry >= beta_min."""
        return self._beta_map(self.beta_param)

    @property
    def gamma(self) -> torch.Tensor:
        """Effective gamma, shape [C, C] (row i = output channel), every entry >= 0."""
        return self._gamma_map(self.gamma_param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"GDN expects [B, {self.channels}, H, W], got {tuple(x.shape)}")
        weight = self.gamma.view(self.channels, self.channels, 1, 1)
        norm = F.conv2d(x * x, weight, self.beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)
