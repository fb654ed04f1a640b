"""A compact U-Net segmenter (Ronneberger et al., MICCAI 2015), trainable from scratch.

Why a U-Net beside ESPNet: ESPNet's decoder works from ``H/8`` class scores and only one
full-resolution feature map, which suits 360x480 street scenes but leaves a 4x4 score map on
the 32x32 synthetic images ``make test`` trains on; its from-scratch recipe there barely beats
the majority class in a CPU minute. A U-Net's skip connections carry features at every scale
back to full resolution (sharp object boundaries on small images) while its bottleneck sees the
whole object (shape classes), and it trains quickly with plain Adam. It is also the usual
small-data baseline, so users know what it is. Width and depth are options (``base``,
``depth``) so the same architecture serves CamVid at ``[184, 240]``.

Registered as the architecture ``unet`` (``task: {kind: segmentation, model: unet}``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from simlink.tasks.classifier import register_architecture

__all__ = ["UNet", "unet_segmenter"]


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch norm and ReLU (the U-Net unit)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net: ``float32[N, 3, H, W]`` RGB in [0, 1] -> ``float32[N, num_outputs, H, W]`` logits.

    ``depth`` 2x2 max-pool stages; stage ``i`` has ``base * 2**i`` channels (capped at
    ``base * 8``). Each decoder stage upsamples bilinearly by 2, concatenates the encoder's
    feature map of that scale and applies a double 3x3 conv. ``H`` and ``W`` must be multiples
    of ``2**depth`` (:attr:`size_multiple`; other sizes are padded by
    :class:`~simlink.tasks.segmenter.SegmentationModel`). The input is mapped to [-1, 1] inside.

    Raises:
        ValueError: bad sizes at construction, or (forward) an input that is not
            ``[N, 3, H, W]`` with ``H``, ``W`` multiples of ``2**depth``.
    """

    def __init__(self, num_outputs: int, base: int = 16, depth: int = 3) -> None:
        super().__init__()
        if num_outputs < 1 or base < 1 or not 1 <= depth <= 6:
            raise ValueError(f"UNet needs num_outputs >= 1, base >= 1 and 1 <= depth <= 6, got "
                             f"{num_outputs}, {base}, {depth}")
        self.num_outputs, self.base, self.depth = int(num_outputs), int(base), int(depth)
        self.size_multiple = 2 ** self.depth
        widths = [min(base * 2 ** i, base * 8) for i in range(depth + 1)]
        self.down = nn.ModuleList([_double_conv(3, widths[0])] +
                                  [_double_conv(widths[i - 1], widths[i]) for i in range(1, depth + 1)])
        self.up = nn.ModuleList(_double_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"UNet expects float[N, 3, H, W], got shape {list(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple or h == 0 or w == 0:
            raise ValueError(f"UNet(depth={self.depth}) needs H and W to be multiples of {self.size_multiple}, "
                             f"got {h}x{w} (HxW)")
        y = x * 2.0 - 1.0
        skips = []
        for i, block in enumerate(self.down):
            y = block(y if i == 0 else F.max_pool2d(y, 2))
            skips.append(y)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        return self.head(y)


@register_architecture("unet")
def unet_segmenter(num_outputs: int = 12, base: int = 16, depth: int = 3) -> UNet:
    """A :class:`UNet` with fresh random weights (PyTorch's default initialisation)."""
    return UNet(num_outputs, base, depth)
