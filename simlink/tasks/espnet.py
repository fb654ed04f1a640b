"""ESPNet (Mehta et al., ECCV 2018): a light semantic-segmentation network built from
*efficient spatial pyramid* (ESP) blocks, with parameter names that match the authors' CamVid
checkpoint ``espnet_p_2_q_8_camvid.pth`` (``sacmehta/ESPNet``, class ``ESPNet`` of
``train/Model.py``), so that file loads with ``strict=True``.

Structure (``K`` outputs, depth multipliers ``p`` and ``q``; sizes for an ``H x W`` input):

* encoder (``encoder.``): a strided 3x3 conv (16 ch, ``H/2``) concatenated with the input image
  average-pooled to ``H/2`` (19 ch); a strided ESP block to 64 ch at ``H/4`` followed by ``p``
  residual ESP blocks, concatenated with the first block's output and the image pooled to ``H/4``
  (131 ch); a strided ESP block to 128 ch at ``H/8`` followed by ``q`` residual ESP blocks,
  concatenated with the first (256 ch); a 1x1 conv to ``K`` scores at ``H/8``;
* decoder: the ``H/8`` scores are upsampled by a 2x2 transposed conv, merged with a 1x1
  projection of the 131-ch ``H/4`` features through an ESP block, upsampled again, merged with
  the 19-ch ``H/2`` features by a 3x3 conv, and a last transposed conv gives ``K`` logits at
  ``H x W``. Every batch norm uses ``eps=1e-3``; every activation is a per-channel PReLU.

Inputs are normalised as in the authors' training code (:class:`ESPNetInput`); the CamVid model
has 12 outputs, the 11 CamVid classes and void (11), which is never predicted.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn as nn

from simlink.tasks.classifier import register_architecture
from simlink.tasks.loading import PRETRAINED
from simlink.tasks.weights import WeightsRecord, load_state_dict, resolve_weights

if TYPE_CHECKING:
    from simlink.tasks.segmenter import SegmentationModel

__all__ = [
    "AvgPoolPyramid", "BNPReLU", "CAMVID_MEAN_BGR", "CAMVID_STD_BGR", "ConvBNPReLU", "ESPBlock",
    "ESPNET_CAMVID", "ESPNet", "ESPNetEncoder", "ESPNetInput", "ESPNetSegmenter", "PlainConv",
    "StridedESPBlock", "espnet_segmenter", "load_espnet_camvid", "load_espnet_camvid_net",
]

#: Per-channel mean of the CamVid training images, **BGR** order, 0-255 units (per-image channel
#: means of ``camvid/train.npz`` averaged over images, the authors' ``loadData.py`` recipe; the
#: values used for the published model were never released).
CAMVID_MEAN_BGR = (110.257, 108.362, 104.991)
#: Per-channel standard deviation, same recipe and units as :data:`CAMVID_MEAN_BGR`.
CAMVID_STD_BGR = (72.064, 72.652, 69.853)

#: Batch-norm epsilon of every ESPNet layer (the checkpoint was trained with it).
BN_EPS = 1e-3

ESPNET_CAMVID = WeightsRecord(
    name="espnet_camvid",
    filename="espnet_p_2_q_8_camvid.pth",
    sha256="7d354a257170322086dcd4c1e89a482454cf2c9d30b085e70883878dd59301af",
    num_classes=11,
    # WeightsRecord's mean/std are RGB in [0, 1] units: these are CAMVID_MEAN_BGR / CAMVID_STD_BGR
    # reordered to RGB and divided by 255. They are the dataset statistics only: ESPNet's input
    # is not (x - mean) / std but that divided by 255 once more (see ESPNetInput and meta).
    mean=tuple(round(v / 255.0, 6) for v in CAMVID_MEAN_BGR[::-1]),
    std=tuple(round(v / 255.0, 6) for v in CAMVID_STD_BGR[::-1]),
    meta={
        "source": "https://github.com/sacmehta/ESPNet",
        "commit": "afe71c38edaee3514ca44e0adcafdf36109bf437",
        "path": "pretrained/decoder/espnet_p_2_q_8_camvid.pth",
        "architecture": "ESPNet(classes=12, p=2, q=8) of train/Model.py",
        "licence": "MIT (Sachin Mehta)",
        "dataset": "camvid",
        "reported_miou": 55.64,
        "reported_class_acc": 68.30,
        "mean_bgr_255": list(CAMVID_MEAN_BGR),
        "std_bgr_255": list(CAMVID_STD_BGR),
        "input": "BGR, 0-255 floats, (x - mean_bgr_255) / std_bgr_255 / 255; H and W multiples of 8; "
                 "trained at 360x480",
        "outputs": "12 = 11 CamVid classes + void (11); the void output is never predicted",
    },
)


# ---------------------------------------------------------------------- building blocks
class PlainConv(nn.Module):
    """A bias-free square convolution with "same" padding (scaled by the dilation).

    Input ``float32[N, in_ch, H, W]``; output ``float32[N, out_ch, ceil(H/stride), ceil(W/stride)]``
    (odd ``kernel``). The weight lives under ``conv.``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        pad = (kernel - 1) // 2 * dilation
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad, dilation=dilation, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class BNPReLU(nn.Module):
    """Batch norm (``eps=1e-3``) then a per-channel PReLU; ``float32[N, ch, H, W]`` in and out.
    Submodules ``bn`` and ``act``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, eps=BN_EPS)
        self.act = nn.PReLU(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class ConvBNPReLU(nn.Module):
    """Bias-free square conv ("same" padding), batch norm (``eps=1e-3``), per-channel PReLU.

    Input ``float32[N, in_ch, H, W]``; output ``float32[N, out_ch, H/stride, W/stride]``.
    Submodules ``conv``, ``bn``, ``act``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


