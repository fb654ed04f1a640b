"""LPIPS v0.1 built without torchvision: its algebra on random weights (always), and the
reference values of the real weights (optional: ../shared/weights or $SIMLINK_WEIGHTS)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from simlink.errors import SimlinkError
from simlink.metrics.lpips import BACKBONES, LPIPS, load_lpips, lpips_distance

SHARED = Path(os.environ.get("SIMLINK_WEIGHTS", Path(__file__).resolve().parents[2] / "shared" / "weights"))


@pytest.mark.parametrize("net", list(BACKBONES))
def test_tap_channels_match_the_linear_layers(net):
    torch.manual_seed(0)
    model = LPIPS(net)
    taps = model._taps(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert [t.shape[1] for t in taps] == list(BACKBONES[net].channels)
    # unit-normalised over channels at every tap
    for t in taps:
        norm = t.pow(2).sum(1).sqrt()
        assert torch.allclose(norm[norm > 1e-3], torch.ones(()), atol=1e-4)


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_distance_is_zero_for_identical_images_symmetric_and_positive_otherwise(net):
    torch.manual_seed(0)
    model = LPIPS(net)
    x, y = torch.rand(3, 3, 48, 48) * 2 - 1, torch.rand(3, 3, 48, 48) * 2 - 1
    assert torch.allclose(model(x, x), torch.zeros(3), atol=1e-7)
    assert torch.allclose(model(x, y), model(y, x), atol=1e-6)
    assert (model(x, y) > 0).all()
    assert not any(p.requires_grad for p in model.parameters())
    x.requires_grad_(True)
    model(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # usable as a training loss


def test_distance_is_the_weighted_sum_of_squared_normalised_differences():
    """An independent computation of the v0.1 formula from the taps and the linear weights."""
    torch.manual_seed(1)
    model = LPIPS("squeeze")
    for lin in model.lins:
        lin.weight.data.uniform_(0, 1)
    x, y = torch.rand(2, 3, 40, 40) * 2 - 1, torch.rand(2, 3, 40, 40) * 2 - 1
    expected = sum(((a - b) ** 2 * lin.weight.view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
                   for a, b, lin in zip(model._taps(x), model._taps(y), model.lins))
    assert torch.allclose(model(x, y), expected, rtol=1e-5)


def test_uint8_helper_maps_to_minus_one_one_and_checks_shapes():
    torch.manual_seed(0)
    model = LPIPS("alex")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    d = lpips_distance(model, a, b, batch_size=2)
    direct = model(torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1,
                   torch.from_numpy(b).permute(0, 3, 1, 2).float() / 127.5 - 1)
    np.testing.assert_allclose(d, direct.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        lpips_distance(model, a, b[:, :32])


def test_missing_and_wrong_weights_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("SIMLINK_WEIGHTS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(SimlinkError, match="squeeze.backbone.pth.*not found"):
        load_lpips("squeeze", tmp_path)
    (tmp_path / "squeeze.backbone.pth").write_bytes(b"not the weights")
    with pytest.raises(SimlinkError, match="checksum mismatch"):
        load_lpips("squeeze", tmp_path)
    with pytest.raises(SimlinkError, match="not one of alex, squeeze, vgg"):
        load_lpips("resnet")


@pytest.mark.skipif(not (SHARED / "lpips" / "v0.1" / "alex.pth").is_file(), reason="needs ../shared/weights")
@pytest.mark.parametrize("net, expected", [("squeeze", 0.1008), ("alex", 0.1486)])
def test_reference_values_of_the_real_weights(net, expected):
    """torchmetrics' documented example input; 0.1008 is the value its docs print for squeeze."""
    torch.manual_seed(123)
    img1 = torch.rand(10, 3, 100, 100) * 2 - 1
    img2 = torch.rand(10, 3, 100, 100) * 2 - 1
    model = load_lpips(net, SHARED)
    assert float(model(img1, img2).mean()) == pytest.approx(expected, abs=5e-5)
