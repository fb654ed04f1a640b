"""The TOSC-SR network, its training objectives and its range coder (torch); the method itself,
its scenario entry and operating points are in :mod:`simlink.methods.tosc_sr`.

See :mod:`simlink.methods.tosc_sr` for the architecture, the objectives and the bitstream format.
"""

from __future__ import annotations

import copy


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simlink.entropy import (GDN, FactorizedPrior, GaussianMixtureConditional, SymbolReader, SymbolWriter, add_noise,
                             mixture_models)
from simlink.entropy.factorized import PmfTables
from simlink.errors import DecodeError, SimlinkError
from simlink.tasks.classifier import images_to_tensor, tensor_to_images

PAD_MULTIPLE = 32  # g_a halves three times, h_a twice
_MODEL_BATCH = 8  # images whose coding distributions are built in one pass (speed only: same bits)


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
from simlink.methods.tosc_sr import Objective  # noqa: E402  (torch-free, no cycle)


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


# ----------------------------------------------------------------------------------- coding
class TrainedCodec:
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

        Encoder and decoder must get bit-identical parameters (a last-ulp difference can change a
        quantised PMF and desynchronise the range decoder), so ``z_hat`` is first made a
        C-contiguous float64 array: the encoder's symbols come out of a torch convolution in
        channels-last layout, the decoder's are C-contiguous, and the two layouts take different
        convolution kernels whose float64 results differ in the last bits.
        """
        z = torch.from_numpy(np.ascontiguousarray(z_hat, dtype=np.float64))
        logits, means, scales = self.net.mixture_params(z, self.h_s64)  # [1, M, K, h, w]
        k = self.net.mixtures

        def flat(t):
            return t[0].permute(0, 2, 3, 1).reshape(-1, k).numpy()

        weights = torch.softmax(logits, dim=2)
        return flat(weights), flat(means), flat(scales)




@torch.no_grad()
def encode_streams(t: TrainedCodec, images: np.ndarray, batch_size: int = 64) -> list[bytes]:
    """Range-code ``uint8[N, H, W, 3]`` images with codec ``t``: one stream per image, the
    hyper-latent symbols (factorised prior tables) then the latent symbols (mixture PMFs from
    the decoded hyper-latent)."""
    streams: list[bytes] = []
    for start in range(0, len(images), batch_size):
        x = pad_to_multiple(images_to_tensor(images[start:start + batch_size], t.device))
        y = t.net.g_a(x)
        y_hat = torch.round(y).cpu().numpy().astype(np.int64)
        z_hat = torch.round(t.net.h_a(y)).cpu().numpy().astype(np.int64)
        for group in range(0, len(y_hat), _MODEL_BATCH):
            ids = range(group, min(len(y_hat), group + _MODEL_BATCH))
            for i, model in zip(ids, _group_models([t.params(z_hat[i:i + 1]) for i in ids])):
                w = SymbolWriter()
                w.factorized(z_hat[i:i + 1], t.tables)
                w.mixture_model(y_hat[i].reshape(-1), model)
                streams.append(w.to_bytes())
    return streams


def _group_models(params: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list:
    """The coding distributions of a few images' mixture parameters (``t.params`` each) in one
    vectorised pass; an element's distribution depends on its own parameters only, so this equals
    building them image by image, bit for bit. Groups stay small (``_MODEL_BATCH`` images): the
    rows of every element exist at once."""
    if not params:
        return []
    return mixture_models(*(np.concatenate(p) for p in zip(*params)), counts=[len(p[0]) for p in params])


@torch.no_grad()
def quantised_latents(t: TrainedCodec, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """``float32[N, M * H/8 * W/8]``: the quantised latent ``round(g_a(x))`` that is range-coded
    (images padded to a multiple of 32 first, as in :func:`encode_streams`)."""
    out = []
    for start in range(0, len(images), batch_size):
        x = pad_to_multiple(images_to_tensor(images[start:start + batch_size], t.device))
        out.append(torch.round(t.net.g_a(x)).flatten(1).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


@torch.no_grad()
def decode_streams(t: TrainedCodec, streams: list[bytes], image_shape: tuple[int, int, int],
                   batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Decode every stream: ``(uint8[N, H, W, 3] images, bool[N] ok)``; a stream the range
    decoder rejects gives ``ok = False`` (its image is left black)."""
    h, w = image_shape[:2]
    hp, wp = h + (-h) % PAD_MULTIPLE, w + (-w) % PAD_MULTIPLE
    m, n = t.net.latent_channels, t.net.channels
    y_shape = (m, hp // 8, wp // 8)
    z_shape = (1, n, hp // 32, wp // 32)
    count = len(streams)
    out = np.zeros((count, h, w, 3), dtype=np.uint8)
    ok = np.zeros(count, dtype=bool)
    y_all = np.zeros((count, *y_shape), dtype=np.float32)
    for start in range(0, count, _MODEL_BATCH):
        readers, params = {}, {}
        for i in range(start, min(count, start + _MODEL_BATCH)):
            try:
                r = SymbolReader(streams[i])
                params[i] = t.params(r.factorized(t.tables, z_shape))
                readers[i] = r
            except (DecodeError, ValueError):
                continue
        try:  # the group's distributions at once, as in encode_streams (same bits as per image)
            models = dict(zip(readers, _group_models(list(params.values()))))
        except ValueError:  # parameters of a garbled hyper-latent (not finite ...): image by image
            models = {}
            for i in readers:
                try:
                    models[i] = _group_models([params[i]])[0]
                except ValueError:
                    continue
        for i, model in models.items():
            try:
                y_all[i] = readers[i].mixture_model(model).reshape(y_shape)
                ok[i] = True
            except (DecodeError, ValueError):
                continue
    idx = np.flatnonzero(ok)
    for start in range(0, len(idx), batch_size):
        sel = idx[start:start + batch_size]
        x_hat = t.net.g_s(torch.from_numpy(y_all[sel]).to(t.device))[..., :h, :w]
        out[sel] = tensor_to_images(x_hat)
    return out, ok
