"""Capacity limits on ``bler_vs_snr`` and the separation (OPTA) figures (simlink.plots.bounds)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simlink.plots import make_plots
from simlink.plots.bounds import (
    bler_bounds,
    channel_capacity,
    clean_rd,
    ergodic_limit_db,
    opta_curve,
    plot_opta_vs_snr,
    qam_limit_db,
    representative_ops,
)
from simlink.theory.capacity import (
    awgn_capacity,
    gap_to_capacity_db,
    opta_distortion,
    rayleigh_ergodic_capacity,
    snr_for_rate,
)

SMALL_OUT = Path("/tmp/small_out/results.parquet")
OPS = {"jpeg": ((10, 0.5, 25.0), (50, 1.0, 30.0), (90, 2.0, 36.0)), "webp": ((75, 1.2, 33.0),)}
"""method -> (quality, bpp, error-free PSNR) per operating point."""


def _table(snrs=(0.0, 5.0, 10.0, 20.0), channels=("awgn", "rayleigh_block(image)")) -> pd.DataFrame:
    """16-QAM rate-2/3 link; every block lost below 9 dB, none above; cpp = bpp / (2/3 * 4) * 1.05."""
    rows = []
    for m, ops in OPS.items():
        for q, bpp, clean in ops:
            for ch in channels:
                for snr in snrs:
                    ok = snr > 9
                    rows.append(dict(method=m, op=f"q={q}", bpp=bpp, cpp=bpp / (8 / 3) * 1.05, channel=ch,
                                     snr_db=snr, repeat=0, psnr=clean if ok else 11.0, psnr_clean=clean,
                                     ssim=0.9 * ok, ms_ssim=0.9 * ok, ssim_clean=0.95, ms_ssim_clean=0.95,
                                     accuracy=0.8 if ok else 0.1, accuracy_clean=0.5 + bpp / 5,
                                     bler=float(not ok), lost_frac=float(not ok), n_images=4, n_blocks=10,
                                     n_block_errors=0 if ok else 10, code_k=1024, code_n=1536,
                                     code_rate=2 / 3, modulation=16))
    return pd.DataFrame(rows)


def test_capacity_limits_and_gap():
    assert qam_limit_db(16, 2 / 3) == pytest.approx(7.93, abs=0.01)
    assert ergodic_limit_db(16, 2 / 3) == pytest.approx(snr_for_rate(rayleigh_ergodic_capacity, 8 / 3))
    assert math.isnan(qam_limit_db(12, 2 / 3)) and math.isnan(qam_limit_db(16, 1.0))
    b = bler_bounds(_table()).set_index("channel")
    aw, ray = b.loc["awgn"], b.loc["rayleigh_block(image)"]
    assert aw["limit_db"] == pytest.approx(qam_limit_db(16, 2 / 3))
    assert aw["threshold_db"] == 10.0  # first zero-BLER point: the conservative estimate
    assert (aw["threshold_kind"], aw["bracket_lo_db"], aw["bracket_hi_db"]) == ("bracket", 5.0, 10.0)
    assert aw["gap_db"] == pytest.approx(gap_to_capacity_db(10.0, 16, 2 / 3))
    assert ray["limit_db"] == pytest.approx(ergodic_limit_db(16, 2 / 3)) and math.isnan(ray["threshold_db"])


def test_bler_bounds_without_crossing_or_code_rate_column():
    one = _table(snrs=(0.0,)).drop(columns="code_rate")  # a single SNR, BLER 1: no threshold
    b = bler_bounds(one)
    assert np.isnan(b["threshold_db"]).all() and np.isnan(b["gap_db"]).all()
    assert b["code_rate"].iloc[0] == pytest.approx(1024 / 1536)
    assert np.isfinite(b["limit_db"]).all()


def test_opta_curve_matches_the_theory_functions():
    df = _table()
    snr = np.linspace(-5.0, 25.0, 13)
    bpp = [b for _, b, _ in OPS["jpeg"]]
    clean = [c for _, _, c in OPS["jpeg"]]
    pts = clean_rd(df, "jpeg")
    np.testing.assert_allclose(pts["bpp"], bpp)
    np.testing.assert_allclose(pts["clean"], clean)
    for ch, cap in (("awgn", awgn_capacity), ("rayleigh_block(image)", rayleigh_ergodic_capacity)):
        assert channel_capacity(ch) is cap
        got = opta_curve(df, "jpeg", ch, 0.4, snr)
        np.testing.assert_allclose(got["capacity"], cap(snr))
        np.testing.assert_allclose(got["opta"], opta_distortion(bpp, clean, 0.4, cap(snr)), equal_nan=True)
    assert opta_curve(df, "webp", "awgn", 0.4)["opta"].isna().all()  # one operating point: no curve
    with pytest.raises(ValueError, match="no capacity"):
        opta_curve(df, "jpeg", "rician", 0.4)


def test_representative_op_is_nearest_to_the_median_cpp():
    reps = representative_ops(_table())
    # cpps are proportional to bpp (0.5, 1.0, 1.2, 2.0): median 1.1 -> jpeg's 1.0 bpp point
    assert list(reps["method"]) == ["jpeg"] and reps["op"].iloc[0] == "q=50"
    assert reps["rho"].iloc[0] == pytest.approx(1.0 / (8 / 3) * 1.05)


def test_make_plots_writes_the_bound_figures(tmp_path, monkeypatch):
    import simlink.plots
    import simlink.plots.bounds

    figs, original = {}, simlink.plots._save

    def capture(fig, out_dir, name):  # record the figure, then save it as usual
        figs[name] = fig
        return original(fig, out_dir, name)

    monkeypatch.setattr(simlink.plots.bounds, "_save", capture)  # bound at import time there
    monkeypatch.setattr(simlink.plots, "_save", capture)
    names = {p.name for p in make_plots(_table(), tmp_path)}
    for stem in ("opta_vs_snr", "opta_accuracy_vs_snr", "bler_vs_snr", "psnr_vs_snr"):
        assert {f"{stem}.pdf", f"{stem}.png"} <= names
    assert (tmp_path / "opta_vs_snr.pdf").read_bytes().startswith(b"%PDF")
    assert plot_opta_vs_snr(_table().query("method == 'webp'"), "psnr", tmp_path / "none") == []

    # bler_vs_snr: dotted limits in their channel's colour, the AWGN crossing bracketed by the grid
    lines = {ln.get_label(): ln for ln in figs["bler_vs_snr"].axes[0].get_lines()}
    awgn, ray = lines["awgn (40 blocks/pt)"], lines["rayleigh_block(image) (40 blocks/pt)"]
    for data in (awgn, ray):  # BLER 1 at 0 and 5 dB, 0 (not drawn) above
        np.testing.assert_allclose(data.get_xdata(), [0.0, 5.0])
        np.testing.assert_allclose(data.get_ydata(), [1.0, 1.0])
    qam, erg = qam_limit_db(16, 2 / 3), ergodic_limit_db(16, 2 / 3)
    dotted = {lb: ln for lb, ln in lines.items() if ln.get_linestyle() == ":"}
    assert set(dotted) == {f"16-QAM AWGN limit, R=0.667: {qam:.2f} dB",
                           f"Rayleigh ergodic limit (Gaussian input), R=0.667: {erg:.2f} dB"}
    for lb, ln in dotted.items():
        np.testing.assert_allclose(ln.get_xdata(), [qam, qam] if "AWGN" in lb else [erg, erg])
        assert ln.get_color() == (awgn if "AWGN" in lb else ray).get_color()
    # BLER 1 at 5 dB, no block error at 10 dB: the crossing is only bracketed, a bar over 5..10 dB
    assert not [ln for ln in lines.values() if ln.get_marker() == "x"]
    (bar,) = [ln for ln in lines.values() if ln.get_gid() == "bler-threshold-bracket"]
    np.testing.assert_allclose(bar.get_xdata(), [5.0, 10.0])
    np.testing.assert_allclose(bar.get_ydata(), [1e-2, 1e-2])
    assert bar.get_label() == f"awgn: BLER 0.01 between 5 and 10 dB (no block error at 10 dB), gap ≤{10.0 - qam:.2f} dB"
    assert bar.get_color() == awgn.get_color()

    # opta_vs_snr: jpeg q=50 (the median-cpp op) measured, and its error-free curve at rho * C
    rho = 1.0 / (8 / 3) * 1.05
    bpp, clean = [b for _, b, _ in OPS["jpeg"]], [c for _, _, c in OPS["jpeg"]]
    for ax, cap in zip(figs["opta_vs_snr"].axes, (awgn_capacity, rayleigh_ergodic_capacity)):
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert set(lines) == {f"jpeg q=50 (ρ={rho:.3g})", f"jpeg + capacity (OPTA, ρ={rho:.3g})"}
        meas, bound = lines[f"jpeg q=50 (ρ={rho:.3g})"], lines[f"jpeg + capacity (OPTA, ρ={rho:.3g})"]
        np.testing.assert_allclose(meas.get_xdata(), [0.0, 5.0, 10.0, 20.0])
        np.testing.assert_allclose(meas.get_ydata(), [11.0, 11.0, 30.0, 30.0])
        x = np.asarray(bound.get_xdata(), float)
        assert x[0] == 0.0 and x[-1] == 20.0 and {0.0, 5.0, 10.0, 20.0} <= set(x) and bound.get_linestyle() == "--"
        np.testing.assert_allclose(bound.get_ydata(), opta_distortion(bpp, clean, rho, cap(x)), equal_nan=True)


@pytest.mark.skipif(not SMALL_OUT.is_file(), reason="no realistic table at /tmp/small_out")
def test_opta_bound_is_above_the_measured_curve():
    df = pd.read_parquet(SMALL_OUT)
    checked = 0
    for r in representative_ops(df).itertuples():
        for ch in df["channel"].unique():
            meas = df[(df["method"] == r.method) & (df["op"] == r.op) & (df["channel"] == ch)]
            meas = meas.groupby("snr_db")["psnr"].mean()
            bound = opta_curve(df, r.method, ch, r.rho, meas.index).set_index("snr_db")["opta"]
            finite = bound.notna()
            assert (bound[finite] >= meas[finite] - 1e-6).all(), (r.method, ch)
            checked += int(finite.sum())
    assert checked > 0
