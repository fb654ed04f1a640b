"""A toy method written against the public method protocol only — this file is its whole
implementation, nothing outside it was edited to add it.

``toy_seg`` sends each image 4x subsampled and quantised to ``levels`` levels with a subtractive
dither: the transmitter adds a dither drawn from the image's seed, the receiver subtracts the same
draw, so it needs the seed its receiver will use and decodes *stochastically* from the per-image
seed. Its receiver refines the upsampled image with a small network and runs a segmentation head
on it, returned as the reception's ``seg_logits``; the two networks train with two optimisers
(one step each per batch) through the one training loop, against the masks of the batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from simlink.learned.settings import OptimSettings
from simlink.learned.trainer import Batch, Stage, TrainingStep, train_stages
from simlink.methods import (
    DigitalPayload,
    ImageKeys,
    Method,
    MethodConfig,
    OperatingPoint,
    Reception,
    register_method,
)

FACTOR = 4


def _dither(keys: ImageKeys, i: int, shape) -> np.ndarray:
    """Image ``i``'s dither, U(-1/2, 1/2) per sample, from its seed alone."""
    return keys.rng(i).uniform(-0.5, 0.5, size=shape)


def _down(images: np.ndarray) -> np.ndarray:
    n, h, w, c = images.shape
    return images.reshape(n, h // FACTOR, FACTOR, w // FACTOR, FACTOR, c).mean(axis=(2, 4)) / 255.0


class _Refiner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.body(x)).clamp(0.0, 1.0)


class _ToyStep(TrainingStep):
    """Two optimisers: the refiner learns to undo the coarse channel (MSE), then the segmentation
    head learns the masks from the refined image (cross-entropy)."""

    def __init__(self, refine: nn.Module, seg: nn.Module, levels: int, settings: OptimSettings) -> None:
        self.refine, self.seg, self.levels, self.settings = refine, seg, levels, settings

    def modules(self):
        return {"refine": self.refine, "seg": self.seg}

    def optimizers(self):
        return {"refine": torch.optim.Adam(self.refine.parameters(), lr=self.settings.lr),
                "seg": torch.optim.Adam(self.seg.parameters(), lr=3 * self.settings.lr)}

    def step(self, batch: Batch) -> dict[str, float]:
        x = batch.images
        small = F.avg_pool2d(x, FACTOR)
        dither = torch.rand_like(small) - 0.5  # the loop seeds torch per step: reproducible
        q = torch.clamp(torch.round(small * (self.levels - 1) + dither), 0, self.levels - 1)
        coarse = F.interpolate((q - dither) / (self.levels - 1), scale_factor=FACTOR, mode="nearest")
        out = self.refine(coarse)
        mse = F.mse_loss(out, x)
        self.optimise(mse, "refine")
        ce = F.cross_entropy(self.seg(out.detach()), batch.masks)
        self.optimise(ce, "seg")
        return {"loss": float(mse.detach() + ce.detach()), "mse": float(mse.detach()), "ce": float(ce.detach())}


class ToyConfig(MethodConfig):
    levels: list[int] = Field([4, 16], min_length=1)
    n_train: int = 64
    epochs: int = 1
    head: bool = False  # also classify: class logits from the segmentation of the non-background classes


