"""Analog link and the multi-user deep JSCC method: power, noise, fading, users, losses, scenario."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from simlink.errors import ScenarioError, SimlinkError
from simlink.learned.context import TrainingContext
from simlink.methods.jscc_multiuser import JSCCConfig, MultiUserJSCC
from simlink.methods.jscc_multiuser_net import MultiUserJSCCNet, jscc_loss
from simlink.phy.analog import AnalogLink, complex_to_real, power_normalise, real_to_complex
from simlink.phy.channels import AWGNChannel, RayleighBlockChannel, RayleighFastChannel
from simlink.scenario import DatasetConfig, parse_scenario
from simlink.metrics.measure import Measure


def _symbols(n=64, u=4, s=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.complex(torch.randn(n, u, s, generator=g), torch.randn(n, u, s, generator=g)) * 3.0
    return power_normalise(x)


# ----------------------------------------------------------------------------- analog link
def test_power_normalisation_and_real_complex_pairing():
    x = _symbols()
    assert torch.allclose((x.abs() ** 2).mean(-1), torch.ones(64, 4), atol=1e-5)
    f = torch.randn(3, 10)
    c = real_to_complex(f)
    assert c.shape == (3, 5) and torch.equal(c.real, f[:, :5]) and torch.equal(c.imag, f[:, 5:])
    assert torch.equal(complex_to_real(c), f)
    with pytest.raises(ValueError, match="even number"):
        real_to_complex(torch.zeros(2, 3))


@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_awgn_noise_has_the_variance_of_the_snr(snr_db):
    link = AnalogLink("cpu")
    x = _symbols()
    rx = link.transmit(x, AWGNChannel(), snr_db, seed=1)
    noise = rx.symbols - x
    no = 10 ** (-snr_db / 10)
    n = noise.numel()
    assert float((noise.abs() ** 2).mean()) == pytest.approx(no, rel=4 / math.sqrt(n))  # 4 sigma
    assert float(noise.real.var()) == pytest.approx(no / 2, rel=0.02)  # circular: N0/2 per dimension
    assert (rx.channel_uses == 4 * 500).all()
    again = link.transmit(x, AWGNChannel(), snr_db, seed=1)
    other = link.transmit(x, AWGNChannel(), snr_db, seed=2)
    assert torch.equal(again.symbols, rx.symbols) and not torch.equal(other.symbols, rx.symbols)


def test_the_link_normalises_the_power_it_is_given():
    """Symbols of mean power 4 sent at Es/N0 = 0 dB arrive at 0 dB (not +6 dB): the link scales
    each user's symbols of each image to power 1, the same as normalising them beforehand."""
    from simlink.phy.analog import unit_power

    link = AnalogLink("cpu")
    x = _symbols()
    assert torch.equal(unit_power(x), x)  # already at power 1: sent bit for bit as the encoder made it
    loud = 2.0 * x  # mean |x|^2 = 4 per user and image
    uneven = x * torch.linspace(0.5, 3.0, 4).view(1, 4, 1)  # another power per user
    ref = link.transmit(x, AWGNChannel(), 0.0, seed=5)
    for y in (loud, uneven):
        rx = link.transmit(y, AWGNChannel(), 0.0, seed=5)
        torch.testing.assert_close(rx.symbols, ref.symbols, rtol=1e-5, atol=1e-5)
        signal = (x.abs() ** 2).mean()
        noise = ((rx.symbols - x).abs() ** 2).mean()
        assert 10 * math.log10(float(signal / noise)) == pytest.approx(0.0, abs=0.1)


