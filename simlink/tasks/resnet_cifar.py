"""ResNet-20 for CIFAR-10 (He et al. 2016, section 4.2), parameter names matching the
widely used ``resnet20-12fca82f.th`` checkpoint (akamaster/pytorch_resnet_cifar10).

Layout: 3x3 conv 16 (no bias) + BN + ReLU -> three stages of 3 :class:`BasicBlock`
(16, 32, 64 channels; stride 2 at the start of stages 2 and 3) -> global average pool ->
``Linear(64, num_classes)``. Shortcuts that change shape use "option A": subsample by 2 and
zero-pad the channels (no parameters). About 0.27 M parameters.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from simlink.tasks.classifier import Normalize, TaskModel, register_architecture
from simlink.tasks.loading import PRETRAINED
from simlink.tasks.weights import WeightsRecord, load_state_dict, resolve_weights

__all__ = ["BasicBlock", "CIFAR10_CLASSES", "RESNET20_CIFAR10", "ResNetCifar", "load_resnet20_cifar10", "resnet20"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

RESNET20_CIFAR10 = WeightsRecord(
    name="resnet20_cifar10",
    filename="resnet20-12fca82f.th",
    sha256="12fca82f",  # only the file-name prefix is published: prefix match
    num_classes=10,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    meta={
        "source": "https://github.com/akamaster/pytorch_resnet_cifar10",
        "reported_top1": 91.78,
        "dataset": "cifar10",
        "input": "RGB in [0, 1], 32x32",
    },
)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity / option-A shortcut; ``float[N, C, H, W]``."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = stride != 1 or in_planes != planes
        self.pad = planes // 4

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if not self.downsample:
            return x
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """CIFAR ResNet-(6n+2); input ``float[N, 3, H, W]`` RGB in [0, 1], output logits ``[N, num_classes]``."""

    def __init__(
        self,
        num_blocks: Sequence[int] = (3, 3, 3),
        num_classes: int = 10,
        mean: Sequence[float] = RESNET20_CIFAR10.mean,
        std: Sequence[float] = RESNET20_CIFAR10.std,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        stages = []
        for planes, stride, n in zip((16, 32, 64), (1, 2, 2), num_blocks):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(BasicBlock(in_planes, planes, s))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


@register_architecture("resnet20")
def resnet20(num_classes: int = 10) -> ResNetCifar:
    """ResNet-20 (3 blocks per stage), random weights."""
    return ResNetCifar((3, 3, 3), num_classes)


@PRETRAINED.register("resnet20_cifar10")
def load_resnet20_cifar10(path: str | os.PathLike | None = None) -> TaskModel:
    """Pretrained ResNet-20 on CIFAR-10 as a frozen :class:`TaskModel` (CPU).

    ``path``: the checkpoint file (or its folder); otherwise searched as in
    :func:`simlink.tasks.weights.resolve_weights`. The file is verified against the
    record's 8-digit SHA-256 prefix.
    """
    file = resolve_weights(RESNET20_CIFAR10, path)
    net = resnet20(num_classes=RESNET20_CIFAR10.num_classes)
    state = load_state_dict(file)
    # the normalisation buffers are ours, not the checkpoint's
    state.update({f"normalize.{k}": v for k, v in net.normalize.state_dict().items()})
    net.load_state_dict(state, strict=True)
    model = TaskModel(net, "resnet20", {"num_classes": RESNET20_CIFAR10.num_classes}, CIFAR10_CLASSES,
                      meta={"weights": RESNET20_CIFAR10.name, "weights_file": str(file)})
    return model.freeze()