@register_method
class ToySeg(Method):
    name = "toy_seg"
    kind = "digital"
    Config = ToyConfig
    description = "test only: dithered 4x subsampling, a refiner and a segmentation head"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.nets: dict[str, tuple[nn.Module, nn.Module]] = {}
        self.reports: list[dict] = []

    def operating_points(self):
        return [OperatingPoint(f"L={lv}", {"levels": lv}) for lv in self.config.levels]

    def fit(self, ctx) -> None:
        train = ctx.train_images("train", self.config.n_train)
        classes = len(train.classes)
        for op in self.operating_points():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ctx.seed)
                refine, seg = _Refiner(), nn.Conv2d(3, classes, 3, padding=1)
            settings = OptimSettings(epochs=self.config.epochs, batch_size=16, lr=1e-2)
            key = {"toy": op.params, "data": ctx.data_identity("train", self.config.n_train), "seed": ctx.seed,
                   "optim": settings.model_dump()}
            stage = Stage("joint", key, settings, lambda r=refine, s=seg, lv=op.params["levels"]:
                          _ToyStep(r, s, lv, settings))
            self.reports.append(train_stages("toy_seg", {"refine": refine, "seg": seg}, [stage], ctx,
                                             op_label=op.label, cache_root=ctx.cache_root, split="train",
                                             n_images=self.config.n_train, checkpoint_every_s=60.0,
                                             describe=f"toy {op.label}"))
            self.nets[op.label] = (refine.eval(), seg.eval())

    def training_report(self) -> list[dict]:
        return list(self.reports)

    def encode(self, images, op, keys=None):
        keys = self.image_keys(len(images), op, keys)
        levels = op.params["levels"]
        small = _down(images)
        streams = []
        for i in range(len(images)):
            q = np.clip(np.round(small[i] * (levels - 1) + _dither(keys, i, small[i].shape)), 0, levels - 1)
            streams.append(q.astype(np.uint8).tobytes())
        return DigitalPayload(streams)

    @torch.no_grad()
    def decode(self, payload, op, image_shape, keys=None):
        keys = self.image_keys(len(payload.streams), op, keys)
        levels = op.params["levels"]
        h, w = image_shape[:2]
        small_shape = (h // FACTOR, w // FACTOR, 3)
        refine, seg = self.nets[op.label]
        n = len(payload.streams)
        ok = np.array([len(s) == int(np.prod(small_shape)) for s in payload.streams])
        coarse = np.zeros((n, *small_shape))
        for i in np.flatnonzero(ok):
            q = np.frombuffer(payload.streams[i], np.uint8).reshape(small_shape).astype(np.float64)
            coarse[i] = (q - _dither(keys, i, small_shape)) / (levels - 1)
        x = torch.from_numpy(coarse).float().permute(0, 3, 1, 2)
        out = refine(F.interpolate(x, scale_factor=FACTOR, mode="nearest"))
        images = (out * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        seg_logits = seg(out).numpy()
        outputs = {"seg_logits": seg_logits}
        if self.config.head:
            outputs["class_logits"] = seg_logits.mean(axis=(2, 3)) + np.eye(seg_logits.shape[1])[0] * -1e3
        return Reception(images, ok, outputs)


def _scenario(n_images: int = 6) -> dict:
    return {
        "name": "toy", "seed": 5, "device": "cpu",
        "dataset": {"name": "synthetic", "n_images": n_images, "image_size": 32},
        "methods": [{"name": "toy_seg", "levels": [4, 16]}, {"name": "jpeg", "quality": [50]}],
        "link": {"code": {"k": 512, "n": 768, "num_iter": 10}, "modulation": 16},
        "channels": [{"name": "awgn"}],
        "snr_db": [0.0, 20.0],
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from simlink.learned.context import TrainingContext
    from simlink.methods import build_method
    from simlink.scenario import parse_scenario

    root = tmp_path_factory.mktemp("toy")
    sc = parse_scenario(_scenario())
    m = build_method(sc.methods[0])
    m.fit(TrainingContext(dataset=sc.dataset, seed=sc.seed, device="cpu", cache_root=root, log=lambda s: None))
    return sc, m, root


def test_toy_method_sweeps_without_any_edit_outside_its_module(trained, tmp_path):
    from simlink.sweep import run_scenario

    sc, _, root = trained
    df = run_scenario(sc, tmp_path / "out", quiet=True, plots=False, cache_root=root)
    toy = df[df.method == "toy_seg"]
    assert sorted(toy.op) == ["L=16", "L=16", "L=4", "L=4"]
    hi, lo = toy[toy.snr_db == 20.0], toy[toy.snr_db == 0.0]
    np.testing.assert_allclose(hi.psnr, hi.psnr_clean)  # error-free: the same as the clean reconstruction
    assert (lo.lost_frac == 1).all() and (hi.lost_frac == 0).all()
    assert hi[hi.op == "L=16"].psnr.iloc[0] > hi[hi.op == "L=4"].psnr.iloc[0]  # the rate knob works
    np.testing.assert_allclose(toy.bpp, [8 * (32 // 4) ** 2 * 3 / 32**2] * 4)  # one byte per coarse sample
    # a second run of the same scenario gives the same table: the stochastic receiver is seeded
    again = run_scenario(sc, tmp_path / "again", quiet=True, plots=False, cache_root=root)
    assert again[["psnr", "ssim", "bler"]].equals(df[["psnr", "ssim", "bler"]])


def test_two_optimisers_trained_and_cached(trained):
    from simlink.learned.context import TrainingContext

    sc, m, root = trained
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sc.seed)
        fresh_refine = _Refiner()
        fresh_seg = nn.Conv2d(3, m.nets["L=4"][1].out_channels, 3, padding=1)
    refine, seg = m.nets["L=4"]
    assert not torch.equal(refine.body[0].weight, fresh_refine.body[0].weight)  # refiner's optimiser stepped
    assert not torch.equal(seg.weight, fresh_seg.weight)  # the segmentation head's optimiser stepped
    last = m.training_report()[0]["last_epoch"]
    assert {"loss", "mse", "ce", "lr", "lr_seg"} <= set(last) and last["lr_seg"] == pytest.approx(3 * last["lr"])
    again = type(m)(m.config)
    again.fit(TrainingContext(dataset=sc.dataset, seed=sc.seed, device="cpu", cache_root=root, log=lambda s: None))
    assert [r["status"] for r in again.training_report()] == ["cached", "cached"]
    assert torch.equal(again.nets["L=4"][1].weight, seg.weight)


def test_stochastic_decode_depends_on_the_image_seed_not_the_batch(trained):
    from simlink.data import load_dataset
    from simlink.metrics import psnr

    sc, m, _ = trained
    op = m.operating_points()[0]
    d = sc.dataset
    images = load_dataset(d.name, split=d.split, n_images=d.n_images, image_size=d.image_size, seed=sc.seed).images
    keys = ImageKeys.derive(np.arange(len(images)), sc.seed, "toy_seg", op.label)
    payload = m.encode(images, op, keys)
    full = m.decode(payload, op, images.shape[1:], keys)
    assert full.ok.all() and full.outputs["seg_logits"].shape == (len(images), 9, 32, 32)
    # images 4 and 1 decoded alone, in another order: exactly what they were in the full batch
    pick = np.array([4, 1])
    part = m.decode(DigitalPayload([payload.streams[i] for i in pick]), op, images.shape[1:], keys.take(pick))
    np.testing.assert_array_equal(part.images, full.images[pick])
    np.testing.assert_array_equal(part.outputs["seg_logits"], full.outputs["seg_logits"][pick])
    # the seed matters: the receiver that draws another image's dither decodes worse
    wrong = m.decode(payload, op, images.shape[1:], keys.take(np.roll(np.arange(len(images)), 1)))
    assert psnr(images, wrong.images).mean() < psnr(images, full.images).mean() - 0.3
    # the seeds come from (scenario seed, method, op, image index): another op, other seeds
    other = ImageKeys.derive(np.arange(len(images)), sc.seed, "toy_seg", "L=16")
    assert not np.array_equal(other.seeds, keys.seeds)
    assert np.array_equal(ImageKeys.derive(pick, sc.seed, "toy_seg", op.label).seeds, keys.seeds[pick])


def test_the_readme_example_method_works(tmp_path):
    """The example under "Adding a method" in the README is code that runs: registered, swept."""
    import re

    from simlink.scenario import parse_scenario
    from simlink.sweep import run_scenario

    from conftest import REPO

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Adding a method"):]
    section = section[:section.index("\n## ", 3)]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace = {"np": np, "Method": Method, "MethodConfig": MethodConfig, "OperatingPoint": OperatingPoint,
                 "DigitalPayload": DigitalPayload, "Reception": Reception, "register_method": register_method}
    from simlink.methods import METHODS

    exec(compile(code, "README.md", "exec"), namespace)
    try:
        d = _scenario(4)
        d["methods"] = [{"name": "blur", "factor": [2, 4]}]
        d["snr_db"] = [25.0]
        df = run_scenario(parse_scenario(d), tmp_path / "out", quiet=True, plots=False)
    finally:
        METHODS.unregister("blur")
    assert df.op.tolist() == ["k=2", "k=4"] and (df.lost_frac == 0).all()
    np.testing.assert_allclose(df.bpp, [24 / 4, 24 / 16])  # 8 bits x 3 channels per kept sample
    assert df.psnr.iloc[0] > df.psnr.iloc[1] > 10


PLUGIN = '''
import numpy as np
from simlink.methods import DigitalPayload, Method, MethodConfig, OperatingPoint, Reception, register_method


@register_method
class RawCopy(Method):
    name, kind, description = "plugin_raw", "digital", "test plugin: raw pixels"
    Config = MethodConfig

    def operating_points(self):
        return [OperatingPoint("raw")]

    def encode(self, images, op, keys=None):
        return DigitalPayload([im.tobytes() for im in images])

    def decode(self, payload, op, shape, keys=None):
        ok = np.array([len(s) == np.prod(shape) for s in payload.streams])
        out = np.zeros((len(ok), *shape), np.uint8)
        for i in np.flatnonzero(ok):
            out[i] = np.frombuffer(payload.streams[i], np.uint8).reshape(shape)
        return Reception(out, ok)
'''


def test_a_plugin_file_adds_a_method_to_the_command_line(tmp_path, monkeypatch):
    """``plugins:`` imports a user's module before the scenario is validated, so ``simlink
    validate`` / ``run`` know its methods with no edit to simlink."""
    import yaml
    from typer.testing import CliRunner

    from simlink.cli import app

    (tmp_path / "my_methods.py").write_text(PLUGIN)
    d = _scenario(4)
    d["methods"] = [{"name": "plugin_raw"}]
    d["snr_db"] = [30.0]
    d["plugins"] = ["my_methods.py"]
    monkeypatch.chdir(tmp_path)  # relative to the current folder
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(d))
    runner = CliRunner()
    r = runner.invoke(app, ["validate", "s.yaml"])
    assert r.exit_code == 0 and "1 operating points" in r.output, r.output
    r = runner.invoke(app, ["run", "s.yaml", "--out", "out", "--quiet", "--no-plots"])
    assert r.exit_code == 0, r.output
    import pandas as pd

    row = pd.read_parquet(tmp_path / "out" / "results.parquet").iloc[0]
    assert row.method == "plugin_raw" and row.bpp == 24.0 and row.psnr == 100.0  # lossless: capped PSNR
    d["plugins"] = ["missing_methods.py"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(d))
    r = runner.invoke(app, ["validate", "bad.yaml"])
    assert r.exit_code == 2 and "plugins.0: cannot import 'missing_methods.py'" in " ".join(r.output.split())


def test_a_head_on_a_digital_method_scores_lost_images_as_failures(trained, tmp_path):
    """A digital receiver with a classification head (``class_logits``): its head gives
    ``accuracy``; an image whose payload is lost gives the head nothing, so it scores 0."""
    from simlink.scenario import parse_scenario
    from simlink.sweep import run_scenario

    _, _, root = trained
    d = _scenario()
    d["methods"] = [{"name": "toy_seg", "levels": [16], "head": True}]
    d["snr_db"] = [0.0, 9.0, 20.0]
    df = run_scenario(parse_scenario(d), tmp_path / "out", quiet=True, plots=False, cache_root=root)
    assert {"accuracy", "accuracy_clean"} <= set(df.columns) and "recon_accuracy" not in df.columns  # no task
    lo, hi = df[df.snr_db == 0.0].iloc[0], df[df.snr_db == 20.0].iloc[0]
    assert lo.lost_frac == 1.0 and lo.accuracy == 0.0
    assert hi.lost_frac == 0.0 and hi.accuracy == hi.accuracy_clean
    mid = df[df.snr_db == 9.0].iloc[0]
    assert mid.accuracy <= (1 - mid.lost_frac) + 1e-12  # lost images never count as right
