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
"""

from __future__ import annotations

import copy
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from simlink.entropy import GDN, FactorizedPrior, GaussianMixtureConditional, SymbolReader, SymbolWriter, add_noise
from simlink.entropy.factorized import PmfTables
from simlink.errors import DecodeError, SimlinkError
from simlink.learned import (
    CODE_VERSION,
    ModelCache,
    OptimSettings,
    fingerprint,
    module_fingerprint,
    stages_report,
    train_or_load,
)
from simlink.methods.base import DigitalPayload, Method, MethodConfig, OperatingPoint, register_method
from simlink.tasks.classifier import images_to_tensor, tensor_to_images

PAD_MULTIPLE = 32  # g_a halves three times, h_a twice


# ----------------------------------------------------------------------------------- network
def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class _Up(nn.Sequential):
    """Upsample x2 by depth-to-space: ``k x k`` conv to ``4 * cout`` channels, then PixelShuffle(2)."""

    def __init__(self, cin: int, cout: int, k: int = 5) -> None:
        super().__init__(_conv(cin, 4 * cout, k), nn.PixelShuffle(2))


class HyperpriorGMMCodec(nn.Module):
    """The TOSC-SR codec network (see module docstring).

    Args:
        channels: N, width of the transforms and number of hyper-latent channels.
        latent_channels: M, number of latent channels.
        mixtures: K, Gaussian-mixture components per latent element.

    ``forward(x, noisy=True)`` with ``x float[B, 3, H, W]`` in [0, 1] (H, W multiples of 32)
    returns ``(x_hat float[B, 3, H, W], bits_y float[B], bits_z float[B])``: the reconstruction
    and the model's information content (bits) per image of the (noisy or rounded) latents.
    """

    def __init__(self, channels: int = 64, latent_channels: int = 96, mixtures: int = 3) -> None:
        super().__init__()
        n, m, k = int(channels), int(latent_channels), int(mixtures)
        self.channels, self.latent_channels, self.mixtures = n, m, k
        self.g_a = nn.Sequential(_conv(3, n, 5, 2), GDN(n), _conv(n, n, 5, 2), GDN(n), _conv(n, m, 5, 2))
        self.g_s = nn.Sequential(_Up(m, n), GDN(n, inverse=True), _Up(n, n), GDN(n, inverse=True), _Up(n, 3))
        self.h_a = nn.Sequential(_conv(m, n, 3), nn.LeakyReLU(inplace=True), _conv(n, n, 5, 2),
                                 nn.LeakyReLU(inplace=True), _conv(n, n, 5, 2))
        self.h_s = nn.Sequential(_Up(n, n), nn.LeakyReLU(inplace=True), _Up(n, n), nn.LeakyReLU(inplace=True),
                                 _conv(n, 3 * k * m, 3))
        self.prior_z = FactorizedPrior(n)
        self.conditional = GaussianMixtureConditional(k)

    def mixture_params(self, z_hat: torch.Tensor, h_s: nn.Module | None = None):
        """Mixture parameters from the hyper-latent.

        z_hat: ``[B, N, h, w]``. Returns ``(weight_logits, means, scales)``, each
        ``[B, M, K, 4h, 4w]`` (scales before the 0.11 lower bound).
        """
        out = (h_s or self.h_s)(z_hat)
        b, _, hh, ww = out.shape
        out = out.view(b, 3, self.mixtures, self.latent_channels, hh, ww).transpose(2, 3)
        return out[:, 0], out[:, 1], out[:, 2]

    def forward(self, x: torch.Tensor, noisy: bool = True):
        y = self.g_a(x)
        z = self.h_a(y)
        z_tilde = add_noise(z) if noisy else torch.round(z)
        logits, means, scales = self.mixture_params(z_tilde)
        y_tilde = add_noise(y) if noisy else torch.round(y)
        p_y = self.conditional(y_tilde, logits, means, scales)
        p_z = self.prior_z(z_tilde)
        y_ste = y + (torch.round(y) - y).detach()  # straight-through rounding for the decoder
        x_hat = self.g_s(y_ste)
        bits_y = -torch.log2(p_y).flatten(1).sum(1)
        bits_z = -torch.log2(p_z).flatten(1).sum(1)
        return x_hat, bits_y, bits_z


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Edge-replicate ``[B, C, H, W]`` on the bottom/right up to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


# ----------------------------------------------------------------------------------- objectives
Objective = Literal["tosc_sr", "rrd", "rtd"]


def objective_loss(objective: Objective, lmbda: float, beta: float, task_net: nn.Module | None):
    """The training loss of ``objective`` as a :data:`simlink.learned.trainer.LossFn`.

    See the module docstring for the formulas; ``task_net`` (frozen classifier taking
    ``float[B, 3, H, W]`` in [0, 1]) is needed by ``tosc_sr`` and ``rtd``.
    """
    uses_task = objective in ("tosc_sr", "rtd")
    uses_mse = objective in ("tosc_sr", "rrd")
    if uses_task and task_net is None:
        raise SimlinkError(f"objective {objective!r} needs the scenario's task model (add a 'task:' entry)")

    def loss_fn(net: HyperpriorGMMCodec, x: torch.Tensor, labels: torch.Tensor | None):
        b, _, h, w = x.shape
        x_hat, bits_y, bits_z = net(pad_to_multiple(x))
        x_hat = x_hat[..., :h, :w]
        bpp = (bits_y + bits_z).sum() / (b * h * w)
        mse = F.mse_loss(x_hat, x) * 255.0**2
        loss = bpp + (lmbda * mse if uses_mse else 0.0)
        stats = {"bpp": float(bpp.detach()), "mse": float(mse.detach())}
        if uses_task:
            if labels is None:
                raise SimlinkError("the task objectives need labelled training images")
            ce = F.cross_entropy(task_net(x_hat.clamp(0.0, 1.0)), labels)
            loss = loss + beta * ce
            stats["ce"] = float(ce.detach())
        return loss, stats

    return loss_fn


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
class _Trained:
    """A trained codec ready for coding: the network, its z tables and a float64 CPU h_s."""

    def __init__(self, net: HyperpriorGMMCodec, device: str) -> None:
        self.net = net.to(device).eval()
        self.device = device
        self.tables: PmfTables = net.prior_z.pmf_tables()
        self.h_s64 = copy.deepcopy(net.h_s).to("cpu", torch.float64).eval()

    @torch.no_grad()
    def params(self, z_hat: np.ndarray):
        """Mixture parameters of one image from its hyper-latent symbols ``int[1, N, h, w]``.

        Returns ``(weights, means, scales)`` as float64 ``[n_elements, K]`` in the latent's
        ``(channel, row, column)`` order.
        """
        z = torch.from_numpy(np.asarray(z_hat, dtype=np.float64))
        logits, means, scales = self.net.mixture_params(z, self.h_s64)  # [1, M, K, h, w]
        k = self.net.mixtures

        def flat(t):
            return t[0].permute(0, 2, 3, 1).reshape(-1, k).numpy()

        weights = torch.softmax(logits, dim=2)
        return flat(weights), flat(means), flat(scales)


class LearnedCodec(Method):
    """Shared implementation of ``tosc_sr``, ``rrd`` and ``rtd`` (see module docstring)."""

    kind = "digital"
    Config = LearnedCodecConfig
    objective: ClassVar[Objective] = "tosc_sr"

    def __init__(self, config: LearnedCodecConfig) -> None:
        super().__init__(config)
        self._trained: dict[str, _Trained] = {}
        self._report: list[dict] = []

    # ------------------------------------------------------------------ operating points
    def operating_points(self) -> list[OperatingPoint]:
        c = self.config
        if self.objective == "rtd":
            return [OperatingPoint(f"β={b:g}", {"beta": float(b), "lmbda": None}) for b in c.beta]
        beta = float(c.beta) if self.objective == "tosc_sr" else None
        return [OperatingPoint(f"λ={lm:g}", {"lmbda": float(lm), "beta": beta}) for lm in c.lmbda]

    # ------------------------------------------------------------------ training
    def _build_net(self, seed: int) -> HyperpriorGMMCodec:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return HyperpriorGMMCodec(**self.config.network.model_dump())

    def _stage_keys(self, op: OperatingPoint, ctx) -> tuple[dict, dict]:
        c = self.config
        data = ctx.data_identity(c.train.split, c.train.n_images)
        pre_lmbda = op.params["lmbda"] if self.objective != "rtd" else c.pretrain_lmbda
        pre = {"stage": "pretrain", "objective": "rrd", "lmbda": pre_lmbda, "network": c.network.model_dump(),
               "optim": c.train.pretrain.model_dump(), "data": data, "seed": ctx.seed, "code": CODE_VERSION}
        fine = {"stage": "finetune", "parent": fingerprint(pre), "objective": self.objective,
                "lmbda": op.params["lmbda"], "beta": op.params["beta"], "optim": c.train.finetune.model_dump(),
                "code": CODE_VERSION}
        if self.objective != "rrd":
            fine["task"] = module_fingerprint(ctx.task.net) if ctx.task is not None else None
        return pre, fine

    def _cache(self, key_obj: dict, ctx) -> ModelCache:
        return ModelCache("tosc_sr", fingerprint(key_obj), self.config.cache_dir or ctx.cache_root)

    def _run_stage(self, net, cache: ModelCache, key_obj: dict, optim: OptimSettings, ctx) -> None:
        """Load stage ``key_obj`` (its ``objective``, ``lmbda``, ``beta``) from ``cache`` into ``net``,
        or train ``net`` for it and save it there."""
        c = self.config
        objective, lmbda, beta = key_obj["objective"], key_obj["lmbda"], key_obj.get("beta")

        def make_loss():
            task_net = None
            if objective != "rrd":
                task_net = ctx.frozen_task_net(f"{c.display_name} (objective {objective!r})",
                                               c.train.split, c.train.n_images)
            return objective_loss(objective, lmbda or 0.0, beta or 0.0, task_net)

        train_or_load(net, cache, key_obj, make_loss, optim, ctx, split=c.train.split, n_images=c.train.n_images,
                      checkpoint_every_s=c.train.checkpoint_every_s,
                      describe=f"{c.display_name} {key_obj['stage']} ({objective}, λ={lmbda}, β={beta})")

    def fit(self, ctx) -> None:
        """Train (or load from the cache) the model of every operating point.

        ``ctx``: :class:`simlink.learned.context.TrainingContext`.
        """
        c = self.config
        for op in self.operating_points():
            if op.label in self._trained:
                continue
            pre_key, fine_key = self._stage_keys(op, ctx)
            pre_cache, fine_cache = self._cache(pre_key, ctx), self._cache(fine_key, ctx)
            net = self._build_net(ctx.seed)
            status = "cached" if fine_cache.is_done() else "trained"
            if status == "trained":  # the fine-tuning starts from the pre-trained weights
                self._run_stage(net, pre_cache, pre_key, c.train.pretrain, ctx)
            self._run_stage(net, fine_cache, fine_key, c.train.finetune, ctx)
            self._trained[op.label] = _Trained(net, str(ctx.device))
            self._report.append(stages_report(op.label, status, [pre_cache, fine_cache]))

    def training_report(self) -> list[dict]:
        return list(self._report)

    def _model(self, op: OperatingPoint) -> _Trained:
        if op.label not in self._trained:
            raise self.not_trained(op)
        return self._trained[op.label]

    # ------------------------------------------------------------------ coding
    @torch.no_grad()
    def encode(self, images: np.ndarray, op: OperatingPoint, batch_size: int = 64) -> DigitalPayload:
        """Range-code ``uint8[N, H, W, 3]`` images; one stream per image (module docstring)."""
        t = self._model(op)
        streams: list[bytes] = []
        for start in range(0, len(images), batch_size):
            x = pad_to_multiple(images_to_tensor(images[start:start + batch_size], t.device))
            y = t.net.g_a(x)
            y_hat = torch.round(y).cpu().numpy().astype(np.int64)
            z_hat = torch.round(t.net.h_a(y)).cpu().numpy().astype(np.int64)
            for i in range(len(y_hat)):
                w = SymbolWriter()
                w.factorized(z_hat[i:i + 1], t.tables)
                weights, means, scales = t.params(z_hat[i:i + 1])
                w.mixture(y_hat[i].reshape(-1), weights, means, scales)
                streams.append(w.to_bytes())
        return DigitalPayload(streams, meta={})

    @torch.no_grad()
    def latents(self, images: np.ndarray, op: OperatingPoint, batch_size: int = 64) -> np.ndarray:
        """``float32[N, M * H/8 * W/8]``: the quantised latent ``round(g_a(x))`` that is range-coded
        (images padded to a multiple of 32 first, as in :meth:`encode`)."""
        t = self._model(op)
        out = []
        for start in range(0, len(images), batch_size):
            x = pad_to_multiple(images_to_tensor(images[start:start + batch_size], t.device))
            out.append(torch.round(t.net.g_a(x)).flatten(1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    @torch.no_grad()
    def decode(self, payload: DigitalPayload, op: OperatingPoint, image_shape: tuple[int, int, int],
               batch_size: int = 64):
        """Decode every stream; a stream the range decoder rejects gives ``ok = False``."""
        t = self._model(op)
        h, w = image_shape[:2]
        hp, wp = h + (-h) % PAD_MULTIPLE, w + (-w) % PAD_MULTIPLE
        m, n = t.net.latent_channels, t.net.channels
        y_shape = (m, hp // 8, wp // 8)
        z_shape = (1, n, hp // 32, wp // 32)
        count = len(payload.streams)
        out = np.zeros((count, h, w, 3), dtype=np.uint8)
        ok = np.zeros(count, dtype=bool)
        y_all = np.zeros((count, *y_shape), dtype=np.float32)
        for i, data in enumerate(payload.streams):
            try:
                r = SymbolReader(data)
                z_hat = r.factorized(t.tables, z_shape)
                weights, means, scales = t.params(z_hat)
                y_all[i] = r.mixture(weights, means, scales).reshape(y_shape)
                ok[i] = True
            except (DecodeError, ValueError):
                continue
        idx = np.flatnonzero(ok)
        for start in range(0, len(idx), batch_size):
            sel = idx[start:start + batch_size]
            x_hat = t.net.g_s(torch.from_numpy(y_all[sel]).to(t.device))[..., :h, :w]
            out[sel] = tensor_to_images(x_hat)
        return out, ok


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