def test_block_fading_is_one_fade_per_user_and_image_and_equalised():
    link = AnalogLink("cpu")
    x = _symbols(n=200, s=20)
    no = 1e-3
    block = link.transmit(x, RayleighBlockChannel(granularity="block"), 30.0, seed=3)
    gain = no / block.noise_var  # |h|^2 per symbol
    assert torch.allclose(gain, gain[..., :1].expand_as(gain))  # constant over a user's S symbols
    assert gain[:, 0, 0].std() > 0.3 and not torch.allclose(gain[:, 0, 0], gain[:, 1, 0])  # users differ
    assert float(gain[..., 0].mean()) == pytest.approx(1.0, abs=0.15)  # E|h|^2 = 1
    # perfect-CSI equalisation: the residual is the noise scaled by 1/|h|^2
    err = ((block.symbols - x).abs() ** 2) / block.noise_var
    assert float(err.mean()) == pytest.approx(1.0, rel=0.1)
    image = link.transmit(x, RayleighBlockChannel(granularity="image"), 30.0, seed=3)
    g_img = no / image.noise_var
    assert torch.allclose(g_img, g_img[:, :1, :1].expand_as(g_img))  # one fade per image
    fast = link.transmit(x, RayleighFastChannel(), 30.0, seed=3)
    assert not torch.allclose(fast.noise_var[..., 0], fast.noise_var[..., 1])


def test_link_is_differentiable_and_takes_one_snr_per_image():
    link = AnalogLink("cpu")
    f = torch.randn(8, 4, 20, requires_grad=True)
    x = power_normalise(real_to_complex(f))
    no = torch.tensor([1.0] * 4 + [1e-4] * 4)
    rx = link(x, AWGNChannel(), no)
    err = (rx.symbols - x).abs().pow(2).mean(dim=(1, 2))
    assert err[:4].min() > 100 * err[4:].max()
    rx.symbols.abs().pow(2).sum().backward()
    assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- network
def _net(**kw):
    torch.manual_seed(0)
    return MultiUserJSCCNet((32, 32), kw.pop("users", 4), kw.pop("channel_uses", 10), 5, width=4, hidden=32, **kw)


@pytest.mark.parametrize("shared", [False, True])
def test_each_user_sees_only_its_own_patch(shared):
    net = _net(shared_encoder=shared).eval()
    x = torch.rand(2, 3, 32, 32)
    parts = net.patches(x)
    assert parts.shape == (2, 4, 3, 16, 16)
    assert torch.equal(parts[:, 1], x[:, :, :16, 16:]) and torch.equal(parts[:, 2], x[:, :, 16:, :16])
    s = net.encode(x)
    assert s.shape == (2, 4, 10) and s.dtype == torch.complex64
    assert torch.allclose((s.abs() ** 2).mean(-1), torch.ones(2, 4), atol=1e-5)  # power 1 per user
    y = x.clone()
    y[:, :, 16:, 16:] = torch.rand(2, 3, 16, 16)  # change the bottom-right quarter only
    t = net.encode(y)
    assert torch.equal(s[:, :3], t[:, :3]) and not torch.allclose(s[:, 3], t[:, 3])
    x_hat, logits = net.decode(s)
    assert x_hat.shape == (2, 3, 32, 32) and logits.shape == (2, 5)
    assert x_hat.min() >= 0 and x_hat.max() <= 1


def test_image_must_split_into_the_users_grid():
    with pytest.raises(SimlinkError, match="cannot be cut into 4 square patches"):
        MultiUserJSCCNet((36, 36), 4, 10, 5)
    assert _net(users=16).patches(torch.rand(1, 3, 32, 32)).shape == (1, 16, 3, 8, 8)


def test_loss_terms_follow_equation_19():
    from pytorch_msssim import ssim

    net = _net()
    link = AnalogLink("cpu")
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for alpha, beta, expect in [(1.0, 0.0, "mse"), (0.0, 0.5, "ce"), (1.0, 1.0, "dssim")]:
        torch.manual_seed(5)
        loss, st = jscc_loss(alpha, beta, "joint", link, AWGNChannel(), 40.0)(net, x, y)
        want = {"mse": st["mse"], "ce": st["ce"], "dssim": 1 - st["ssim"]}[expect]
        assert float(loss.detach()) == pytest.approx(want, rel=1e-5)
    torch.manual_seed(5)
    loss, st = jscc_loss(0.0, 0.25, "decoders", link, AWGNChannel(), 40.0)(net, x, y)
    assert float(loss.detach()) == pytest.approx(0.75 * st["mse"] + 0.25 * (1 - st["ssim"]) + st["ce"], rel=1e-5)
    # the SSIM of the stats is pytorch_msssim's on the decoded image
    net.eval()
    with torch.no_grad():
        x_hat, _ = net.decode(net.encode(x))
    assert 0.0 < float(ssim(x_hat, x, data_range=1.0)) < 1.0


