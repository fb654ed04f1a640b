"""A real `simlink run` process stopped by SIGTERM or SIGKILL leaves only complete files, and
rerunning the same command finishes the sweep with the same table as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, SHARED_DATA, without_timing


def _scenario(tmp_path: Path, d: dict) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _cmd(scenario: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "simlink.cli", "run", str(scenario), "--out", str(out), "--quiet", "--no-plots"]


def _long_scenario(d: dict) -> dict:
    d = dict(d)
    # first operating point finishes (and is flushed) quickly; the second has many cells left
    d["methods"] = [{"name": "jpeg", "quality": [20]}, {"name": "webp", "quality": [90]}]
    d["snr_db"] = [round(0.25 * i, 2) for i in range(32)]  # below threshold: full BP iterations
    return d


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killed_run_resumes_to_the_same_table(tmp_path, tiny_scenario_dict, sig):
    sc = _scenario(tmp_path, _long_scenario(tiny_scenario_dict))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_cmd(sc, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    table = out / "results.parquet"
    deadline = time.time() + 120
    while not table.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, err.decode()
        assert b"rerun the same command to resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    partial = pd.read_parquet(table)  # complete, readable file
    assert 0 < len(partial) < 64
    assert not list(out.glob(".*.tmp")) or sig == signal.SIGKILL
    done = subprocess.run(_cmd(sc, out), env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    fresh_out = tmp_path / "fresh"
    assert subprocess.run(_cmd(sc, fresh_out), env=env, capture_output=True).returncode == 0
    pd.testing.assert_frame_equal(without_timing(pd.read_parquet(table)),
                                  without_timing(pd.read_parquet(fresh_out / "results.parquet")))


@pytest.mark.shared_data
@pytest.mark.skipif(
    not ((SHARED_DATA / "cifar10" / "test.npz").exists() and (SHARED_DATA.parent / "weights" / "resnet20-12fca82f.th").exists()),
    reason="../shared/data/cifar10 or ../shared/weights absent",
)
def test_paper_scenario_on_real_cifar10(tmp_path):
    """The TOSC-SR baseline scenario, shrunk (fewer images and SNRs), on the real CIFAR-10 copy."""
    from simlink.scenario import load_scenario
    from simlink.sweep import run_scenario

    sc = load_scenario(REPO / "scenarios" / "classic_cifar10_paper.yaml")
    sc = sc.model_copy(update={
        "dataset": sc.dataset.model_copy(update={"n_images": 8, "root": str(SHARED_DATA / "cifar10")}),
        "snr_db": [4.0, 30.0],
        "task": sc.task.model_copy(update={"weights": str(SHARED_DATA.parent / "weights" / "resnet20-12fca82f.th")}),
    })
    df = run_scenario(sc, tmp_path / "r", quiet=True, plots=False)
    hi = df[df.snr_db == 30.0]
    assert (hi[hi.channel == "awgn"].lost_frac == 0).all()
    low = df[df.snr_db == 4.0]
    assert (low[low.channel == "awgn"].lost_frac == 1).all()  # below threshold (fading may get a lucky draw)
    # the receiver's ResNet-20 sees the error-free images at high SNR and grey images below threshold
    assert (hi.accuracy_clean >= 0).all() and hi.accuracy.notna().all()
    best = hi[(hi.method == "jpeg2000") & (hi.channel == "awgn")].sort_values("bpp").iloc[-1]
    assert best.accuracy > low[low.channel == "awgn"].accuracy.max()
    # on real photos a higher target rate buys quality
    clean = df.groupby(["method", "op"]).agg(bpp=("bpp", "mean"), psnr=("psnr_clean", "mean")).reset_index()
    for _, g in clean.groupby("method"):
        g = g.sort_values("bpp")
        assert g.psnr.is_monotonic_increasing
