"""Receiver task models: ResNet-20 architecture, weight resolution, small CNN train/save/load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from simlink.data import load_dataset
from simlink.data.base import ImageSet
from simlink.errors import SimlinkError
from simlink.learned.context import TrainingContext
from simlink.registry import DuplicateName
from simlink.scenario import TaskTrainConfig
from simlink.tasks import (
    ARCHITECTURES,
    PRETRAINED,
    RESNET20_CIFAR10,
    TaskModel,
    WeightsRecord,
    build_architecture,
    load_resnet20_cifar10,
    load_state_dict,
    resnet20,
    register_architecture,
    resolve_weights,
    small_cnn,
    train_classifier,
)
from simlink.tasks.classifier import ClassifierStep, shift_crop, small_cnn_net
from simlink.tasks.loading import train_task_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CIFAR_TEST = SHARED / "data" / "cifar10" / "test.npz"
RESNET_WEIGHTS = SHARED / "weights" / RESNET20_CIFAR10.filename


@pytest.fixture
def isolated_home(isolated_home, tmp_path, monkeypatch):
    """conftest's fresh HOME, and no weights anywhere: torch hub and $SIMLINK_WEIGHTS point into tmp_path."""
    home = isolated_home
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("SIMLINK_WEIGHTS", str(tmp_path / "envweights"))
    return home


# ---------------------------------------------------------------------- ResNet-20
def _expected_resnet20_params(num_classes: int = 10) -> int:
    conv = lambda cin, cout: cin * cout * 3 * 3  # noqa: E731  (no bias)
    bn = lambda c: 2 * c  # noqa: E731  (weight + bias)
    total = conv(3, 16) + bn(16)
    cin = 16
    for planes in (16, 32, 64):
        for _ in range(3):
            total += conv(cin, planes) + bn(planes) + conv(planes, planes) + bn(planes)
            cin = planes  # option-A shortcut: no parameters
    return total + 64 * num_classes + num_classes


def test_resnet20_parameter_count_and_output_shape():
    net = resnet20()
    n = sum(p.numel() for p in net.parameters())
    assert n == _expected_resnet20_params() == 269_722
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(3, 3, 32, 32))
    assert out.shape == (3, 10)
    # checkpoint-style names
    names = set(net.state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer3.2.bn2.bias", "linear.weight"} <= names


def test_resnet20_taskmodel_predict_shapes():
    model = TaskModel(resnet20(), "resnet20", {"num_classes": 10})
    imgs = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    assert model.logits(imgs, batch_size=2).shape == (5, 10)
    pred = model.predict(imgs)
    assert pred.dtype == np.int64 and pred.shape == (5,)
    assert model.top_k_accuracy(imgs, pred, k=1) == 1.0
    assert model.top_k_accuracy(imgs, (pred + 1) % 10, k=10) == 1.0


# ---------------------------------------------------------------------- weights record
def _make_checkpoint(tmp_path: Path) -> tuple[Path, str]:
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    path = tmp_path / "tiny-ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_resolve_full_and_prefix_hash(tmp_path, isolated_home):
    path, digest = _make_checkpoint(tmp_path)
    rec = WeightsRecord("tiny", path.name, digest, num_classes=2)
    assert resolve_weights(rec, path) == path
    assert resolve_weights(rec, tmp_path) == path  # folder holding the file
    prefix = WeightsRecord("tiny", path.name, digest[:8], num_classes=2)
    assert prefix.is_prefix_hash and not rec.is_prefix_hash
    assert resolve_weights(prefix, path) == path
    state = load_state_dict(resolve_weights(rec, path))
    assert set(state) == {"weight", "bias"}  # "module." stripped
    # found through $SIMLINK_WEIGHTS and through the torch hub cache
    env = tmp_path / "envweights"
    env.mkdir()
    (env / path.name).write_bytes(path.read_bytes())
    assert resolve_weights(rec) == env / path.name
    (env / path.name).unlink()
    hub = isolated_home / ".cache" / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / path.name).write_bytes(path.read_bytes())
    assert resolve_weights(rec) == hub / path.name


