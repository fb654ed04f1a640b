"""Shared fixtures. Tests run on CPU and need no data outside the repository.

The golden tests pin float32 results of torch (Sionna's decoder, the learned codecs' transforms),
and torch's CPU kernels round differently per instruction set (its AVX2 and AVX-512 ``exp`` /
``log`` / convolutions differ in the last bits, which moves rounded latents and the decisions on
failing codewords). So, before torch is imported, the kernels are pinned to AVX2 on every x86
machine that has it (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``; a user's own setting wins):
the golden values then hold on any such machine, not only on the one that wrote them.
"""

from __future__ import annotations

import os
from pathlib import Path


def _pin_cpu_kernels() -> None:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return
    if "avx2" in flags and "fma" in flags:
        os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
        os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")


_pin_cpu_kernels()

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def tiny_scenario_dict() -> dict:
    """A scenario small enough to sweep in a few seconds on CPU."""
    return {
        "name": "tiny",
        "seed": 3,
        "device": "cpu",
        "dataset": {"name": "synthetic", "n_images": 4, "image_size": 32},
        "methods": [{"name": "jpeg", "quality": [20, 80]}],
        "link": {"code": {"k": 512, "n": 768, "num_iter": 10}, "modulation": 16},
        "channels": [{"name": "awgn"}],
        "snr_db": [0.0, 30.0],
    }


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: one intra-op thread is about as fast, and immune to CPU oversubscription
    (OpenMP threads waiting on a descheduled peer can be 10x slower when other jobs share the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """No real caches or SIMLINK_DATA leak into a test: HOME is a fresh folder, SIMLINK_DATA unset."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SIMLINK_DATA", raising=False)
    return home


def random_images(n: int = 24, size: int = 8, seed: int = 0):
    """``uint8[n, size, size, 3]`` uniform noise images (training-loop tests)."""
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def small_conv(seed: int = 0):
    """A two-layer 3 -> 4 -> 3 convolutional network with weights from ``seed``."""
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))


def without_timing(df):
    """The results table without its wall-clock column (``wall_s``), which differs between runs
    that are otherwise identical."""
    return df.drop(columns=["wall_s"], errors="ignore")