# ----------------------------------------------------------------------------- method and config
def _ctx(tmp_path):
    return TrainingContext(dataset=DatasetConfig(name="synthetic", image_size=32), seed=0, cache_root=tmp_path,
                           log=lambda s: None)


def _method(**kw):
    cfg = JSCCConfig(**{"name": "jscc_multiuser", "users": 4, "channel_uses": 8, "network": {"width": 4, "hidden": 32},
                        "train": {"n_images": 64, "joint": {"epochs": 1, "batch_size": 16, "lr": 1e-3},
                                  "decoders": {"epochs": 1, "batch_size": 16, "lr": 1e-3}}, **kw})
    return MultiUserJSCC(cfg)


def test_operating_points_are_the_alpha_beta_pairs():
    ops = _method(alpha=[0.5, 1.0], beta=[0.0, 0.25]).operating_points()
    assert [o.label for o in ops] == ["α=0.5 β=0", "α=1 β=0", "α=0.5 β=0.25", "α=1 β=0.25"]
    ops = _method(points=[{"alpha": 0.9, "beta": 0.0}]).operating_points()
    assert [o.params for o in ops] == [{"alpha": 0.9, "beta": 0.0}]


@pytest.mark.parametrize("entry, message", [
    ({"users": 3}, "methods.0.users: must be a square number"),
    ({"alpha": [1.5]}, "methods.0.alpha: needs a non-empty list of values in \\[0, 1\\]"),
    ({"points": [{"alpha": 0.5}]}, "methods.0.points.0.beta"),
    ({"train": {"snr_db": [5, 1]}}, "methods.0.train.snr_db"),
    ({"train": {"channel": {"name": "rician"}}}, "methods.0.train.channel"),
])
def test_scenario_errors_name_the_field(tiny_scenario_dict, entry, message):
    tiny_scenario_dict["methods"] = [{"name": "jscc_multiuser", **entry}]
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(tiny_scenario_dict, "x.yaml")


