"""Receiver-task accuracy in the sweep, checked against the task model run directly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simlink.data import load_dataset
from simlink.errors import ScenarioError, SimlinkError
from simlink.methods import build_method
from simlink.scenario import parse_scenario
from simlink.sweep import run_scenario
from simlink.metrics.measure import Measure
from simlink.sweep.receiver import concealment_images
from simlink.tasks import small_cnn


@pytest.fixture
def task_file(tmp_path):
    model = small_cnn(num_classes=9, width=8, seed=5)  # untrained, deterministic: any fixed classifier will do
    path = tmp_path / "task.pt"
    model.save(path)
    return path, model


def test_accuracy_matches_the_task_model_run_directly(tmp_path, tiny_scenario_dict, task_file):
    path, model = task_file
    tiny_scenario_dict["task"] = {"model": str(path)}
    tiny_scenario_dict["dataset"]["n_images"] = 12
    sc = parse_scenario(tiny_scenario_dict)
    df = run_scenario(sc, tmp_path / "r", quiet=True, plots=True)
    assert {"accuracy", "accuracy_ci", "accuracy_clean"} <= set(df.columns)
    data = load_dataset("synthetic", n_images=12, image_size=32, seed=3)
    method = build_method(sc.methods[0])
    for op in method.operating_points():
        rec = method.decode(method.encode(data.images, op), op, data.image_shape)
        assert rec.ok.all()
        recon = rec.images
        expected = model.accuracy(recon, data.labels)
        row_hi = df[(df.op == op.label) & (df.snr_db == 30.0)].iloc[0]
        assert row_hi.accuracy == pytest.approx(expected) and row_hi.accuracy_clean == pytest.approx(expected)
    concealed = model.accuracy(concealment_images(12, data.image_shape), data.labels)
    np.testing.assert_allclose(df[df.snr_db == 0.0].accuracy, concealed)
    assert (tmp_path / "r" / "plots" / "accuracy_vs_snr.pdf").exists()
    assert (tmp_path / "r" / "plots" / "accuracy_vs_bpp.png").exists()
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["task_on_originals"] == {"accuracy": pytest.approx(model.accuracy(data.images, data.labels))}


def test_on_originals_scores_each_size_against_its_own_labels(task_file):
    """Images of two sizes are scored per shape group, each image against its own label."""
    from simlink.data.base import ImageSet

    _, model = task_file
    data = load_dataset("synthetic", n_images=6, image_size=32, seed=3)
    big = load_dataset("synthetic", n_images=6, image_size=64, seed=3)
    images = [data.images[0], big.images[1], data.images[2], big.images[3], data.images[4], big.images[5]]
    labels = np.array([data.labels[0], big.labels[1], data.labels[2], big.labels[3], data.labels[4], big.labels[5]])
    mixed = ImageSet(images=images, labels=labels)
    got = Measure(mixed, task=model).on_originals()
    expected = np.mean([model.accuracy(im[None], lab[None]) for im, lab in zip(images, labels)])
    assert got == {"accuracy": pytest.approx(expected)}
    assert Measure(mixed).on_originals() == {}


def test_task_errors(tmp_path, tiny_scenario_dict):
    tiny_scenario_dict["task"] = {"model": "resnet99", "colour": 1}
    with pytest.raises(ScenarioError, match="task.colour: unknown key"):
        parse_scenario(tiny_scenario_dict)
    del tiny_scenario_dict["task"]["colour"]
    with pytest.raises(SimlinkError, match="task.model: 'resnet99' is neither one of espnet_camvid, resnet20_cifar10"):
        run_scenario(parse_scenario(tiny_scenario_dict), tmp_path / "r", quiet=True)
    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(SimlinkError, match="no class labels"):
        Measure(imgs, None, task=object())


def test_task_changes_the_context(tiny_scenario_dict, task_file):
    a = parse_scenario(tiny_scenario_dict).context_hash()
    tiny_scenario_dict["task"] = {"model": str(task_file[0])}
    assert parse_scenario(tiny_scenario_dict).context_hash() != a