#: Dilation rates of the five parallel branches of an ESP block, as submodule names ``d<rate>``.
ESP_DILATIONS = (1, 2, 4, 8, 16)


class _SpatialPyramid(nn.Module):
    """Shared part of the ESP blocks: reduce with ``c1``, run five parallel 3x3 convs with
    dilations 1, 2, 4, 8, 16 (``d1`` ... ``d16``) on the reduced map, and merge them.

    The channel budget ``out_ch`` is split as ``n = out_ch // 5`` per branch, the remainder going
    to the dilation-1 branch (``out_ch - 4 n`` channels). Merging adds the outputs of the dilated
    branches hierarchically (``d2``, ``d2+d4``, ``d2+d4+d8``, ``d2+d4+d8+d16``: this removes the
    gridding artefacts of large dilations) and concatenates ``[d1, sums...]`` to ``out_ch`` channels.
    With fewer than 5 output channels (a decoder for fewer than 5 classes) only the first
    ``out_ch`` branches exist (dilations ``1 .. 2**(out_ch-1)``, one channel each): our extension,
    the authors' layout is unchanged for ``out_ch >= 5``.
    """

    def __init__(self, in_ch: int, out_ch: int, reduce_kernel: int, reduce_stride: int) -> None:
        super().__init__()
        if out_ch < 1:
            raise ValueError(f"an ESP block needs at least 1 output channel, got {out_ch}")
        self.rates = ESP_DILATIONS[:min(len(ESP_DILATIONS), out_ch)]
        n = out_ch // len(self.rates)
        self.c1 = PlainConv(in_ch, n, reduce_kernel, stride=reduce_stride)
        for rate in self.rates:
            width = out_ch - (len(self.rates) - 1) * n if rate == 1 else n
            self.add_module(f"d{rate}", PlainConv(n, width, 3, dilation=rate))

    def pyramid(self, x: torch.Tensor) -> torch.Tensor:
        """``float32[N, in_ch, H, W]`` -> merged branches ``float32[N, out_ch, H', W']``."""
        reduced = self.c1(x)
        merged = [self.d1(reduced)]
        running = None
        for rate in self.rates[1:]:
            branch = getattr(self, f"d{rate}")(reduced)
            running = branch if running is None else running + branch
            merged.append(running)
        return torch.cat(merged, dim=1)


