"""The sweep end to end on tiny data: table contents against physics, determinism, resume,
interruption, encode-once caching, and the error policies."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import without_timing
from simlink.errors import SimlinkError
from simlink.metrics import psnr
from simlink.scenario import parse_scenario
from simlink.sweep import run_scenario
from simlink.metrics.measure import image_metrics
from simlink.sweep.receiver import CONCEALMENT_VALUE, PartDelivery, apply_error_policy, concealment_images
from simlink.sweep.runner import SweepInterrupted

REQUIRED = ["method", "op", "bpp", "cpp", "channel", "snr_db", "ebno_db", "psnr", "ssim", "ms_ssim",
            "bler", "lost_frac", "n_images", "psnr_ci", "bler_ci"]


def _run(d, out, **kw):
    return run_scenario(parse_scenario(d), out, quiet=True, plots=kw.pop("plots", False), **kw)


def test_table_matches_physics(tmp_path, tiny_scenario_dict):
    df = _run(tiny_scenario_dict, tmp_path / "r", plots=True)
    assert set(REQUIRED) <= set(df.columns)
    assert len(df) == 2 * 1 * 2  # ops x channels x snrs
    hi, lo = df[df.snr_db == 30.0], df[df.snr_db == 0.0]
    # 30 dB is far above the 2/3-rate 16-QAM threshold: nothing lost, quality = error-free quality
    assert (hi.bler == 0).all() and (hi.lost_frac == 0).all()
    np.testing.assert_allclose(hi.psnr, hi.psnr_clean)
    # 0 dB is far below it: every block fails, every image is the concealment image
    assert (lo.bler == 1).all() and (lo.lost_frac == 1).all()
    from simlink.data import load_dataset

    imgs = load_dataset("synthetic", n_images=4, image_size=32, seed=3).images
    conceal_psnr = psnr(imgs, concealment_images(4, imgs.shape[1:])).mean()
    np.testing.assert_allclose(lo.psnr, conceal_psnr)
    # rate bookkeeping: bpp from bytes; channel uses per pixel = blocks * n / log2(M) / pixels
    n_pix = 4 * 32 * 32
    np.testing.assert_allclose(df.cpp, df.n_blocks * 768 / 4 / n_pix)
    assert (df.groupby("op").bpp.nunique() == 1).all()
    assert df[df.op == "q=80"].bpp.iloc[0] > df[df.op == "q=20"].bpp.iloc[0]
    # Eb/N0 = Es/N0 - 10 log10(source bits per channel use)
    bits = df.bpp * n_pix
    np.testing.assert_allclose(df.ebno_db, df.snr_db - 10 * np.log10(bits / (df.cpp * n_pix)))
    # files
    out = tmp_path / "r"
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), df)
    assert len(pd.read_csv(out / "results.csv")) == len(df)
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and man["seed"] == 3 and "torch" in man["versions"]
    assert "encode" in man["runs"][-1]["stage_s"] and man["device"]["torch_device"] == "cpu"
    for name in ("psnr_vs_snr", "ssim_vs_snr", "psnr_vs_bpp", "bler_vs_snr"):
        assert (out / "plots" / f"{name}.pdf").stat().st_size > 0
        assert (out / "plots" / f"{name}.png").stat().st_size > 0


def test_same_seed_same_table(tmp_path, tiny_scenario_dict):
    tiny_scenario_dict["snr_db"] = [9.0, 10.0]  # the waterfall: random outcomes
    tiny_scenario_dict["channels"] = [{"name": "awgn"}, {"name": "rayleigh_block"}]
    a = _run(tiny_scenario_dict, tmp_path / "a")
    b = _run(tiny_scenario_dict, tmp_path / "b")
    pd.testing.assert_frame_equal(without_timing(a), without_timing(b))
    tiny_scenario_dict["seed"] = 4
    c = _run(tiny_scenario_dict, tmp_path / "c")
    assert not a[["bler", "psnr"]].equals(c[["bler", "psnr"]])


def test_resume_computes_only_new_cells(tmp_path, tiny_scenario_dict):
    out = tmp_path / "r"
    _run(tiny_scenario_dict, out)
    tiny_scenario_dict["snr_db"] = [0.0, 10.0, 30.0]
    df = _run(tiny_scenario_dict, out)
    runs = json.loads((out / "manifest.json").read_text())["runs"]
    assert [r["cells_computed"] for r in runs] == [4, 2]
    fresh = _run(tiny_scenario_dict, tmp_path / "fresh")
    pd.testing.assert_frame_equal(without_timing(df), without_timing(fresh))


def test_other_context_refuses_to_mix(tmp_path, tiny_scenario_dict):
    out = tmp_path / "r"
    _run(tiny_scenario_dict, out)
    tiny_scenario_dict["seed"] = 99
    with pytest.raises(SimlinkError, match="--overwrite"):
        _run(tiny_scenario_dict, out)
    assert len(_run(tiny_scenario_dict, out, overwrite=True)) == 4


def test_interrupt_saves_and_resume_matches(tmp_path, tiny_scenario_dict, monkeypatch):
    from simlink.phy import PartedLink

    tiny_scenario_dict["snr_db"] = [0.0, 8.0, 10.0, 30.0]
    fresh = _run(tiny_scenario_dict, tmp_path / "fresh")
    real = PartedLink.transmit
    calls = {"n": 0}

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # what Ctrl-C or SIGTERM delivers
        return real(self, *a, **k)

    monkeypatch.setattr(PartedLink, "transmit", flaky)
    out = tmp_path / "r"
    with pytest.raises(SweepInterrupted, match="rerun the same command to resume"):
        _run(tiny_scenario_dict, out)
    partial = pd.read_parquet(out / "results.parquet")
    assert len(partial) == 3
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind
    monkeypatch.setattr(PartedLink, "transmit", real)
    resumed = _run(tiny_scenario_dict, out)
    pd.testing.assert_frame_equal(without_timing(resumed), without_timing(fresh))


def test_encode_once_decode_only_hit_images(tmp_path, tiny_scenario_dict, monkeypatch):
    from simlink.methods.classic import ClassicCodec

    counts = {"encode": 0, "decode_images": 0}
    enc, dec = ClassicCodec.encode, ClassicCodec.decode

    def count_enc(self, images, op, keys=None):
        counts["encode"] += 1
        return enc(self, images, op, keys)

    def count_dec(self, payload, op, shape, keys=None):
        counts["decode_images"] += len(payload.streams)
        return dec(self, payload, op, shape, keys)

    monkeypatch.setattr(ClassicCodec, "encode", count_enc)
    monkeypatch.setattr(ClassicCodec, "decode", count_dec)
    tiny_scenario_dict["snr_db"] = [20.0, 25.0, 30.0]
    tiny_scenario_dict["channels"] = [{"name": "awgn"}, {"name": "rayleigh_fast"}]
    tiny_scenario_dict["error_policy"] = "decode_anyway"
    df = _run(tiny_scenario_dict, tmp_path / "r")
    assert counts["encode"] == 2  # once per operating point, not per SNR or channel
    assert (df.lost_frac == 0).all()
    assert counts["decode_images"] == 2 * 4  # only the error-free decode: no image was hit


def _fake_redecode(orig, received):
    """A re-decoder that shows a constant image for streams starting with b'ok', fails otherwise."""

    def redecode(idx):
        ok = np.array([received[i].startswith(b"ok") for i in idx])
        imgs = np.full((int(ok.sum()), *orig.shape[1:]), 200, np.uint8)
        return image_metrics(orig[idx[ok]], imgs), ok

    return redecode


def test_error_policies_per_image():
    rng = np.random.default_rng(0)
    orig = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    clean = image_metrics(orig, orig // 2)
    conceal = image_metrics(orig, concealment_images(4, orig.shape[1:]))
    sent = [b"ok-a", b"ok-b", b"ok-c", b"ok-d"]
    received = [b"ok-a", b"ok-X", b"XX-c", b"ok-Y"]  # 1: CRC failed but decodable; 2: undecodable; 3: undetected error
    image_ok = np.array([True, False, False, True])
    one_part = {"stream": PartDelivery(sent, received, image_ok)}
    c = apply_error_policy("conceal", one_part, clean, conceal, _fake_redecode(orig, received))
    assert c.lost.tolist() == [False, True, True, False]
    assert c.concealed.tolist() == [False, True, True, False]
    assert c.decoded_again == 1  # only image 3 (CRC passed, bytes differ)
    fake = image_metrics(orig, np.full_like(orig, 200))
    np.testing.assert_allclose(c.metrics["psnr"], [clean["psnr"][0], conceal["psnr"][1], conceal["psnr"][2], fake["psnr"][3]])
    d = apply_error_policy("decode_anyway", one_part, clean, conceal, _fake_redecode(orig, received))
    assert d.concealed.tolist() == [False, False, True, False]  # decoder failure falls back to concealment
    assert d.decoded_again == 3
    np.testing.assert_allclose(d.metrics["psnr"], [clean["psnr"][0], fake["psnr"][1], conceal["psnr"][2], fake["psnr"][3]])
    assert (concealment_images(1, (2, 2, 3)) == CONCEALMENT_VALUE).all()
    with pytest.raises(ValueError, match="conceal, decode_anyway"):
        apply_error_policy("drop", one_part, clean, conceal, _fake_redecode(orig, received))


def test_decode_anyway_never_crashes_on_corruption(tmp_path, tiny_scenario_dict):
    tiny_scenario_dict["error_policy"] = "decode_anyway"
    tiny_scenario_dict["snr_db"] = [7.0, 8.0, 9.0]  # corrupted blocks, some images partly decodable
    tiny_scenario_dict["methods"] = [{"name": "jpeg", "quality": [50]}, {"name": "webp", "quality": [50]}]
    df = _run(tiny_scenario_dict, tmp_path / "r")
    assert (df.concealed_frac <= df.lost_frac + 1e-12).all()
    assert np.isfinite(df.psnr).all()


def test_target_met_fraction_reports_unreachable_rates(tmp_path, tiny_scenario_dict):
    tiny_scenario_dict["methods"] = [{"name": "jpeg", "target_bpp": [0.1, 8.0]}]
    tiny_scenario_dict["snr_db"] = [30.0]
    df = _run(tiny_scenario_dict, tmp_path / "r")
    low, high = df[df.op == "bpp=0.10"].iloc[0], df[df.op == "bpp=8.00"].iloc[0]
    assert low.target_met_frac == 0.0 and low.bpp > 0.1  # headers alone exceed 0.1 bpp on 32x32
    assert high.target_met_frac == 1.0 and high.bpp <= 8.0


def test_folders_of_the_previous_hash_version_resume(tmp_path, tiny_scenario_dict):
    """A results folder written before hash version 2 (manifest and rows carrying the all-fields
    hashes) resumes: nothing is recomputed and the rows get the current method hash."""
    from simlink.methods import build_method
    from simlink.sweep.runner import legacy_method_hash, method_hash

    out = tmp_path / "r"
    tiny_scenario_dict["link"]["decoder"] = "sionna"  # folders of that version were decoded by Sionna
    sc = parse_scenario(tiny_scenario_dict)
    first = _run(tiny_scenario_dict, out)
    (v1,) = sc.legacy_context_hashes()
    assert v1 != sc.context_hash()
    m = build_method(sc.methods[0])
    old_m, new_m = legacy_method_hash(m), method_hash(m)
    assert old_m != new_m
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "context_hash": v1}))
    pd.read_parquet(out / "results.parquet").assign(method_hash=old_m).to_parquet(out / "results.parquet")
    again = _run(tiny_scenario_dict, out)
    runs = json.loads((out / "manifest.json").read_text())
    assert runs["runs"][-1]["cells_computed"] == 0 and runs["context_hash"] == sc.context_hash()
    assert (again.method_hash == new_m).all()
    pd.testing.assert_frame_equal(again, first)
    # ... but not by a run that decodes with the numba decoder (auto on a CPU)
    (out / "manifest.json").write_text(json.dumps({**manifest, "context_hash": v1}))
    with pytest.raises(SimlinkError, match="decoded by Sionna's LDPC decoder"):
        _run({**tiny_scenario_dict, "link": {**tiny_scenario_dict["link"], "decoder": "auto"}}, out)
    # a folder of another context is still refused
    (out / "manifest.json").write_text(json.dumps({**manifest, "context_hash": "0123456789abcdef"}))
    with pytest.raises(SimlinkError, match="different scenario context"):
        _run(tiny_scenario_dict, out)
