"""TOSC-SR and its baselines RRD and RTD: a hyperprior / Gaussian-mixture learned image codec
with real range-coded bitstreams (Liu et al., "Task-Oriented Image Semantic Communication
Based on Rate-Distortion Theory").

Network (:class:`HyperpriorGMMCodec`, ``N`` = ``network.channels``, ``M`` = ``network.latent_channels``,
``K`` = ``network.mixtures``):

* semantic encoder g_a: three 5x5 stride-2 convolutions with GDN between them: image
  ``[B, 3, H, W]`` -> latent y ``[B, M, H/8, W/8]``;
* hyper-encoder h_a: 3x3 stride 1, 5x5 stride 2, 5x5 stride 2 with LeakyReLU:
  y -> hyper-latent z ``[B, N, H/32, W/32]``, coded with a factorised prior;
* hyper-decoder h_s (mirrored, upsampling by depth-to-space) -> per latent element the K mixture
  weights (softmax of logits), means and scales of a Gaussian mixture; the mixture integrated
  over [y - 1/2, y + 1/2] is the symbol probability;
* decoder g_s mirrors g_a: 5x5 convolutions + depth-to-space x2 with inverse GDN.

Images whose sides are not multiples of 32 are padded by edge replication and cropped back.

Training replaces rounding by additive U(-1/2, 1/2) noise for the rate terms and feeds the
decoder straight-through-rounded latents. Objectives (rate R in bits per pixel from the model's
likelihoods; D = MSE on the 0..255 scale, averaged over pixels and channels; CE = cross-entropy
in nats of the frozen receiver classifier F on the decoded image clipped to [0, 1]):

* ``tosc_sr``: L = R + lambda * D + beta * CE   (the paper's eq. 35; beta = 0.1 by default),
* ``rrd``:     L = R + lambda * D               (rate + pixel distortion),
* ``rtd``:     L = R + beta * CE                (rate + task distortion; beta is its rate knob).

Recipe (as in the paper): the codec is first pre-trained with the rrd objective (``train.pretrain``),
then fine-tuned with its own objective at a lower learning rate (``train.finetune``), classifier
frozen. rrd fine-tunes with rrd, so all three get the same number of steps; tosc_sr and rrd at
the same lambda share the pre-trained model. Every stage is cached by a hash of what trained it
(see :mod:`simlink.learned.cache`) and resumes from its checkpoint after an interruption.

Bitstream per image (one range-coded stream, :class:`~simlink.entropy.SymbolWriter`): the
hyper-latent symbols (factorised prior tables), then the latent symbols (mixture PMFs computed
from the decoded hyper-latent). Nothing else is sent: the image size is known to the receiver.
The mixture parameters are computed per image in float64 on the CPU by both the encoder and the
decoder, so they agree bit for bit whatever the batch or device of the rest of the network.

The network, objectives and coder live in :mod:`simlink.methods.tosc_sr_net` (torch); this module
(scenario entry, operating points, the method) imports without torch.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simlink.learned.settings import OptimSettings
from simlink.methods.base import DigitalPayload, ImageKeys, Method, MethodConfig, OperatingPoint, Reception, register_method

Objective = Literal["tosc_sr", "rrd", "rtd"]


# ----------------------------------------------------------------------------------- config
class NetworkConfig(BaseModel):
    """``network:`` — sizes of :class:`HyperpriorGMMCodec`."""

    model_config = ConfigDict(extra="forbid")
    channels: int = Field(64, ge=4, le=1024)
    latent_channels: int = Field(96, ge=4, le=1024)
    mixtures: int = Field(3, ge=1, le=8)


class TrainConfig(BaseModel):
    """``train:`` — data and the two optimisation stages (pre-training with MSE, fine-tuning)."""

    model_config = ConfigDict(extra="forbid")
    split: str = "train"
    n_images: int | None = Field(None, ge=2, description="first n images of the split; None = all")
    pretrain: OptimSettings = OptimSettings(epochs=10, lr=1e-4)
    finetune: OptimSettings = OptimSettings(epochs=5, lr=1e-5)
    checkpoint_every_s: float = Field(60.0, gt=0)


class LearnedCodecConfig(MethodConfig):
    """Scenario entry of ``tosc_sr``, ``rrd`` and ``rtd``.

    Attributes:
        lmbda: pixel-distortion weights, one operating point each (``tosc_sr``, ``rrd``).
        beta: task weight: a single value for ``tosc_sr`` (default 0.1), the list of operating
            points for ``rtd``; not used by ``rrd``.
        pretrain_lmbda: ``rtd`` only: the lambda of its MSE pre-training stage.
        network: network sizes.
        train: training data and optimiser settings.
        cache_dir: model cache folder (default ``$SIMLINK_CACHE`` or ``~/.cache/simlink``).
    """

    objective: ClassVar[Objective] = "tosc_sr"
    lmbda: list[float] | None = None
    beta: float | list[float] | None = None
    pretrain_lmbda: float = Field(0.01, gt=0)
    network: NetworkConfig = NetworkConfig()
    train: TrainConfig = TrainConfig()
    cache_dir: str | None = None

    @model_validator(mode="after")
    def _knobs(self):
        obj = self.objective
        lm = self.lmbda
        if obj in ("tosc_sr", "rrd"):
            if not lm:
                raise ValueError(f"lmbda: {obj} needs a non-empty list of lambda values (its rate knob), e.g. [0.003, 0.01, 0.03]")
            if any(v <= 0 for v in lm):
                raise ValueError(f"lmbda: every value must be > 0, got {lm}")
        elif lm is not None:
            raise ValueError("lmbda: rtd has no pixel distortion; give its operating points as 'beta: [...]'")
        if obj == "tosc_sr":
            if self.beta is None:
                self.beta = 0.1
            if isinstance(self.beta, list) or self.beta <= 0:
                raise ValueError(f"beta: tosc_sr takes one task weight > 0 (default 0.1), got {self.beta}")
        elif obj == "rrd":
            if self.beta is not None:
                raise ValueError("beta: rrd has no task term; remove 'beta' (or use tosc_sr / rtd)")
        else:
            b = self.beta
            if not isinstance(b, list) or not b or any(v <= 0 for v in b):
                raise ValueError(f"beta: rtd needs a non-empty list of task weights > 0 (its rate knob), got {b}")
        return self


class _TOSCConfig(LearnedCodecConfig):
    objective: ClassVar[Objective] = "tosc_sr"


class _RRDConfig(LearnedCodecConfig):
    objective: ClassVar[Objective] = "rrd"


class _RTDConfig(LearnedCodecConfig):
    objective: ClassVar[Objective] = "rtd"


# ----------------------------------------------------------------------------------- method
class LearnedCodec(Method):
    """Shared implementation of ``tosc_sr``, ``rrd`` and ``rtd`` (see module docstring)."""

    kind = "digital"
    Config = LearnedCodecConfig
    objective: ClassVar[Objective] = "tosc_sr"

    def __init__(self, config: LearnedCodecConfig) -> None:
        super().__init__(config)
        self._trained: dict = {}  # op label -> simlink.methods.tosc_sr_net.TrainedCodec
        self._report: list[dict] = []

    # ------------------------------------------------------------------ operating points
    def operating_points(self) -> list[OperatingPoint]:
        c = self.config
        if self.objective == "rtd":
            return [OperatingPoint(f"β={b:g}", {"beta": float(b), "lmbda": None}) for b in c.beta]
        beta = float(c.beta) if self.objective == "tosc_sr" else None
        return [OperatingPoint(f"λ={lm:g}", {"lmbda": float(lm), "beta": beta}) for lm in c.lmbda]

    # ------------------------------------------------------------------ training
    def build_network(self, seed: int):
        """A freshly initialised :class:`~simlink.methods.tosc_sr_net.HyperpriorGMMCodec` (weights
        from ``seed``, the global RNG untouched)."""
        import torch

        from simlink.methods.tosc_sr_net import HyperpriorGMMCodec

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return HyperpriorGMMCodec(**self.config.network.model_dump())

    def set_network(self, op: OperatingPoint, net, device: str = "cpu") -> None:
        """Code operating point ``op`` with the given network (e.g. weights trained elsewhere)
        instead of training it: :meth:`encode` / :meth:`decode` use it from now on."""
        from simlink.methods.tosc_sr_net import TrainedCodec

        self._trained[op.label] = TrainedCodec(net, str(device))

    def _stage_keys(self, op: OperatingPoint, ctx) -> tuple[dict, dict]:
        from simlink.hashing import module_fingerprint, stable_hash
        from simlink.learned.cache import CODE_VERSION

        c = self.config
        data = ctx.data_identity(c.train.split, c.train.n_images)
        pre_lmbda = op.params["lmbda"] if self.objective != "rtd" else c.pretrain_lmbda
        pre = {"stage": "pretrain", "objective": "rrd", "lmbda": pre_lmbda, "network": c.network.model_dump(),
               "optim": c.train.pretrain.model_dump(), "data": data, "seed": ctx.seed, "code": CODE_VERSION}
        fine = {"stage": "finetune", "parent": stable_hash(pre), "objective": self.objective,
                "lmbda": op.params["lmbda"], "beta": op.params["beta"], "optim": c.train.finetune.model_dump(),
                "code": CODE_VERSION}
        if self.objective != "rrd":
            fine["task"] = module_fingerprint(ctx.task.net) if ctx.task is not None else None
        return pre, fine

    def _stage(self, name: str, key: dict, optim: OptimSettings, net, ctx):
        """The cached training stage ``key`` (its ``objective``, ``lmbda``, ``beta``) of ``net``."""
        from simlink.learned.trainer import LossStep, Stage
        from simlink.methods.tosc_sr_net import objective_loss

        c = self.config
        objective, lmbda, beta = key["objective"], key["lmbda"], key.get("beta")

        def make_step():
            task_net = None
            if objective != "rrd":
                task_net = ctx.frozen_task_net(f"{c.display_name} (objective {objective!r})",
                                               c.train.split, c.train.n_images)
            return LossStep(net, objective_loss(objective, lmbda or 0.0, beta or 0.0, task_net), optim)

        return Stage(name, key, optim, make_step)

    def fit(self, ctx) -> None:
        """Train (or load from the cache) the model of every operating point: pre-training with
        the rrd objective, then fine-tuning with the method's own (one cached, resumable stage
        each, :func:`simlink.learned.trainer.train_stages`).

        ``ctx``: :class:`simlink.learned.context.TrainingContext`.
        """
        from simlink.learned.trainer import train_stages

        c = self.config
        for op in self.operating_points():
            if op.label in self._trained:
                continue
            pre_key, fine_key = self._stage_keys(op, ctx)
            net = self.build_network(ctx.seed)
            stages = [self._stage("pretrain", pre_key, c.train.pretrain, net, ctx),
                      self._stage("finetune", fine_key, c.train.finetune, net, ctx)]
            report = train_stages(
                "tosc_sr", {"net": net}, stages, ctx, op_label=op.label, cache_root=c.cache_dir or ctx.cache_root,
                split=c.train.split, n_images=c.train.n_images, checkpoint_every_s=c.train.checkpoint_every_s,
                describe=f"{c.display_name} {op.label} ({self.objective})")
            self.set_network(op, net, str(ctx.device))
            self._report.append(report)

    def training_report(self) -> list[dict]:
        return list(self._report)

    def _model(self, op: OperatingPoint):
        if op.label not in self._trained:
            raise self.not_trained(op)
        return self._trained[op.label]

    # ------------------------------------------------------------------ coding
    def encode(self, images: np.ndarray, op: OperatingPoint, keys: ImageKeys | None = None) -> DigitalPayload:
        """Range-code ``uint8[N, H, W, 3]`` images; one stream per image (module docstring)."""
        from simlink.methods.tosc_sr_net import encode_streams

        return DigitalPayload(encode_streams(self._model(op), images), meta={})

    def latents(self, images: np.ndarray, op: OperatingPoint) -> np.ndarray:
        """``float32[N, M * H/8 * W/8]``: the quantised latent ``round(g_a(x))`` that is range-coded."""
        from simlink.methods.tosc_sr_net import quantised_latents

        return quantised_latents(self._model(op), images)

    def decode(self, payload: DigitalPayload, op: OperatingPoint, image_shape: tuple[int, int, int],
               keys: ImageKeys | None = None) -> Reception:
        """Decode every stream; a stream the range decoder rejects gives ``ok = False``."""
        from simlink.methods.tosc_sr_net import decode_streams

        images, ok = decode_streams(self._model(op), payload.streams, image_shape)
        return Reception(images, ok)


@register_method
class ToscSR(LearnedCodec):
    name = "tosc_sr"
    Config = _TOSCConfig
    objective = "tosc_sr"
    description = "TOSC-SR learned codec: rate + λ·MSE + β·CE (hyperprior, Gaussian mixture), range coded"


@register_method
class RRD(LearnedCodec):
    name = "rrd"
    Config = _RRDConfig
    objective = "rrd"
    description = "TOSC-SR network trained for rate + λ·MSE only (RRD baseline), range coded"


@register_method
class RTD(LearnedCodec):
    name = "rtd"
    Config = _RTDConfig
    objective = "rtd"
    description = "TOSC-SR network trained for rate + β·CE only (RTD baseline), range coded"