class StridedESPBlock(_SpatialPyramid):
    """Down-sampling ESP block (the first block of each encoder level).

    Input ``float32[N, in_ch, H, W]`` (``H``, ``W`` even); output ``float32[N, out_ch, H/2, W/2]``.
    The reduction ``c1`` is a strided 3x3 conv, the merged pyramid goes through batch norm
    (``bn``) and PReLU (``act``); there is no residual connection.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(in_ch, out_ch, reduce_kernel=3, reduce_stride=2)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.pyramid(x)))


class ESPBlock(_SpatialPyramid):
    """ESP block at constant resolution: reduce (1x1 conv ``c1``), split into the dilated
    pyramid, merge, optionally add the input (``residual``, needs ``in_ch == out_ch``), then
    batch norm + PReLU (``bn``, a :class:`BNPReLU`).

    Input ``float32[N, in_ch, H, W]``; output ``float32[N, out_ch, H, W]``.
    """

    def __init__(self, in_ch: int, out_ch: int, residual: bool = True) -> None:
        if residual and in_ch != out_ch:
            raise ValueError(f"a residual ESP block needs in_ch == out_ch, got {in_ch} and {out_ch}")
        super().__init__(in_ch, out_ch, reduce_kernel=1, reduce_stride=1)
        self.bn = BNPReLU(out_ch)
        self.residual = bool(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pyramid(x)
        if self.residual:
            y = y + x
        return self.bn(y)


class AvgPoolPyramid(nn.Module):
    """The input image shrunk by ``2**times`` with repeated 3x3 / stride-2 average pooling
    (padding 1, zero padding counted in the average).

    Input ``float32[N, C, H, W]``; output ``float32[N, C, H / 2**times, W / 2**times]`` (for ``H``,
    ``W`` multiples of ``2**times``). No parameters; the pools sit in ``pool`` (a ModuleList).
    """

    def __init__(self, times: int) -> None:
        super().__init__()
        self.pool = nn.ModuleList(nn.AvgPool2d(3, stride=2, padding=1) for _ in range(times))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for pool in self.pool:
            x = pool(x)
        return x


# ---------------------------------------------------------------------- networks
class ESPNetEncoder(nn.Module):
    """ESPNet-C, the encoder: ``float32[N, 3, H, W]`` -> ``float32[N, num_outputs, H/8, W/8]``
    scores (:meth:`forward`); :meth:`features` returns the three multi-scale feature maps the
    decoder uses. ``p`` / ``q``: the number of residual ESP blocks at ``H/4`` / ``H/8``."""

    def __init__(self, num_outputs: int, p: int, q: int) -> None:
        super().__init__()
        self.level1 = ConvBNPReLU(3, 16, 3, stride=2)
        self.sample1 = AvgPoolPyramid(1)
        self.sample2 = AvgPoolPyramid(2)
        self.b1 = BNPReLU(16 + 3)
        self.level2_0 = StridedESPBlock(16 + 3, 64)
        self.level2 = nn.ModuleList(ESPBlock(64, 64) for _ in range(p))
        self.b2 = BNPReLU(128 + 3)
        self.level3_0 = StridedESPBlock(128 + 3, 128)
        self.level3 = nn.ModuleList(ESPBlock(128, 128) for _ in range(q))
        self.b3 = BNPReLU(256)
        self.classifier = PlainConv(256, num_outputs, 1)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(f2, f4, f8)``: ``float32[N, 19, H/2, W/2]``, ``[N, 131, H/4, W/4]``, ``[N, 256, H/8, W/8]``.

        Each is a level's output concatenated with (``f2``, ``f4``) the input image pooled to that
        scale and (``f4``, ``f8``) the output of the level's first (down-sampling) block, then
        batch norm + PReLU.
        """
        f2 = self.b1(torch.cat([self.level1(x), self.sample1(x)], dim=1))
        down4 = self.level2_0(f2)
        y = down4
        for block in self.level2:
            y = block(y)
        f4 = self.b2(torch.cat([y, down4, self.sample2(x)], dim=1))
        down8 = self.level3_0(f4)
        y = down8
        for block in self.level3:
            y = block(y)
        f8 = self.b3(torch.cat([down8, y], dim=1))
        return f2, f4, f8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)[2])


