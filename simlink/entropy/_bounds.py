"""Lower-bound helper shared by the entropy layers.

``lower_bound(x, bound)`` returns ``max(x, bound)`` elementwise but lets gradients through
where they would push ``x`` upward (towards the feasible region), so parameters that fall
below the bound are not stuck with zero gradient (Ballé et al. 2018 / CompressAI idiom).
"""

from __future__ import annotations

import torch


class _LowerBound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, bound)
        return torch.maximum(x, bound)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        x, bound = ctx.saved_tensors
        pass_through = (x >= bound) | (grad_output < 0)
        return pass_through.to(grad_output.dtype) * grad_output, None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Elementwise ``max(x, bound)`` with the gradient-friendly backward described above.

    x: any shape, float. bound: Python float. Returns a tensor shaped and typed like ``x``.
    """
    return _LowerBound.apply(x, torch.as_tensor(bound, dtype=x.dtype, device=x.device))
