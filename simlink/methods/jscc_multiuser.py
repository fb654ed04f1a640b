"""Multi-user analog deep JSCC for joint classification and reconstruction (Tillmann et al.,
"Semantic Communication for Task Execution and Data Reconstruction in Multi-User Scenarios").

Setting: each image is cut into a ``g x g`` grid of non-overlapping patches, ``U = g^2`` users
(default 4: the quarters of a CIFAR-10 image, 16x16x3 each). Every user encodes its patch
independently into ``S`` complex channel symbols (``channel_uses``, default 50) with average power
1 per channel use; the users' symbols cross the analog link (:mod:`simlink.phy.analog`) and one
receiver decodes the concatenation of all users' received symbols twice: into the image and into
class logits. No bits, no LDPC: the analog link's channel uses per image are ``U * S``.

Networks (``w`` = ``network.width``, ``F`` = ``network.hidden``):

* user encoder (ResNet14-style): 3x3 conv ``3 -> w`` + BN + ReLU, six residual blocks in three
  stages (``w``, ``2w`` stride 2, ``4w`` stride 2), a fully connected layer to ``2S`` reals,
  pairing into ``S`` complex symbols and power normalisation. One encoder per user, or one shared
  by all (``network.shared_encoder``);
* reconstruction decoder: two fully connected layers (``2US -> F -> 4w * H/4 * W/4``), a residual
  block, two transposed residual blocks (x2 upsampling each), a residual block and a 3x3
  transposed convolution to RGB with a sigmoid;
* classification decoder: three fully connected layers ``2US -> F -> F/2 -> classes``.

Training (their eq. 19), images in [0, 1]::

    L = alpha * [(1 - beta) * MSE + beta * (1 - SSIM)] + (1 - alpha) * CE

end to end through the differentiable channel (``train.channel``, Es/N0 ``train.snr_db`` fixed or
drawn uniformly in dB per image from a range); then the encoders are frozen and both decoders are
trained again with ``[(1 - beta) * MSE + beta * (1 - SSIM)] + CE`` (stage ``decoders``), so that
``alpha = 0`` and ``alpha = 1`` also get both decoders. SSIM is ``pytorch_msssim.ssim`` (11x11
Gaussian window). Both stages are cached and resumable like every learned model
(:mod:`simlink.learned`). The operating points are the ``(alpha, beta)`` pairs.

At the receiver the classification head gives the task decision directly: its logits are the
reception's ``class_logits`` output, which the classification task kind scores as ``accuracy``;
a scenario's frozen task model, when named, also scores the reconstruction (``recon_accuracy``).

The networks and the loss live in :mod:`simlink.methods.jscc_multiuser_net` (torch); this module
(scenario entry, operating points, the method) imports without torch.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simlink.errors import SimlinkError
from simlink.learned.settings import OptimSettings
from simlink.methods.base import AnalogPayload, ImageKeys, Method, MethodConfig, OperatingPoint, Reception, register_method
from simlink.phy.channels import AWGNChannel, ChannelConfig


# ----------------------------------------------------------------------------------- config
class JSCCNetworkConfig(BaseModel):
    """``network:`` — sizes of :class:`MultiUserJSCCNet`."""

    model_config = ConfigDict(extra="forbid")
    width: int = Field(16, ge=2, le=512, description="base channels w of the residual stages (w, 2w, 4w)")
    hidden: int = Field(512, ge=8, le=8192, description="width of the fully connected layers")
    shared_encoder: bool = False


class JSCCTrainConfig(BaseModel):
    """``train:`` — data, channel and the two stages (end to end, then decoders only)."""

    model_config = ConfigDict(extra="forbid")
    split: str = "train"
    n_images: int | None = Field(None, ge=2, description="first n images of the split; None = all")
    snr_db: float | tuple[float, float] = Field(3.0, description="training Es/N0 (dB): fixed, or [low, high] per image")
    channel: ChannelConfig = AWGNChannel()
    joint: OptimSettings = OptimSettings(epochs=300, batch_size=32, lr=1e-4)
    decoders: OptimSettings = OptimSettings(epochs=300, batch_size=32, lr=1e-4)
    checkpoint_every_s: float = Field(60.0, gt=0)

    @field_validator("snr_db")
    @classmethod
    def _range(cls, v):
        if isinstance(v, tuple) and not v[0] < v[1]:
            raise ValueError(f"a range [low, high] needs low < high, got {list(v)}")
        return v


class AlphaBeta(BaseModel):
    """One operating point: loss weights ``alpha`` (reconstruction vs task) and ``beta`` (SSIM vs MSE)."""

    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(ge=0.0, le=1.0)
    beta: float = Field(ge=0.0, le=1.0)


class JSCCConfig(MethodConfig):
    """Scenario entry of ``jscc_multiuser``.

    Attributes:
        users: number of users ``U`` (a square number); each sees one patch of a ``sqrt(U) x sqrt(U)`` grid.
        channel_uses: complex channel uses per user and image ``S``.
        alpha, beta: the operating points are every ``(alpha, beta)`` pair of these lists ...
        points: ... or exactly these ``{alpha, beta}`` pairs.
        network: network sizes; train: data, channel and optimiser settings.
        cache_dir: model cache folder (default ``$SIMLINK_CACHE`` or ``~/.cache/simlink``).
    """

    users: int = Field(4, ge=1, le=256)
    channel_uses: int = Field(50, ge=1, le=100_000)
    alpha: list[float] = [0.9]
    beta: list[float] = [0.0]
    points: list[AlphaBeta] | None = None
    network: JSCCNetworkConfig = JSCCNetworkConfig()
    train: JSCCTrainConfig = JSCCTrainConfig()
    cache_dir: str | None = None

    @model_validator(mode="after")
    def _check(self):
        if math.isqrt(self.users) ** 2 != self.users:
            raise ValueError(f"users: must be a square number (1, 4, 9, 16, ...) so the image splits into a grid, got {self.users}")
        for name in ("alpha", "beta"):
            vals = getattr(self, name)
            if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
                raise ValueError(f"{name}: needs a non-empty list of values in [0, 1], got {vals}")
        return self

    def pairs(self) -> list[tuple[float, float]]:
        """The ``(alpha, beta)`` operating points in scenario order."""
        if self.points is not None:
            return [(p.alpha, p.beta) for p in self.points]
        return [(a, b) for b, a in itertools.product(self.beta, self.alpha)]


# ----------------------------------------------------------------------------------- method
@register_method
class MultiUserJSCC(Method):
    """``jscc_multiuser``: analog multi-user deep JSCC with classification and reconstruction heads."""

    name = "jscc_multiuser"
    kind = "analog"
    Config = JSCCConfig
    description = "analog multi-user deep JSCC, joint classification + reconstruction (Tillmann et al.); knob alpha, beta"

    def __init__(self, config: JSCCConfig) -> None:
        super().__init__(config)
        self._nets: dict = {}  # op label -> MultiUserJSCCNet
        self._device = "cpu"
        self._report: list[dict] = []

    def operating_points(self) -> list[OperatingPoint]:
        return [OperatingPoint(f"α={a:g} β={b:g}", {"alpha": float(a), "beta": float(b)}) for a, b in self.config.pairs()]

    # ------------------------------------------------------------------ training
    def build_network(self, seed: int, shape: tuple[int, int], num_classes: int):
        """A freshly initialised :class:`~simlink.methods.jscc_multiuser_net.MultiUserJSCCNet`."""
        import torch

        from simlink.methods.jscc_multiuser_net import MultiUserJSCCNet

        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return MultiUserJSCCNet(shape, c.users, c.channel_uses, num_classes, **c.network.model_dump())

    def fit(self, ctx) -> None:
        """Train (or load from the cache) the network of every operating point: the joint stage
        end to end through the channel, then the decoders with frozen encoders (one cached,
        resumable stage each, :func:`simlink.learned.trainer.train_stages`); ``ctx`` is a
        :class:`simlink.learned.context.TrainingContext`."""
        from simlink.hashing import stable_hash
        from simlink.learned.cache import CODE_VERSION
        from simlink.learned.trainer import LossStep, Stage, train_stages
        from simlink.methods.jscc_multiuser_net import jscc_loss
        from simlink.phy.analog import AnalogLink

        c = self.config
        train = ctx.train_images(c.train.split, c.train.n_images)
        if train.labels is None:
            raise SimlinkError(f"{c.display_name}: training set {train.name}/{c.train.split} has no class labels")
        num_classes = len(train.classes) or int(train.labels.max()) + 1
        shape = train.image_shape[:2]
        link = AnalogLink(ctx.device)
        data = ctx.data_identity(c.train.split, c.train.n_images)
        t = c.train
        common = {"users": c.users, "channel_uses": c.channel_uses, "network": c.network.model_dump(),
                  "classes": num_classes, "data": data, "seed": ctx.seed, "code": CODE_VERSION,
                  "snr_db": t.snr_db, "channel": t.channel.model_dump()}
        for op in self.operating_points():
            if op.label in self._nets:
                continue
            alpha, beta = op.params["alpha"], op.params["beta"]
            k_joint = {**common, "stage": "joint", "alpha": alpha, "beta": beta, "optim": t.joint.model_dump()}
            k_dec = {"stage": "decoders", "parent": stable_hash(k_joint), "beta": beta,
                     "optim": t.decoders.model_dump(), "code": CODE_VERSION}
            net = self.build_network(ctx.seed, shape, num_classes)

            def step(stage: str, optim: OptimSettings, net=net, alpha=alpha, beta=beta):
                return lambda: LossStep(net, jscc_loss(alpha, beta, stage, link, t.channel, t.snr_db), optim)

            stages = [Stage("joint", k_joint, t.joint, step("joint", t.joint)),
                      Stage("decoders", k_dec, t.decoders, step("decoders", t.decoders), prepare=net.freeze_encoders)]
            report = train_stages(
                "jscc_multiuser", {"net": net}, stages, ctx, op_label=op.label, cache_root=c.cache_dir or ctx.cache_root,
                split=t.split, n_images=t.n_images, checkpoint_every_s=t.checkpoint_every_s,
                describe=f"{c.display_name} {op.label}")
            net.freeze_encoders()
            self._nets[op.label] = net.to(ctx.device).eval()
            self._device = str(ctx.device)
            self._report.append(report)

    def training_report(self) -> list[dict]:
        return list(self._report)

    def _net(self, op: OperatingPoint):
        if op.label not in self._nets:
            raise self.not_trained(op)
        return self._nets[op.label]

    # ------------------------------------------------------------------ transmitter / receiver
    def encode(self, images: np.ndarray, op: OperatingPoint, keys: ImageKeys | None = None) -> AnalogPayload:
        """``uint8[N, H, W, 3]`` -> :class:`AnalogPayload` with ``complex64[N, U, S]`` symbols."""
        from simlink.methods.jscc_multiuser_net import encode_images

        return AnalogPayload(symbols=encode_images(self._net(op), images, self._device))

    def decode(self, payload: AnalogPayload, op: OperatingPoint, image_shape: tuple[int, int, int],
               keys: ImageKeys | None = None) -> Reception:
        """Received symbols -> :class:`Reception`: the reconstructions (``ok`` all True: an analog
        receiver always produces an image) and the classification head's ``class_logits``
        ``float32[N, C]``; both decoders run once."""
        from simlink.methods.jscc_multiuser_net import decode_symbols

        images, logits = decode_symbols(self._net(op), payload.symbols, self._device)
        return Reception(images, np.ones(len(images), dtype=bool), {"class_logits": logits})

    def latents(self, images: np.ndarray, op: OperatingPoint) -> np.ndarray:
        """``float32[N, 2 U S]``: real and imaginary parts of the transmitted symbols."""
        from simlink.phy.analog import complex_to_real

        s = self.encode(images, op).symbols
        return complex_to_real(s).flatten(1).cpu().numpy()
