"""Non-parametric factorized density (Ballé et al. 2018, appendix 6.1).

Each channel c has its own cumulative c_c: R -> (0, 1), a small monotone MLP
``1 -> filters[0] -> ... -> filters[-1] -> 1``. Layer k computes
``x <- softplus(H_k) @ x + b_k`` followed (except on the last layer) by
``x <- x + tanh(a_k) * tanh(x)``; the output is a logit, so c = sigmoid(logit). Softplus
matrices and tanh factors in (-1, 1) make every layer non-decreasing, so c is monotone.

The discretised likelihood of y (integer, or integer + U(-1/2, 1/2) noise in training) is
``c(y + 1/2) - c(y - 1/2)``, lower-bounded by 1e-9.

For coding, :meth:`FactorizedPrior.pmf_tables` turns each channel's density into an integer
PMF over a finite support ``[offset_c, offset_c + length_c - 1]``: the support spans the
range where the CDF lies within [tail, 1 - tail] (found by bisection), capped at
``max_width`` symbols; the tail mass outside is added to the two edge bins, so each table
sums to exactly 1. Symbols outside the support are clamped into it by the coder, so decoding
returns the clamped symbols (see :func:`simlink.entropy.coder.encode_factorized`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simlink.entropy._bounds import lower_bound

LIKELIHOOD_BOUND = 1e-9


@dataclass(frozen=True)
class PmfTables:
    """Per-channel coding tables.

    offsets: int64 [C], the smallest symbol of each channel's support.
    lengths: int64 [C], the number of symbols in each support (>= 1).
    pmfs: float64 [C, max(lengths)], row c holds the PMF of symbols offsets[c] + k for
        k < lengths[c] (sums to 1) and zeros after.
    """

    offsets: np.ndarray
    lengths: np.ndarray
    pmfs: np.ndarray


class FactorizedPrior(nn.Module):
    """Per-channel learned density; ``likelihood(y)`` for y [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3),
                 init_scale: float = 10.0, likelihood_bound: float = LIKELIHOOD_BOUND) -> None:
        super().__init__()
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.likelihood_bound = float(likelihood_bound)
        dims = (1, *self.filters, 1)
        scale = init_scale ** (1.0 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[k + 1], 1).uniform_(-0.5, 0.5)))
            if k < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

    def logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of the per-channel CDF.

        x: [C, N] values (channel-major); computed in x's dtype. Returns [C, N].
        """
        h = x.unsqueeze(1)  # [C, 1, N]
        for k, (mat, bias) in enumerate(zip(self.matrices, self.biases)):
            h = torch.matmul(F.softplus(mat.to(x.dtype)), h) + bias.to(x.dtype)
            if k < len(self.factors):
                h = h + torch.tanh(self.factors[k].to(x.dtype)) * torch.tanh(h)
        return h.squeeze(1)

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel CDF c_c(x); x [C, N] -> [C, N] in (0, 1)."""
        return torch.sigmoid(self.logits_cdf(x))

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """c(y + 1/2) - c(y - 1/2) per element; y [B, C, H, W] float -> [B, C, H, W]."""
        if y.dim() != 4 or y.shape[1] != self.channels:
            raise ValueError(f"expected [B, {self.channels}, H, W], got {tuple(y.shape)}")
        b, c, h, w = y.shape
        v = y.permute(1, 0, 2, 3).reshape(c, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        # Evaluate in the tail where sigmoid differences are well conditioned.
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = lower_bound(p, self.likelihood_bound)
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.likelihood(y)

    @torch.no_grad()
    def quantiles(self, probs: tuple[float, ...], search_bound: float = 1e4,
                  iters: int = 80) -> torch.Tensor:
        """Per-channel quantiles by bisection on the (float64) CDF.

        Returns float64 [C, len(probs)]; values clipped to [-search_bound, search_bound].
        """
        c = self.channels
        target = torch.tensor(probs, dtype=torch.float64).expand(c, -1)
        lo = torch.full_like(target, -search_bound)
        hi = torch.full_like(target, search_bound)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    @torch.no_grad()
    def pmf_tables(self, tail: float = 1e-9, max_width: int = 512) -> PmfTables:
        """Integer PMF tables for coding (see module docstring and :class:`PmfTables`)."""
        q = self.quantiles((tail, 0.5, 1.0 - tail))
        lo = torch.floor(q[:, 0]).to(torch.int64)
        hi = torch.ceil(q[:, 2]).to(torch.int64)
        med = torch.round(q[:, 1]).to(torch.int64)
        half = max_width // 2
        too_wide = hi - lo + 1 > max_width
        lo = torch.where(too_wide, torch.maximum(lo, med - half), lo)
        hi = torch.where(too_wide, torch.minimum(hi, lo + max_width - 1), hi)
        lengths = hi - lo + 1
        width = int(lengths.max())
        k = torch.arange(width, dtype=torch.float64)
        sym = lo.to(torch.float64).unsqueeze(1) + k  # [C, W]
        cdf_lo = self.cdf(sym - 0.5)
        cdf_hi = self.cdf(sym + 0.5)
        valid = k.unsqueeze(0) < lengths.unsqueeze(1)
        is_first = k.unsqueeze(0) == 0
        is_last = k.unsqueeze(0) == (lengths - 1).unsqueeze(1)
        cdf_lo = torch.where(is_first, torch.zeros_like(cdf_lo), cdf_lo)
        cdf_hi = torch.where(is_last, torch.ones_like(cdf_hi), cdf_hi)
        pmf = torch.where(valid, torch.clamp(cdf_hi - cdf_lo, min=0.0), torch.zeros_like(cdf_lo))
        pmf = pmf / pmf.sum(dim=1, keepdim=True)
        return PmfTables(offsets=lo.numpy().copy(), lengths=lengths.numpy().copy(),
                         pmfs=pmf.numpy().copy())