def _upsample2x(ch: int) -> nn.ConvTranspose2d:
    """A bias-free 2x2 / stride-2 transposed conv: ``[N, ch, h, w]`` -> ``[N, ch, 2h, 2w]``."""
    return nn.ConvTranspose2d(ch, ch, 2, stride=2, padding=0, output_padding=0, bias=False)


class ESPNet(nn.Module):
    """ESPNet with its light decoder (the paper's full model, ``ESPNet(classes, p, q)``).

    Input: ``float32[N, 3, H, W]``, already normalised (see :class:`ESPNetInput`); ``H`` and
    ``W`` positive multiples of 8. Output: ``float32[N, num_outputs, H, W]`` logits.

    The decoder works in the ``num_outputs``-channel score space: the encoder's ``H/8`` scores
    (batch norm ``br``, transposed conv ``up_l3``) are concatenated after a 1x1 projection of the
    ``H/4`` features (``level3_C``) and merged by batch norm + PReLU and a non-residual ESP block
    (``combine_l2_l3``), upsampled (``up_l2``), concatenated with the ``H/2`` features before a
    3x3 conv + BN + PReLU (``conv``) and upsampled to full size (``classifier``).

    Raises:
        ValueError: (forward) the input is not ``[N, 3, H, W]`` with ``H``, ``W`` multiples of 8.
    """

    size_multiple = 8

    def __init__(self, num_outputs: int = 12, p: int = 2, q: int = 8) -> None:
        super().__init__()
        k = int(num_outputs)
        if k < 1 or p < 0 or q < 0:
            raise ValueError(f"ESPNet needs num_outputs >= 1 and p, q >= 0, got {num_outputs}, {p}, {q}")
        self.num_outputs, self.p, self.q = k, int(p), int(q)
        self.encoder = ESPNetEncoder(k, self.p, self.q)
        self.level3_C = PlainConv(128 + 3, k, 1)
        self.br = nn.BatchNorm2d(k, eps=BN_EPS)
        self.conv = ConvBNPReLU(19 + k, k, 3)
        self.up_l3 = nn.Sequential(_upsample2x(k))
        self.combine_l2_l3 = nn.Sequential(BNPReLU(2 * k), ESPBlock(2 * k, k, residual=False))
        self.up_l2 = nn.Sequential(_upsample2x(k), BNPReLU(k))
        self.classifier = _upsample2x(k)
        init_espnet_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ESPNet expects float[N, 3, H, W], got shape {list(x.shape)}")
        h, w = x.shape[-2:]
        if h % 8 or w % 8 or h == 0 or w == 0:
            raise ValueError(f"ESPNet needs H and W to be multiples of 8, got {h}x{w} (HxW)")
        f2, f4, f8 = self.encoder.features(x)
        s8 = self.up_l3(self.br(self.encoder.classifier(f8)))
        s4 = self.up_l2(self.combine_l2_l3(torch.cat([self.level3_C(f4), s8], dim=1)))
        s2 = self.conv(torch.cat([s4, f2], dim=1))
        return self.classifier(s2)


def init_espnet_(net: nn.Module) -> nn.Module:
    """Initialise an ESPNet for training from scratch, in place.

    Convolutions: He-normal for the PReLU slope 0.25 on the fan-in. Transposed 2x2 / stride-2
    convolutions: each output pixel sees exactly one tap per input channel, so the fan-in is the
    number of input channels; He-normal on that, except the final (linear) one, gain 1. Batch
    norms: weight 1, bias 0; PReLU slopes keep PyTorch's 0.25.
    """
    gain = nn.init.calculate_gain("leaky_relu", 0.25)
    last = getattr(net, "classifier", None)
    for m in net.modules():
        if isinstance(m, nn.ConvTranspose2d):
            g = 1.0 if m is last else gain
            nn.init.normal_(m.weight, 0.0, g / m.weight.shape[0] ** 0.5)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0.25, mode="fan_in", nonlinearity="leaky_relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


