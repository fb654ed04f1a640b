"""LPIPS v0.1 (Zhang et al., CVPR 2018): the learned perceptual image patch similarity.

Why it is written here: the ``lpips`` package (and torchmetrics' LPIPS) build their backbones
with torchvision, and PyPI's torchvision does not import beside the CPU torch simlink uses. The
backbones are a handful of layers, so they are rebuilt here in torchvision's exact layer order
(``features`` indices), which lets the official torchvision checkpoints load unchanged.

The distance between images ``x`` and ``y`` in [-1, 1]: both are shifted and scaled per channel
(``(x - shift) / scale``, LPIPS's ``ScalingLayer``), run through the backbone, and at each of its
``L`` tap points (``slices``) the feature maps are unit-normalised over channels; then

    d(x, y) = sum_l mean_{h,w} sum_c w_{l,c} (f_l(x) - f_l(y))^2_{c,h,w}

with the non-negative learned weights ``w_l`` of the v0.1 linear layers (``lin{l}``).

Weights (nothing is downloaded; see :mod:`simlink.tasks.weights` for where files are looked
for): each backbone takes the official torchvision checkpoint (``alexnet-owt-7be5be79.pth``,
``squeezenet1_1-b8a52dc0.pth``, ``vgg16-397923af.pth``, from the torch hub cache; checked by
their sha256 prefix) or a ``features``-only export (the files in the project's shared weights
folder, checked by their full sha256); the linear layers come from LPIPS's
``lpips/v0.1/<net>.pth``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from simlink.errors import SimlinkError
from simlink.tasks.weights import WeightsRecord, candidate_paths, load_state_dict, resolve_weights

__all__ = ["BACKBONES", "LPIPS", "lpips_distance", "load_lpips"]

#: LPIPS's input shift and scale (its ``ScalingLayer``), RGB, for inputs in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class Fire(nn.Module):
    """SqueezeNet's Fire module: ``float32[N, c_in, H, W]`` -> ``float32[N, e1 + e3, H, W]``
    (1x1 squeeze + ReLU, then the concatenated 1x1 and 3x3 expands, each + ReLU)."""

    def __init__(self, c_in: int, s: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, s, 1)
        self.expand1x1 = nn.Conv2d(s, e1, 1)
        self.expand3x3 = nn.Conv2d(s, e3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], dim=1)


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features`` (5 convolutions; indices 0, 3, 6, 8, 10)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=False), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
    )


def squeezenet_features() -> nn.Sequential:
    """torchvision's ``squeezenet1_1().features`` (a 3x3 / stride-2 conv, then Fire modules at
    indices 3, 4, 6, 7, 9-12; ceil-mode max pools at 2, 5, 8)."""
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(), pool(),
        Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
        Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
        Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
    )


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` (13 3x3 convolutions + ReLU, 5 max pools)."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU()]
            c_in = int(v)
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class Backbone:
    """One LPIPS backbone: its ``features`` builder, the tap points (``slices``: end indices of
    the LPIPS slices, ``features[0:s_1], [s_1:s_2] ...``), their channel counts, and the weight
    files it can load, in the order they are looked for."""

    name: str
    build: object
    slices: tuple[int, ...]
    channels: tuple[int, ...]
    weights: tuple[WeightsRecord, ...]
    linear: WeightsRecord


def _linear(net: str, sha256: str) -> WeightsRecord:
    return WeightsRecord(name=f"lpips_{net}_v0.1", filename=f"lpips/v0.1/{net}.pth", sha256=sha256, num_classes=0,
                         meta={"source": "https://github.com/richzhang/PerceptualSimilarity (lpips/weights/v0.1)",
                               "licence": "BSD-2-Clause"})


#: The backbones LPIPS v0.1 defines; ``alex`` is its authors' default.
BACKBONES: dict[str, Backbone] = {
    "alex": Backbone(
        "alex", alexnet_features, (2, 5, 8, 10, 12), (64, 192, 384, 256, 256),
        (WeightsRecord("alexnet_imagenet", "alexnet-owt-7be5be79.pth", "7be5be79", 1000),
         WeightsRecord("alexnet_imagenet_features", "torchvision_alexnet_features.pth",
                       "3180866b3cbccfd16ea8e8c47edce8422669e489203c4e3f1da76a791b95c72c", 0)),
        _linear("alex", "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0")),
    "squeeze": Backbone(
        "squeeze", squeezenet_features, (2, 5, 8, 10, 11, 12, 13), (64, 128, 256, 384, 384, 512, 512),
        (WeightsRecord("squeezenet1_1_imagenet", "squeezenet1_1-b8a52dc0.pth", "b8a52dc0", 1000),
         WeightsRecord("squeezenet1_1_imagenet_features", "squeeze.backbone.pth",
                       "435cedb387e95bc8291893f61a3a64f0345b8c23a05139aceef43947efb3d52d", 0)),
        _linear("squeeze", "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76")),
    "vgg": Backbone(
        "vgg", vgg16_features, (4, 9, 16, 23, 30), (64, 128, 256, 512, 512),
        (WeightsRecord("vgg16_imagenet", "vgg16-397923af.pth", "397923af", 1000),),
        _linear("vgg", "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868")),
}


class LPIPS(nn.Module):
    """LPIPS v0.1 distance module.

    Args:
        net: ``alex``, ``squeeze`` or ``vgg`` (:data:`BACKBONES`).
        features: the backbone's ``features`` state dict (torchvision key layout, no
            ``features.`` prefix); ``None``: random weights (for tests of the machinery only).
        linear: the v0.1 linear layers' state dict (``lin{l}.model.1.weight``, ``float[1, C_l, 1, 1]``);
            ``None``: every weight 1 (an uncalibrated distance, for tests only).

    Input: ``x``, ``y`` ``float32[N, 3, H, W]`` RGB in [-1, 1] (H, W at least 32 for ``alex``).
    Output: ``float32[N]`` distances (0 for identical images; symmetric).
    Frozen: no parameter requires a gradient, but gradients reach the inputs (usable as a loss).
    """

    def __init__(self, net: str = "alex", features: dict | None = None, linear: dict | None = None) -> None:
        super().__init__()
        if net not in BACKBONES:
            raise SimlinkError(f"LPIPS backbone {net!r} is not one of {', '.join(BACKBONES)}")
        spec = BACKBONES[net]
        self.net_name = net
        self.weight_files: tuple[str, ...] = ()  # set by load_lpips: the backbone and linear-layer files
        full = spec.build()
        if features is not None:
            full.load_state_dict(features, strict=True)
        starts = (0,) + spec.slices[:-1]
        self.slices = nn.ModuleList(nn.Sequential(*list(full.children())[a:b]) for a, b in zip(starts, spec.slices))
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in spec.channels)
        for lin in self.lins:
            nn.init.ones_(lin.weight)
        if linear is not None:
            for i, lin in enumerate(self.lins):
                key = f"lin{i}.model.1.weight"
                if key not in linear:
                    raise SimlinkError(f"LPIPS {net} linear layers: missing {key!r} (found {sorted(linear)[:4]} ...)")
                lin.weight.data.copy_(linear[key].reshape(lin.weight.shape))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, y = [], (x - self.shift) / self.scale
        for block in self.slices:
            y = block(y)
            out.append(y / (torch.sqrt((y * y).sum(dim=1, keepdim=True)) + 1e-10))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects two float[N, 3, H, W] of one shape, got {list(x.shape)} and {list(y.shape)}")
        total = x.new_zeros(x.shape[0])
        for fx, fy, lin in zip(self._taps(x), self._taps(y), self.lins):
            total = total + lin((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total


def _backbone_state(spec: Backbone, path: str | os.PathLike | None) -> tuple[dict, str]:
    """The first backbone file found among ``spec.weights`` (verified), as a ``features`` state dict."""
    for record in spec.weights:
        if any(c.is_file() for c in candidate_paths(record, path)):
            file = resolve_weights(record, path)
            sd = load_state_dict(file)
            if any(k.startswith("features.") for k in sd):  # a full torchvision checkpoint
                sd = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
            return sd, str(file)
    looked = "\n  ".join(str(c) for r in spec.weights for c in candidate_paths(r, path))
    names = " or ".join(r.filename for r in spec.weights)
    raise SimlinkError(f"LPIPS {spec.name}: backbone weights ({names}) not found; looked at:\n  {looked}\n"
                       "Set $SIMLINK_WEIGHTS to the folder holding one of them, or copy it into one of these folders.")


def load_lpips(net: str = "alex", path: str | os.PathLike | None = None) -> LPIPS:
    """LPIPS v0.1 with its real weights, found as described in the module docstring (``path``: a
    folder or file looked at first). Raises :class:`SimlinkError` naming every path looked at."""
    if net not in BACKBONES:
        raise SimlinkError(f"LPIPS backbone {net!r} is not one of {', '.join(BACKBONES)}")
    spec = BACKBONES[net]
    features, file = _backbone_state(spec, path)
    linear_file = resolve_weights(spec.linear, path)
    model = LPIPS(net, features, load_state_dict(linear_file))
    model.weight_files = (file, str(linear_file))
    return model


def lpips_distance(model: LPIPS, originals: np.ndarray, recon: np.ndarray, batch_size: int = 16,
                   device: str = "cpu") -> np.ndarray:
    """``float64[N]`` LPIPS between ``uint8[N, H, W, 3]`` originals and reconstructions (mapped
    to [-1, 1] as ``x / 127.5 - 1``)."""
    a, b = np.asarray(originals), np.asarray(recon)
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"lpips: expected two uint8[N, H, W, 3] of one shape, got {a.shape} and {b.shape}")
    model = model.to(device)
    out: list[np.ndarray] = []
    with torch.no_grad():
        for i in range(0, len(a), batch_size):
            x, y = (torch.from_numpy(np.ascontiguousarray(v[i:i + batch_size])).to(device).permute(0, 3, 1, 2)
                    .float() / 127.5 - 1.0 for v in (a, b))
            out.append(model(x, y).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)

