"""Bjøntegaard-delta report (simlink.analysis.report) and ``simlink report``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from simlink.analysis import ERROR_FREE, bd_table
from simlink.cli import app
from simlink.errors import SimlinkError

ANCHOR_BPP = (0.25, 0.5, 1.0, 2.0)
SNRS = (0.0, 10.0, 20.0)
CHANNELS = ("awgn", "rayleigh_fast")


def _psnr(bpp, snr):
    """A rate-quality law linear in log2(bpp), lower at low SNR (as if blocks were lost)."""
    return 30.0 + 5.0 * np.log2(bpp) - (8.0 if snr < 5 else 0.0)


def _table(rate_factor: float = 0.9, psnr_shift: float = 0.0) -> pd.DataFrame:
    """Anchor ``jpeg`` and test ``webp`` whose points are the anchor's with bpp x ``rate_factor``
    at the same PSNR, plus ``psnr_shift`` dB; two repeats (+-0.5 dB around the value)."""
    rows = []
    for method, factor, shift in (("jpeg", 1.0, 0.0), ("webp", rate_factor, psnr_shift)):
        for i, b in enumerate(ANCHOR_BPP):
            for ch in CHANNELS:
                for snr in SNRS:
                    for rep, noise in enumerate((-0.5, 0.5)):
                        p = _psnr(b, snr) + shift
                        rows.append(dict(method=method, op=f"q={i}", bpp=b * factor, cpp=b, channel=ch, snr_db=snr,
                                         repeat=rep, psnr=p + noise, psnr_clean=_psnr(b, 20.0) + shift,
                                         ssim=0.5, n_images=4))
    return pd.DataFrame(rows)


def test_bd_rate_is_the_rate_factor_at_every_snr():
    bd = bd_table(_table(rate_factor=0.9), "jpeg")
    assert list(bd.columns[:3]) == ["channel", "snr_db", "method"]
    assert len(bd) == len(CHANNELS) * len(SNRS) + 1  # plus the error-free row
    assert set(bd["method"]) == {"webp"} and (bd["n_points"] == 4).all() and (bd["n_anchor"] == 4).all()
    np.testing.assert_allclose(bd["bd_rate"], -10.0, atol=1e-9)
    # PSNR is linear in log2(bpp) with slope 5: a 0.9x rate is worth -5 log2(0.9) dB at equal rate.
    np.testing.assert_allclose(bd["bd_metric"], -5.0 * math.log2(0.9), atol=1e-9)
    free = bd[bd["channel"] == ERROR_FREE]
    assert len(free) == 1 and math.isnan(free["snr_db"].iloc[0])
    assert bd["channel"].iloc[-1] == ERROR_FREE  # measured channels first, in table order
    assert list(bd.loc[bd["channel"] == "awgn", "snr_db"]) == list(SNRS)


def test_metric_shift_gives_bd_metric():
    bd = bd_table(_table(rate_factor=1.0, psnr_shift=1.5), "jpeg")
    np.testing.assert_allclose(bd["bd_metric"], 1.5, atol=1e-9)
    # +1.5 dB on a 5 dB-per-octave law = the same quality at 2^-0.3 times the rate.
    np.testing.assert_allclose(bd["bd_rate"], (2.0**-0.3 - 1.0) * 100.0, atol=1e-9)


def test_too_few_points_or_no_overlap_is_nan():
    df = _table()
    one_op = df[(df["method"] == "jpeg") & (df["op"] == "q=0")].assign(method="one")
    far = df[df["method"] == "jpeg"].assign(method="far", bpp=lambda d: d["bpp"] * 100, psnr=lambda d: d["psnr"] + 90,
                                            psnr_clean=lambda d: d["psnr_clean"] + 90)
    bd = bd_table(pd.concat([df, one_op, far]), "jpeg").set_index(["channel", "snr_db", "method"])
    assert bd.xs("one", level="method")[["bd_rate", "bd_metric"]].isna().all().all()
    assert bd.xs("far", level="method")[["bd_rate", "bd_metric"]].isna().all().all()
    assert (bd.xs("one", level="method")["n_points"] == 1).all()
    # cubic needs 4 points: the 4-point curves still work
    cubic = bd_table(df, "jpeg", method="cubic")
    np.testing.assert_allclose(cubic["bd_rate"], -10.0, atol=1e-6)


def test_missing_anchor_metric_or_method_names_what_exists():
    df = _table()
    with pytest.raises(SimlinkError, match=r"anchor 'bpg'.*methods: jpeg, webp"):
        bd_table(df, "bpg")
    with pytest.raises(SimlinkError, match=r"metric 'accuracy'.*available: psnr, ssim"):
        bd_table(df, "jpeg", metric="accuracy")
    with pytest.raises(SimlinkError, match="pchip"):
        bd_table(df, "jpeg", method="spline")


def test_bd_where_every_method_is_concealed_is_nan(tmp_path):
    """At an SNR where both methods show only the concealment image, their 'curves' are the same
    constant: no BD value exists (it would be round-off), and the CLI prints –."""
    df = _table(rate_factor=0.9)
    df["concealed_frac"] = 0.0
    low = df["snr_db"] == SNRS[0]
    df.loc[low, "psnr"] = 11.5  # the concealment image's PSNR, the same for every op
    df.loc[low, "concealed_frac"] = 1.0
    bd = bd_table(df, "jpeg")
    assert bd.loc[bd["snr_db"] == SNRS[0], ["bd_rate", "bd_metric"]].isna().all().all()
    np.testing.assert_allclose(bd.loc[bd["snr_db"] > SNRS[0], "bd_rate"], -10.0, atol=1e-9)
    df.to_parquet(tmp_path / "results.parquet")
    r = CliRunner().invoke(app, ["report", str(tmp_path), "--anchor", "jpeg", "--snr", str(SNRS[0])])
    assert r.exit_code == 0, r.output
    row = next(ln for ln in r.output.splitlines() if "webp" in ln)
    assert row.count("–") >= 2 and "e-1" not in row


def test_cli_report_writes_csv(tmp_path):
    _table().to_parquet(tmp_path / "results.parquet")
    runner = CliRunner()
    r = runner.invoke(app, ["report", str(tmp_path), "--anchor", "jpeg", "--snr", "10", "--snr", "20"])
    assert r.exit_code == 0, r.output
    assert "BD-rate" in r.output and "webp" in r.output and "-10.00" in r.output
    csv = pd.read_csv(tmp_path / "report_bd_psnr.csv")
    assert set(csv["snr_db"].dropna()) == {10.0, 20.0} and (csv["channel"] == ERROR_FREE).sum() == 1
    np.testing.assert_allclose(csv["bd_rate"], -10.0, atol=1e-9)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file
    r = runner.invoke(app, ["report", str(tmp_path), "--anchor", "bpg"])
    assert r.exit_code == 2 and "methods: jpeg, webp" in r.output
    r = runner.invoke(app, ["report", str(tmp_path), "--anchor", "jpeg", "--snr", "15"])
    assert r.exit_code == 2 and "it has 0, 10, 20" in r.output
    r = runner.invoke(app, ["report", str(tmp_path / "nothing"), "--anchor", "jpeg"])
    assert r.exit_code == 2 and "no results table" in r.output