def test_second_stage_trains_only_the_decoders_and_is_cached(tmp_path, one_torch_thread):
    m = _method(points=[{"alpha": 0.0, "beta": 0.0}])
    ctx = _ctx(tmp_path)
    m.fit(ctx)
    (op,) = m.operating_points()
    net = m._net(op)
    assert m.training_report()[0]["status"] == "trained"
    # the joint stage's encoders are exactly the final ones: the decoder stage froze them
    from simlink.learned.cache import safe_torch_load

    joint, dec = sorted((tmp_path / "models" / "jscc_multiuser").iterdir(), key=lambda p: p.stat().st_mtime)
    w_joint, w_dec = safe_torch_load(joint / "model.pt"), safe_torch_load(dec / "model.pt")
    enc = [k for k in w_dec if k.startswith("encoders.")]
    assert enc and all(torch.equal(w_joint[k], w_dec[k]) for k in enc)
    assert any(not torch.equal(w_joint[k], w_dec[k]) for k in w_dec if k.startswith("recon_"))
    info = json.loads((dec / "info.json").read_text())
    assert info["key"]["stage"] == "decoders"
    # a new session loads it
    again = _method(points=[{"alpha": 0.0, "beta": 0.0}])
    again.fit(_ctx(tmp_path))
    assert again.training_report()[0]["status"] == "cached"
    imgs = (np.random.default_rng(0).random((3, 32, 32, 3)) * 255).astype(np.uint8)
    p1, p2 = m.encode(imgs, op), again.encode(imgs, op)
    assert torch.equal(p1.symbols, p2.symbols)
    assert m.latents(imgs, op).shape == (3, 2 * 4 * 8)
    # one decode gives the reconstruction and the head's logits: the decoders run once
    calls = []
    decode = net.decode
    net.decode = lambda y: calls.append(1) or decode(y)
    rec = m.decode(p1, op, (32, 32, 3))
    logits = rec.outputs["class_logits"]
    assert len(calls) == 1 and rec.ok.all() and rec.images.shape == (3, 32, 32, 3) and logits.shape == (3, 9)
    x_hat, lg = decode(p1.symbols)
    np.testing.assert_allclose(logits, lg.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_measure_scores_a_head_and_the_task_model_separately():
    class Task:
        def logits(self, images, device="cpu"):
            return np.eye(3)[np.zeros(len(images), int)]  # always class 0

    orig = np.zeros((4, 16, 16, 3), np.uint8)
    labels = np.array([0, 1, 2, 2])
    head = np.eye(3)[[0, 1, 2, 0]]  # right 3 of 4
    out = Measure(orig, labels, Task())(orig, None, {"class_logits": head})
    assert out["accuracy"].tolist() == [1, 1, 1, 0]
    assert out["recon_accuracy"].tolist() == [1, 0, 0, 0]
    plain = Measure(orig, labels, Task())(orig)
    assert plain["accuracy"].tolist() == [1, 0, 0, 0] and "recon_accuracy" not in plain


# ----------------------------------------------------------------------------- the small scenario
def test_small_scenario_runs_analog_and_digital_in_one_table(tmp_path, one_torch_thread):
    """scenarios/jscc_multiuser_small.yaml: trains from scratch, sends symbols over AWGN and block
    fading, and lands in the same table as JPEG with exact channel uses per pixel."""
    from simlink.scenario import load_scenario
    from simlink.sweep.runner import run_scenario
    from tests.conftest import REPO

    sc = load_scenario(REPO / "scenarios" / "jscc_multiuser_small.yaml")
    df = run_scenario(sc, tmp_path / "out", device="cpu", quiet=True, plots=True, cache_root=tmp_path / "cache")
    analog = df[df.payload == "analog"]
    assert len(analog) == 2 * 2 * 4 and set(df.payload) == {"analog", "digital"}
    assert (analog.cpp == 4 * 32 / (32 * 32)).all()
    assert analog.bpp.isna().all() and analog.bler.isna().all() and (analog.lost_frac == 0).all()
    assert analog.accuracy.between(0, 1).all() and analog.recon_accuracy.between(0, 1).all()
    grey = 10 * np.log10(255**2 / np.mean((load_synthetic_test(sc) - 128.0) ** 2, axis=(1, 2, 3))).mean()
    awgn = analog[(analog.channel == "awgn")]
    for op, g in awgn.groupby("op"):
        g = g.sort_values("snr_db")
        assert g.psnr.min() > grey - 0.1, (op, g.psnr.tolist(), grey)  # never worse than no information
        assert g.psnr.iloc[-1] >= g.psnr.iloc[0] - 0.05  # no worse at 20 dB than at 0 dB
        assert g.psnr_clean.iloc[-1] >= g.psnr.iloc[-1] - 0.05  # the noiseless channel is the ceiling
    mse_only = awgn[awgn.op == "α=1 β=0"].sort_values("snr_db")
    assert mse_only.psnr.iloc[-1] > grey + 0.5, (mse_only.psnr.tolist(), grey)  # it learned to reconstruct
    fading = analog[(analog.channel != "awgn") & (analog.op == "α=1 β=0")].sort_values("snr_db")
    assert fading.psnr.iloc[0] < fading.psnr.iloc[-1]  # deep fades hurt at low SNR, not at high SNR
    ab = {json.loads(p)["alpha"] for p in analog.op_params}
    assert ab == {1.0, 0.5}
    assert (tmp_path / "out" / "plots" / "tradeoff_alpha.pdf").is_file()
    assert (tmp_path / "out" / "plots" / "bler_vs_snr.pdf").is_file()  # digital rows keep their figures


def load_synthetic_test(sc):
    from simlink.data import load_dataset

    d = sc.dataset
    return load_dataset(d.name, split=d.split, n_images=d.n_images, image_size=d.image_size, seed=sc.seed).images.astype(float)