class ESPNetInput(nn.Module):
    """The input normalisation of the authors' training code, as a differentiable module.

    Input: ``float32[N, 3, H, W]`` RGB in [0, 1]. Output: ``float32[N, 3, H, W]`` network input:
    the channels reordered to BGR, scaled to 0-255, normalised with ``(x - mean_bgr) / std_bgr``
    and then divided by 255 (their ``ToTensor`` divides the already-normalised image by 255).
    ``mean_bgr`` / ``std_bgr``: 3 values each, BGR order, 0-255 units; kept as buffers
    ``mean`` and ``std`` (``float32[1, 3, 1, 1]``).
    """

    def __init__(self, mean_bgr: Sequence[float] = CAMVID_MEAN_BGR, std_bgr: Sequence[float] = CAMVID_STD_BGR) -> None:
        super().__init__()
        mean, std = [float(v) for v in mean_bgr], [float(v) for v in std_bgr]
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean_bgr and std_bgr need 3 values each (std > 0), got {mean_bgr}, {std_bgr}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bgr = x.flip(1) * 255.0
        return (bgr - self.mean) / self.std / 255.0


class ESPNetSegmenter(nn.Module):
    """Normalisation plus ESPNet: ``float32[N, 3, H, W]`` RGB in [0, 1] (``H``, ``W`` multiples
    of 8) -> ``float32[N, num_outputs, H, W]`` logits. Submodules ``normalize``
    (:class:`ESPNetInput`) and ``net`` (:class:`ESPNet`)."""

    size_multiple = 8

    def __init__(self, normalize: ESPNetInput, net: ESPNet) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


@register_architecture("espnet")
def espnet_segmenter(num_outputs: int = 12, p: int = 2, q: int = 8,
                     mean_bgr: Sequence[float] = CAMVID_MEAN_BGR,
                     std_bgr: Sequence[float] = CAMVID_STD_BGR) -> ESPNetSegmenter:
    """An ESPNet segmenter with fresh random weights (:class:`ESPNetSegmenter`): input RGB in
    [0, 1], normalised inside as in the authors' code (BGR statistics in 0-255 units)."""
    return ESPNetSegmenter(ESPNetInput(mean_bgr, std_bgr), ESPNet(num_outputs, p, q))


# ---------------------------------------------------------------------- pretrained CamVid model
#: Architecture keyword arguments of the CamVid checkpoint (plain data, for ``arch_kwargs``).
ESPNET_CAMVID_KWARGS = {"num_outputs": 12, "p": 2, "q": 8,
                        "mean_bgr": list(CAMVID_MEAN_BGR), "std_bgr": list(CAMVID_STD_BGR)}


def _load_camvid(path: str | os.PathLike | None):
    file = resolve_weights(ESPNET_CAMVID, path)  # verifies the sha256
    model = espnet_segmenter(**ESPNET_CAMVID_KWARGS)
    state = {f"net.{k}": v for k, v in load_state_dict(file).items()}
    # the normalisation buffers are ours, not the checkpoint's
    state.update({f"normalize.{k}": v for k, v in model.normalize.state_dict().items()})
    model.load_state_dict(state, strict=True)
    return model.eval(), file


def load_espnet_camvid_net(path: str | os.PathLike | None = None) -> ESPNetSegmenter:
    """The pretrained CamVid ESPNet (``p=2, q=8``, 12 outputs) as an :class:`ESPNetSegmenter`
    in eval mode on CPU.

    ``path``: the checkpoint file (or its folder); otherwise searched as in
    :func:`simlink.tasks.weights.resolve_weights`. The file's full SHA-256 is verified.

    Raises:
        SimlinkError: the file is missing or its checksum does not match.
    """
    return _load_camvid(path)[0]


@PRETRAINED.register("espnet_camvid")
def load_espnet_camvid(path: str | os.PathLike | None = None) -> "SegmentationModel":
    """The pretrained CamVid ESPNet as a frozen :class:`~simlink.tasks.segmenter.SegmentationModel`
    (11 CamVid classes; output 11, void, is never predicted; sizes padded to multiples of 8)."""
    from simlink.data.loaders.camvid import CLASSES as CAMVID_CLASSES
    from simlink.tasks.segmenter import SegmentationModel  # here: segmenter imports the registries' users

    net, file = _load_camvid(path)
    model = SegmentationModel(net, "espnet", dict(ESPNET_CAMVID_KWARGS), list(CAMVID_CLASSES),
                              meta={"weights": ESPNET_CAMVID.name, "weights_file": str(file)})
    return model.freeze()
