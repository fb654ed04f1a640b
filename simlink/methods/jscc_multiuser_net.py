"""Networks and training loss of the multi-user analog deep JSCC (torch); the method, its scenario
entry and operating points are in :mod:`simlink.methods.jscc_multiuser`, which describes the
architecture and the loss.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simlink.errors import SimlinkError
from simlink.phy.analog import AnalogLink, complex_to_real, power_normalise, real_to_complex
from simlink.phy.channels import Channel
from simlink.phy.link import sionna_seed
from simlink.phy.snr import esno_db_to_no
from simlink.tasks.classifier import images_to_tensor, tensor_to_images


# ----------------------------------------------------------------------------------- network
class ResBlock(nn.Module):
    """Basic residual block: two 3x3 conv + BN, identity (or 1x1 strided conv) shortcut, ReLU.
    ``[B, cin, H, W] -> [B, cout, H/stride, W/stride]``."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout
                     else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class UpResBlock(nn.Module):
    """Transposed residual block: 4x4 stride-2 transposed conv + BN + ReLU, 3x3 conv + BN, with a
    2x2 stride-2 transposed-conv shortcut. ``[B, cin, H, W] -> [B, cout, 2H, 2W]``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class UserEncoder(nn.Module):
    """One user's encoder: patch ``float[B, 3, p, p]`` in [0, 1] -> ``complex64[B, S]`` with
    average power 1 per symbol (``p`` divisible by 4)."""

    def __init__(self, patch: int, width: int, channel_uses: int) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            ResBlock(w, w), ResBlock(w, w),
            ResBlock(w, 2 * w, 2), ResBlock(2 * w, 2 * w),
            ResBlock(2 * w, 4 * w, 2), ResBlock(4 * w, 4 * w))
        self.fc = nn.Linear(4 * w * (patch // 4) ** 2, 2 * channel_uses)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return power_normalise(real_to_complex(self.fc(self.features(x - 0.5).flatten(1))))


class MultiUserJSCCNet(nn.Module):
    """Encoders of all users plus the receiver's two decoders.

    Args:
        image_shape: ``(H, W)`` of the images.
        users: ``U``, a square number; the image is cut into a ``sqrt(U) x sqrt(U)`` grid.
        channel_uses: ``S`` complex symbols per user.
        num_classes: outputs of the classification decoder.
        width: base channel count ``w``; hidden: fully connected width ``F``.
        shared_encoder: one encoder for every user instead of one each.
    """

    def __init__(self, image_shape: tuple[int, int], users: int, channel_uses: int, num_classes: int,
                 width: int = 16, hidden: int = 512, shared_encoder: bool = False) -> None:
        super().__init__()
        h, w = image_shape
        g = math.isqrt(users)
        self.grid, self.users, self.channel_uses, self.num_classes = g, users, channel_uses, num_classes
        self.image_shape = (h, w)
        self.patch = (h // g, w // g)
        if g * g != users or h % (4 * g) or w % (4 * g) or self.patch[0] != self.patch[1]:
            raise SimlinkError(
                f"jscc_multiuser: {h}x{w} images cannot be cut into {users} square patches with sides divisible "
                "by 4 (users must be a square number g^2 and the image sides multiples of 4*g)")
        n_enc = 1 if shared_encoder else users
        self.encoders = nn.ModuleList(UserEncoder(self.patch[0], width, channel_uses) for _ in range(n_enc))
        d_in = 2 * users * channel_uses
        c = 4 * width
        self._dec_shape = (c, h // 4, w // 4)
        self.recon_fc = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(inplace=True),
                                      nn.Linear(hidden, c * (h // 4) * (w // 4)), nn.ReLU(inplace=True))
        self.recon_conv = nn.Sequential(
            ResBlock(c, c), UpResBlock(c, 2 * width), UpResBlock(2 * width, width), ResBlock(width, width),
            nn.ConvTranspose2d(width, 3, 3, 1, 1), nn.Sigmoid())
        self.classifier = nn.Sequential(
            nn.Linear(d_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden // 2), nn.ReLU(inplace=True),
            nn.Linear(hidden // 2, num_classes))
        self.encoders_frozen = False

    def freeze_encoders(self) -> None:
        """Stop training the encoders (no gradients, BatchNorm statistics fixed)."""
        self.encoders_frozen = True
        for p in self.encoders.parameters():
            p.requires_grad_(False)
        self.encoders.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.encoders_frozen:
            self.encoders.eval()
        return self

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """``float[B, 3, H, W] -> float[B, U, 3, p, p]``, users in row-major grid order."""
        b, c, h, w = x.shape
        g, p = self.grid, self.patch[0]
        return x.reshape(b, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c, p, p)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``float[B, 3, H, W]`` in [0, 1] -> symbols ``complex64[B, U, S]`` (power 1 per user)."""
        if tuple(x.shape[-2:]) != self.image_shape:
            raise SimlinkError(f"jscc_multiuser: trained for {self.image_shape} images, got {tuple(x.shape[-2:])}")
        parts = self.patches(x)
        out = [self.encoders[0 if len(self.encoders) == 1 else u](parts[:, u]) for u in range(self.users)]
        return torch.stack(out, dim=1)

    def decode(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Received symbols ``complex[B, U, S]`` -> (images ``float[B, 3, H, W]`` in [0, 1], logits ``[B, C]``)."""
        feats = complex_to_real(y).flatten(1)
        x_hat = self.recon_conv(self.recon_fc(feats).view(-1, *self._dec_shape))
        return x_hat, self.classifier(feats)


# ----------------------------------------------------------------------------------- loss
def jscc_loss(alpha: float, beta: float, stage: str, link: AnalogLink, channel: Channel,
              snr_db: float | tuple[float, float]):
    """The training loss (module docstring) as a :data:`simlink.learned.trainer.LossFn`.

    ``stage`` is ``"joint"`` (eq. 19 with ``alpha``) or ``"decoders"`` (reconstruction + CE, equal
    weights). ``snr_db``: Es/N0 in dB, fixed or ``(low, high)`` drawn uniformly per image. The
    channel draws come from a seed taken from torch's global generator, which the trainer seeds per
    step, so training is reproducible and resumable.
    """
    from pytorch_msssim import ssim

    def loss_fn(net: MultiUserJSCCNet, x: torch.Tensor, labels: torch.Tensor | None):
        if labels is None:
            raise SimlinkError("jscc_multiuser: training needs labelled images (for the classification decoder)")
        s = net.encode(x)
        if isinstance(snr_db, tuple):
            lo, hi = snr_db
            db = lo + (hi - lo) * torch.rand(len(x), device=x.device)
            no = torch.pow(10.0, -db / 10.0)
        else:
            no = esno_db_to_no(snr_db)
        seed = int(torch.randint(0, 2**62, (1,)))
        with sionna_seed(seed):
            rx = link(s, channel, no)
        x_hat, logits = net.decode(rx.symbols)
        mse = F.mse_loss(x_hat, x)
        dssim = 1.0 - ssim(x_hat, x, data_range=1.0, size_average=True)
        ce = F.cross_entropy(logits, labels)
        recon = (1.0 - beta) * mse + beta * dssim
        loss = alpha * recon + (1.0 - alpha) * ce if stage == "joint" else recon + ce
        acc = (logits.argmax(1) == labels).float().mean()
        return loss, {"mse": float(mse.detach()), "ssim": float(1.0 - dssim.detach()), "ce": float(ce.detach()),
                      "acc": float(acc)}

    return loss_fn




# ----------------------------------------------------------------------------------- coding
@torch.no_grad()
def encode_images(net: MultiUserJSCCNet, images: np.ndarray, device: str, batch_size: int = 256) -> torch.Tensor:
    """``uint8[N, H, W, 3]`` -> ``complex64[N, U, S]`` channel symbols on ``device``."""
    out = [net.encode(images_to_tensor(images[a:a + batch_size], device)) for a in range(0, len(images), batch_size)]
    if out:
        return torch.cat(out)
    return torch.zeros(0, net.users, net.channel_uses, dtype=torch.complex64, device=device)


@torch.no_grad()
def decode_symbols(net: MultiUserJSCCNet, symbols: torch.Tensor, device: str,
                   batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Received ``complex[N, U, S]`` -> (``uint8[N, H, W, 3]`` reconstructions, ``float32[N, C]``
    class logits), both decoders run once per batch."""
    imgs, logits = [], []
    y = symbols.to(device)
    for a in range(0, len(y), batch_size):
        x_hat, lg = net.decode(y[a:a + batch_size])
        imgs.append(tensor_to_images(x_hat))
        logits.append(lg.float().cpu().numpy())
    if not imgs:
        h, w = net.image_shape
        return np.zeros((0, h, w, 3), np.uint8), np.zeros((0, net.num_classes), np.float32)
    return np.concatenate(imgs), np.concatenate(logits)