def test_weights_corrupted_byte_names_both_hashes(tmp_path, isolated_home):
    path, digest = _make_checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    assert actual != digest
    with pytest.raises(SimlinkError) as exc:
        resolve_weights(WeightsRecord("tiny", path.name, digest, num_classes=2), path)
    assert digest in str(exc.value) and actual in str(exc.value)
    with pytest.raises(SimlinkError, match=digest[:8]):
        resolve_weights(WeightsRecord("tiny", path.name, digest[:8], num_classes=2), path)


def test_weights_missing_lists_every_path(tmp_path, isolated_home):
    rec = WeightsRecord("nothing", "absent-00000000.pth", "00000000", num_classes=2)
    explicit = tmp_path / "explicit" / rec.filename
    with pytest.raises(SimlinkError) as exc:
        resolve_weights(rec, explicit)
    msg = str(exc.value)
    for p in (
        explicit,
        tmp_path / "envweights" / rec.filename,
        isolated_home / ".cache" / "simlink" / "weights" / rec.filename,
        isolated_home / ".cache" / "torch" / "hub" / "checkpoints" / rec.filename,
    ):
        assert str(p) in msg
    with pytest.raises(SimlinkError, match="not found"):
        load_resnet20_cifar10(tmp_path / "nowhere")


@pytest.mark.shared_data
@pytest.mark.skipif(not (CIFAR_TEST.is_file() and RESNET_WEIGHTS.is_file()), reason="shared CIFAR-10 / weights absent")
def test_resnet20_pretrained_cifar10_accuracy():
    model = load_resnet20_cifar10(RESNET_WEIGHTS)
    assert model.num_trainable_parameters() == 0
    test = load_dataset("cifar10", "test", n_images=1000, root=SHARED / "data" / "cifar10")
    acc = model.accuracy(test.images, test.labels)
    print(f"ResNet-20 top-1 on 1000 shared (JPEG q75) CIFAR-10 test images: {acc:.3f}")
    # Observed 0.80 (2000 images: 0.8035): this copy is JPEG q75 with 4:2:0 chroma, which costs a 32x32
    # classifier ~11 points vs the 91.78 % reported on the originals; chance is 0.10.
    assert acc > 0.75


# ---------------------------------------------------------------------- small CNN
@pytest.fixture(scope="module")
def trained_small_cnn():
    train = load_dataset("synthetic", "train", n_images=2000, image_size=32, seed=0)
    model = small_cnn(num_classes=len(train.classes), width=16, seed=0)
    return train_classifier(model, train, epochs=10, lr=3e-3, batch_size=32, seed=0, augment=False)


def test_small_cnn_beats_chance(trained_small_cnn):
    test = load_dataset("synthetic", "test", n_images=500, image_size=32, seed=0)
    acc = trained_small_cnn.accuracy(test.images, test.labels)
    print(f"small CNN top-1 on 500 held-out synthetic images: {acc:.3f} (chance 0.125)")
    assert acc > 0.2
    assert trained_small_cnn.top_k_accuracy(test.images, test.labels, k=5) > acc


def test_small_cnn_save_load_freeze(trained_small_cnn, tmp_path):
    test = load_dataset("synthetic", "test", n_images=200, image_size=32, seed=0)
    path = tmp_path / "cnn.pt"
    trained_small_cnn.save(path)
    loaded = TaskModel.load(path)
    assert loaded.arch == "small_cnn" and loaded.classes == trained_small_cnn.classes
    np.testing.assert_array_equal(loaded.predict(test.images), trained_small_cnn.predict(test.images))
    np.testing.assert_allclose(loaded.logits(test.images), trained_small_cnn.logits(test.images), atol=1e-6)
    assert loaded.num_trainable_parameters() > 0
    loaded.freeze()
    assert loaded.num_trainable_parameters() == 0 and not loaded.net.training
    with pytest.raises(SimlinkError):
        TaskModel.load(tmp_path / "missing.pt")


