"""Optimiser settings of a training stage (plain data: importing this needs no torch)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OptimSettings"]


class OptimSettings(BaseModel):
    """Optimiser settings of one training stage (a scenario's ``train:`` block uses these names).

    Attributes:
        epochs: passes over the training images.
        batch_size: images per step.
        lr: initial Adam learning rate.
        lr_min: reduce-on-plateau never goes below this.
        plateau_patience: epochs without a 0.1 % improvement of the mean training loss before
            the learning rate is multiplied by ``plateau_factor``.
        plateau_factor: learning-rate decay factor on a plateau.
        grad_clip: maximum gradient norm (``None``: no clipping).
    """

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(10, ge=0)
    batch_size: int = Field(32, ge=2)
    lr: float = Field(1e-4, gt=0)
    lr_min: float = Field(1e-6, gt=0)
    plateau_patience: int = Field(2, ge=0)
    plateau_factor: float = Field(0.3, gt=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)
