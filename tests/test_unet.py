"""The compact U-Net segmenter: shapes, the size rule, its registration, and a save / load round trip."""

import numpy as np
import pytest
import torch

from simlink.tasks.classifier import ARCHITECTURES, TaskModel, build_architecture
from simlink.tasks.segmenter import SegmentationModel
from simlink.tasks.unet import UNet


def test_output_shape_and_size_multiple():
    net = UNet(5, base=4, depth=3)
    assert net.size_multiple == 8
    out = net(torch.rand(2, 3, 16, 24))
    assert out.shape == (2, 5, 16, 24)
    with pytest.raises(ValueError, match="multiples of 8, got 20x24"):
        net(torch.rand(1, 3, 20, 24))
    with pytest.raises(ValueError, match="num_outputs >= 1"):
        UNet(0)


def test_registered_with_its_options_and_padded_by_segmentation_model(tmp_path):
    from simlink.tasks.kinds import ARCHITECTURE_OPTIONS, TASK_KINDS

    assert "unet" in ARCHITECTURES and "unet" in TASK_KINDS["segmentation"].trainable
    assert set(ARCHITECTURE_OPTIONS["unet"]) == {"base", "depth"}
    torch.manual_seed(0)
    net = build_architecture("unet", num_outputs=3, base=4, depth=2)
    model = SegmentationModel(net, "unet", {"num_outputs": 3, "base": 4, "depth": 2}, ["a", "b", "c"])
    assert model.size_multiple == 4
    images = np.random.default_rng(0).integers(0, 256, (2, 10, 14, 3), dtype=np.uint8)  # not multiples of 4
    pred = model.predict(images)
    assert pred.shape == (2, 10, 14) and pred.max() < 3
    model.save(tmp_path / "m.pt")
    again = TaskModel.load(tmp_path / "m.pt")
    assert isinstance(again, SegmentationModel)
    np.testing.assert_array_equal(again.predict(images), pred)


def test_skip_connections_reach_full_resolution():
    """A one-pixel change moves the output at that pixel (the full-resolution skip path)."""
    torch.manual_seed(0)
    net = UNet(2, base=4, depth=2).eval()
    x = torch.rand(1, 3, 16, 16)
    y = x.clone()
    y[0, :, 5, 9] += 0.5
    diff = (net(x) - net(y)).abs().sum(1)[0]
    assert diff[5, 9] > 0 and diff[5, 9] == diff.max()