def test_train_classifier_deterministic_with_augmentation():
    train = load_dataset("synthetic", "train", n_images=96, image_size=32, seed=0)
    runs = [
        train_classifier(small_cnn(9, width=8, seed=1), train, epochs=1, batch_size=32, seed=5).logits(train.images[:16])
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_shift_crop_is_a_per_image_shifted_window():
    x = torch.rand(5, 3, 8, 6)
    torch.manual_seed(3)
    out = shift_crop(x, pad=2)
    torch.manual_seed(3)
    dy, dx = torch.randint(0, 5, (5,)), torch.randint(0, 5, (5,))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(5):
        assert torch.equal(out[i], padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 6])


def test_train_classifier_checks_labels():
    train = load_dataset("synthetic", "train", n_images=8, image_size=32, seed=0)
    unlabelled = ImageSet(train.images, name="synthetic", split="train")
    with pytest.raises(SimlinkError, match="no labels"):
        train_classifier(small_cnn(9, width=4), unlabelled, epochs=1)
    with pytest.raises(SimlinkError, match=r"labels span .* but model has 2 classes"):
        train_classifier(small_cnn(2, width=4), train, epochs=1)


# ---------------------------------------------------------------------- cached, resumable task training
def _task_ctx(root: Path) -> TrainingContext:
    ds = SimpleNamespace(name="synthetic", root=None, image_size=32, download=False)
    return TrainingContext(ds, seed=1, cache_root=root, log=lambda s: None)


def test_killed_task_model_training_resumes(tmp_path, monkeypatch, one_torch_thread):
    cfg = TaskTrainConfig(n_images=64, epochs=2, batch_size=16, width=4)  # 4 steps per epoch
    ref = train_task_model("small_cnn", cfg, _task_ctx(tmp_path / "ref"))

    real_step, calls = ClassifierStep.step, []

    def dies_after_5(self, batch):
        calls.append(batch.step)
        if len(calls) > 5:
            raise KeyboardInterrupt  # as SIGTERM in the sweep does
        return real_step(self, batch)

    monkeypatch.setattr(ClassifierStep, "step", dies_after_5)
    with pytest.raises(KeyboardInterrupt):
        train_task_model("small_cnn", cfg, _task_ctx(tmp_path / "run"))
    (cache_dir,) = (tmp_path / "run" / "models" / "task").iterdir()
    assert (cache_dir / "checkpoint.pt").is_file() and not (cache_dir / "model.pt").exists()

    monkeypatch.setattr(ClassifierStep, "step", real_step)
    model = train_task_model("small_cnn", cfg, _task_ctx(tmp_path / "run"))
    info = json.loads((cache_dir / "info.json").read_text())
    assert info["resumed_from"] == [1, 1] and len(info["history"]) == 2 and info["key"]["loop"] == 2
    assert not (cache_dir / "checkpoint.pt").exists()
    for k, v in ref.net.state_dict().items():
        assert torch.equal(v, model.net.state_dict()[k]), k

    monkeypatch.setattr(ClassifierStep, "step", lambda self, batch: pytest.fail("trained again"))
    loaded = train_task_model("small_cnn", cfg, _task_ctx(tmp_path / "run"))  # a TaskModel.load file
    assert loaded.arch == "small_cnn" and loaded.classes == ref.classes
    for k, v in ref.net.state_dict().items():
        assert torch.equal(v, loaded.net.state_dict()[k]), k


# ---------------------------------------------------------------------- registries
def test_registries_refuse_duplicates():
    assert {"small_cnn", "resnet20"} <= set(ARCHITECTURES) and "resnet20_cifar10" in PRETRAINED
    with pytest.raises(DuplicateName, match="small_cnn"):
        register_architecture("small_cnn")(lambda **kw: None)
    with pytest.raises(DuplicateName, match="resnet20"):
        ARCHITECTURES.register("resnet20")(lambda **kw: None)
    with pytest.raises(DuplicateName, match="resnet20_cifar10"):
        PRETRAINED.register("resnet20_cifar10")(lambda path: None)
    assert ARCHITECTURES["small_cnn"] is small_cnn_net
    with pytest.raises(SimlinkError, match="unknown task architecture"):
        build_architecture("no_such_net")
