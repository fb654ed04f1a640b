"""Plots that do not mislead (issue 12): error bars, honest BLER points and crossing, rate–distortion
panels that do not join loss regimes, compact legends for many operating points.

Every check is against values computed here from a hand-built table (scipy's Wilson interval,
the closed-form zero-error bound, plain weighted means), on the drawn matplotlib artists or on
the data helpers the figures are drawn from. Figures are captured instead of saved (fast).
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex, to_rgb
from matplotlib.container import ErrorbarContainer
from scipy import stats
from typer.testing import CliRunner

import simlink.plots as plots
import simlink.plots.bounds as bounds
from simlink.plots import (
    CONCEALED_NOTE,
    LOSSY_NOTE,
    bler_points,
    concealed_note,
    make_plots,
    method_styles,
    metric_points,
    plot_bler_vs_snr,
    plot_lost_vs_snr,
    plot_quality_vs_bpp,
    plot_quality_vs_snr,
    zero_error_bound,
)
from simlink.plots.bounds import bler_bounds, qam_limit_db, threshold_bracket
from simlink.plots.style import LIGHTEST, ops_summary, tint

SNRS = (0.0, 4.0, 8.0, 12.0)
N_IMAGES = {0: 4, 1: 12}  # repeat -> images
OPS = {"jpeg": (("q=15", 0.5), ("q=50", 1.0), ("q=85", 2.0)), "webp": (("q=30", 0.6), ("q=80", 1.6))}
CHANNELS = ("awgn", "rayleigh_block(block)")
P_BLOCK = {0.0: 1.0, 4.0: 0.3}  # 8 dB: one error per row (pooled BLER < 1e-2); 12 dB: none
LOST = {  # (snr, op index) -> lost_frac; 0 dB: every image lost and concealed; none lost at 12 dB
    **{(0.0, k): 1.0 for k in range(3)}, **{(s, k): 0.25 * k for s in (4.0, 8.0) for k in range(3)},
    **{(12.0, k): 0.0 for k in range(3)}}


def _table() -> pd.DataFrame:
    rows = []
    for rep, n in N_IMAGES.items():
        for m, ops in OPS.items():
            for k, (op, bpp) in enumerate(ops):
                for ch in CHANNELS:
                    for snr in SNRS:
                        n_blocks = 50 * (k + 1) * n // 4
                        errs = n_blocks if snr == 0 else round(n_blocks * P_BLOCK[snr]) if snr in P_BLOCK else (
                            1 if snr == 8.0 else 0)
                        lost = LOST[(snr, k)] if ch == "awgn" else min(1.0, LOST[(snr, k)] + 0.25 * (snr < 10))
                        rows.append(dict(
                            method=m, method_name=m, op=op, op_params=json.dumps({"q": op}), payload="digital",
                            bpp=bpp, cpp=bpp * 0.4, channel=ch, snr_db=snr, repeat=rep,
                            psnr=20.0 + 2 * snr + 3 * bpp + rep, psnr_ci=1.0 + rep + 0.1 * snr,
                            psnr_clean=30.0 + 3 * bpp, accuracy=0.95 - 0.02 * k, accuracy_ci=0.2,
                            accuracy_clean=0.9, ssim=0.5, ssim_ci=0.05, ms_ssim=0.5, ms_ssim_ci=0.05,
                            ssim_clean=0.9, ms_ssim_clean=0.9,
                            lost_frac=lost, lost_frac_ci=0.1, concealed_frac=lost if snr == 0 else 0.0,
                            n_images=n, n_blocks=n_blocks, n_block_errors=errs, bler=errs / n_blocks, bler_ci=0.01,
                            code_k=1024, code_n=1536, code_rate=2 / 3, modulation=16))
    return pd.DataFrame(rows)


TABLE = _table()


@pytest.fixture
def figs(monkeypatch):
    """``{name: Figure}`` of every figure drawn while the test runs; nothing is written."""
    drawn = {}

    def capture(fig, out_dir, name):
        drawn[name] = fig
        plt.close(fig)
        return [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]

    monkeypatch.setattr(plots, "_save", capture)
    monkeypatch.setattr(bounds, "_save", capture)
    return drawn


def labelled(ax) -> dict:
    return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}


def bars_of(ax, line) -> np.ndarray:
    """``[[low, high], ...]`` of the error bars drawn with ``line`` (NaN rows where none)."""
    (cont,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer) and c.lines[0] is line]
    out = []
    for seg in cont.lines[2][0].get_segments():
        out.append([seg[0][1], seg[1][1]] if len(seg) else [np.nan, np.nan])
    return np.array(out)


def no_bars(fig) -> bool:
    return not any(isinstance(c, ErrorbarContainer) for ax in fig.axes for c in ax.containers) and not any(
        isinstance(c, LineCollection) for ax in fig.axes for c in ax.collections)


# --------------------------------------------------------------------------------------------
# Error bars from the *_ci columns


def test_ci_of_averaged_repeats_is_the_image_weighted_mean_half_width():
    pts = metric_points(TABLE, ["method", "op", "channel", "snr_db"], "psnr").set_index(
        ["method", "op", "channel", "snr_db"])
    for (m, op, ch, snr), g in TABLE.groupby(["method", "op", "channel", "snr_db"]):
        w = g["n_images"].to_numpy(float)
        mean = np.average(g["psnr"], weights=w)
        half = np.average(g["psnr_ci"], weights=w)  # repeats share the images: no / sqrt(repeats)
        r = pts.loc[(m, op, ch, snr)]
        assert r["psnr"] == pytest.approx(mean) and r["low"] == pytest.approx(mean - half)
        assert r["high"] == pytest.approx(mean + half)
        rss = math.sqrt(np.sum((w * g["psnr_ci"]) ** 2)) / w.sum()  # the independent-repeats rule
        assert abs(half - rss) > 0.1  # the table tells the two rules apart
    # a repeat of unknown spread (NaN ci: one image) leaves the group without a bar
    one = TABLE.copy()
    one.loc[(one["repeat"] == 0) & (one["snr_db"] == 4.0), "psnr_ci"] = np.nan
    got = metric_points(one, ["method", "op", "channel", "snr_db"], "psnr")
    assert got.loc[got["snr_db"] == 4.0, "low"].isna().all() and got.loc[got["snr_db"] != 4.0, "low"].notna().all()
    # fractions stay inside [0, 1]; no *_ci column: no bounds
    acc = metric_points(TABLE, ["method", "op"], "accuracy")
    assert (acc["high"] <= 1.0).all() and (acc["high"] == 1.0).any()
    assert metric_points(TABLE.drop(columns="psnr_ci"), ["method"], "psnr")["low"].isna().all()


def test_lost_frac_bounds_are_wilson_intervals_of_the_image_counts():
    pts = metric_points(TABLE, ["method", "op", "channel", "snr_db"], "lost_frac").set_index(
        ["method", "op", "channel", "snr_db"])
    checked = 0
    for key, g in TABLE.groupby(["method", "op", "channel", "snr_db"]):
        lo, hi = [], []
        for p, n in zip(g["lost_frac"], g["n_images"]):
            ci = stats.binomtest(round(p * n), n).proportion_ci(0.95, method="wilson")
            lo.append(ci.low)
            hi.append(ci.high)
        w = g["n_images"].to_numpy(float)
        assert pts.loc[key, "low"] == pytest.approx(np.average(lo, weights=w), abs=1e-9)
        assert pts.loc[key, "high"] == pytest.approx(np.average(hi, weights=w), abs=1e-9)
        checked += pts.loc[key, "lost_frac"] == 0 and pts.loc[key, "high"] > 0.1  # not the symmetric ±ci
    assert checked > 5


def test_quality_vs_snr_draws_the_bars_and_error_bars_false_removes_them(figs, tmp_path):
    plot_quality_vs_snr(TABLE, "psnr", tmp_path)
    fig = figs["psnr_vs_snr"]
    ax = fig.axes[0]
    assert ax.get_title() == "awgn"
    line = labelled(ax)["jpeg q=50 (1.00 bpp)"]
    g = TABLE[(TABLE["method"] == "jpeg") & (TABLE["op"] == "q=50") & (TABLE["channel"] == "awgn")]
    exp = []
    for snr in SNRS:
        gs = g[g["snr_db"] == snr]
        mean, half = np.average(gs["psnr"], weights=gs["n_images"]), np.average(gs["psnr_ci"], weights=gs["n_images"])
        exp.append([mean - half, mean + half])
    np.testing.assert_allclose(line.get_xdata(), SNRS)
    np.testing.assert_allclose(bars_of(ax, line), exp)
    assert "bars: 95 % confidence intervals" in fig.legends[0].get_title().get_text()

    figs.clear()
    paths = make_plots(TABLE, tmp_path, error_bars=False)
    assert {"psnr_vs_snr", "psnr_vs_bpp", "accuracy_vs_bpp", "bler_vs_snr", "lost_vs_snr", "opta_vs_snr"} <= set(figs)
    assert len(paths) == 2 * len(figs)
    for name, f in figs.items():
        assert no_bars(f), name
        assert all("bars" not in (lg.get_title().get_text() or "") for lg in f.legends), name
    # the same lines without bars
    np.testing.assert_allclose(labelled(figs["psnr_vs_snr"].axes[0])["jpeg q=50 (1.00 bpp)"].get_ydata(),
                               np.mean(exp, axis=1))


# --------------------------------------------------------------------------------------------
# BLER: pooled, Wilson bars, zero-error upper bounds, an honest crossing


def test_bler_points_pool_methods_and_bound_zero_error_points():
    pts = bler_points(TABLE)
    assert len(pts) == len(CHANNELS) * len(SNRS)  # one curve per (channel, link setting): methods pooled
    for r in pts.itertuples():
        g = TABLE[(TABLE["channel"] == r.channel) & (TABLE["snr_db"] == r.snr_db)]
        n, k = int(g["n_blocks"].sum()), int(g["n_block_errors"].sum())
        assert (r.n_blocks, r.n_block_errors) == (n, k) and r.bler == pytest.approx(k / n)
        ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert r.low == pytest.approx(ci.low, abs=1e-12) and r.high == pytest.approx(ci.high, rel=1e-9)
        assert r.low <= r.bler <= r.high
        if k == 0:
            assert r.zero_errors and r.snr_db == 12.0
            assert r.y == pytest.approx(1 - 0.05 ** (1 / n)) and r.y == pytest.approx(3 / n, rel=0.01)
            # the bound is where 0 errors in n blocks has probability 5 %
            assert stats.binom.pmf(0, n, r.y) == pytest.approx(0.05)
        else:
            assert not r.zero_errors and r.y == r.bler
    assert zero_error_bound(1) == pytest.approx(0.95) and zero_error_bound(np.array([100, 1000])).shape == (2,)


def test_bler_points_of_payload_parts_count_each_block_once():
    """A two-part payload: one curve per part setting, with that part's own counts (not doubled
    when the rows are split into parts more than once)."""
    rows = [dict(method="layered", op="q=4", payload="digital", channel="awgn", snr_db=snr, repeat=0, n_images=4,
                 modulation=np.nan, code_k=np.nan, code_n=np.nan, n_blocks=156, n_block_errors=errs,
                 n_blocks_base=6, n_block_errors_base=0, modulation_base=4, code_k_base=512, code_n_base=1536,
                 n_blocks_detail=150, n_block_errors_detail=errs, modulation_detail=16, code_k_detail=1024,
                 code_n_detail=1536) for snr, errs in ((4.0, 150), (30.0, 0))]
    df = pd.DataFrame(rows)
    for table in (df, plots.link_setting_rows(df)):
        pts = bler_points(table).set_index(["code_k", "snr_db"])
        assert pts.loc[(512, 4.0), "n_blocks"] == 6 and pts.loc[(1024, 4.0), "n_blocks"] == 150
        assert pts.loc[(1024, 4.0), "bler"] == 1.0 and pts.loc[(1024, 30.0), "zero_errors"]
        assert pts.loc[(512, 30.0), "y"] == pytest.approx(1 - 0.05 ** (1 / 6))


def test_bler_figure_keeps_zero_error_points_and_says_it_is_pooled(figs, tmp_path):
    plot_bler_vs_snr(TABLE, tmp_path)
    fig = figs["bler_vs_snr"]
    (ax,) = fig.axes
    assert "pooled over all methods" in ax.get_title() and "code, modulation and channel" in ax.get_title()
    pts = bler_points(TABLE)
    zero_marks = [ln for ln in ax.get_lines() if ln.get_gid() == "bler-zero-bound"]
    assert len(zero_marks) == len(CHANNELS)
    for ch in CHANNELS:
        p = pts[pts["channel"] == ch]
        n = int(p.loc[p["snr_db"] == 12.0, "n_blocks"].iloc[0])
        (data,) = [ln for lb, ln in labelled(ax).items() if lb.startswith(f"{ch} (")]
        np.testing.assert_allclose(data.get_xdata(), [0.0, 4.0, 8.0])  # the points with errors, joined
        np.testing.assert_allclose(bars_of(ax, data), p[~p["zero_errors"]][["low", "high"]].to_numpy(), rtol=1e-9)
        (mark,) = [ln for ln in zero_marks if ln.get_color() == data.get_color()]
        assert mark.get_marker() == "v" and mark.get_linestyle() == "None"
        np.testing.assert_allclose(mark.get_xdata(), [12.0])
        np.testing.assert_allclose(mark.get_ydata(), [1 - 0.05 ** (1 / n)])
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("no block error: one-sided 95 % upper bound") for t in texts)
    assert "Wilson" in fig.legends[0].get_title().get_text()
    figs.clear()
    plot_bler_vs_snr(TABLE, tmp_path, error_bars=False)
    assert no_bars(figs["bler_vs_snr"]) and any(ln.get_gid() == "bler-zero-bound" for ln in figs["bler_vs_snr"].axes[0].get_lines())


def test_bler_crossing_is_marked_interpolated_or_bracketed(figs, tmp_path):
    b = bler_bounds(TABLE).set_index("channel").loc["awgn"]
    pooled = bler_points(TABLE).query("channel == 'awgn'").set_index("snr_db")["bler"]
    assert pooled[4.0] > 1e-2 > pooled[8.0] > 0
    y0, y1 = np.log10(pooled[4.0]), np.log10(pooled[8.0])
    thr = 4.0 + (-2 - y0) / (y1 - y0) * 4.0  # linear in log10 BLER between the bracketing points
    assert b["threshold_db"] == pytest.approx(thr)
    assert (b["threshold_kind"], b["bracket_lo_db"], b["bracket_hi_db"]) == ("interpolated", 4.0, 8.0)
    plot_bler_vs_snr(TABLE, tmp_path)
    (cross,) = [ln for ln in figs["bler_vs_snr"].axes[0].get_lines() if ln.get_gid() == "bler-threshold"]
    np.testing.assert_allclose(cross.get_xdata(), [thr])
    gap = thr - qam_limit_db(16, 2 / 3)
    assert cross.get_label() == (f"awgn: BLER 0.01 at ≈{thr:.1f} dB (interp. on log BLER between 4 and 8 dB), "
                                 f"gap ≈{gap:.1f} dB")
    # no error at all at 8 dB: only the bracket 4..8 dB is known, drawn as a bar, not a cross
    none8 = TABLE.assign(n_block_errors=TABLE["n_block_errors"].where(TABLE["snr_db"] != 8.0, 0))
    b = bler_bounds(none8).set_index("channel").loc["awgn"]
    assert (b["threshold_kind"], b["bracket_lo_db"], b["bracket_hi_db"], b["threshold_db"]) == ("bracket", 4, 8, 8)
    figs.clear()
    plot_bler_vs_snr(none8, tmp_path)
    lines = figs["bler_vs_snr"].axes[0].get_lines()
    assert not [ln for ln in lines if ln.get_gid() == "bler-threshold"]
    (bar,) = [ln for ln in lines if ln.get_gid() == "bler-threshold-bracket"]
    np.testing.assert_allclose(bar.get_xdata(), [4.0, 8.0])
    assert bar.get_label().startswith("awgn: BLER 0.01 between 4 and 8 dB (no block error at 8 dB), gap ≤")
    # a grid point exactly at the target, and no crossing at all
    assert threshold_bracket([0, 2, 4], [0.5, 0.01, 0.0]) == ("grid", 2.0, 2.0)
    assert threshold_bracket([0, 2], [0.5, 0.2])[0] is None and threshold_bracket([0, 2], [0.001, 0.0])[0] is None


# --------------------------------------------------------------------------------------------
# Rate–distortion panels


def test_rd_panels_grey_all_concealed_and_do_not_join_lossy_points(figs, tmp_path):
    plot_quality_vs_bpp(TABLE, "psnr", tmp_path)
    fig = figs["psnr_vs_bpp"]
    axes = [ax for ax in fig.axes if ax.get_visible()]
    by_title = {ax.get_title(): ax for ax in axes[:4]}  # the awgn row: 0, 8, 12 dB (3 of 4 SNRs), error-free
    zero = by_title["awgn, $E_s/N_0$ = 0 dB"]
    (note,) = [t for t in zero.texts if t.get_gid() == "concealed-note"]
    assert note.get_text() == CONCEALED_NOTE == "all images concealed"
    assert zero.get_facecolor()[:3] == pytest.approx(to_rgb("0.9")) and not zero.get_lines()
    assert concealed_note(TABLE[TABLE["snr_db"] == 0.0]) == CONCEALED_NOTE
    assert concealed_note(TABLE.drop(columns="concealed_frac")[TABLE["snr_db"] == 0.0]) == "all images lost"
    assert concealed_note(TABLE[TABLE["snr_db"] == 4.0]) is None
    assert list(by_title) == [f"awgn, $E_s/N_0$ = {s} dB" for s in (0, 8, 12)] + ["error-free"]
    mid = by_title["awgn, $E_s/N_0$ = 8 dB"]
    got = labelled(mid)
    # jpeg: q=15 lost nothing (solid line through it alone); q=50, q=85 lost images: hollow, not joined
    np.testing.assert_allclose(got["jpeg"].get_xdata(), [0.5])
    hollow = got["jpeg (images lost)"]
    np.testing.assert_allclose(hollow.get_xdata(), [1.0, 2.0])
    assert hollow.get_linestyle() == "None" and hollow.get_markerfacecolor() == "none"
    assert to_hex(hollow.get_color()) == to_hex(got["jpeg"].get_color())
    solid12 = labelled(by_title["awgn, $E_s/N_0$ = 12 dB"])
    assert set(solid12) == {"jpeg", "webp"} and solid12["jpeg"].get_linestyle() == "-"
    np.testing.assert_allclose(solid12["jpeg"].get_xdata(), [0.5, 1.0, 2.0])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["jpeg", "webp", LOSSY_NOTE]
    assert all(ax.get_xscale() == "linear" for ax in axes)


def test_log_rate_sets_a_log_rate_axis(figs, tmp_path):
    make_plots(TABLE, tmp_path, log_rate=True)
    for name in ("psnr_vs_bpp", "accuracy_vs_bpp"):
        axes = [ax for ax in figs[name].axes if ax.get_visible()]
        assert len(axes) == 8 and all(ax.get_xscale() == "log" for ax in axes), name
    assert all(ax.get_xscale() == "linear" for ax in figs["psnr_vs_snr"].axes)


# --------------------------------------------------------------------------------------------
# Many operating points: shades and a compact legend


def test_one_legend_entry_per_method_and_a_lightness_ramp(figs, tmp_path):
    plot_quality_vs_snr(TABLE, "psnr", tmp_path)
    plot_lost_vs_snr(TABLE, tmp_path)
    base = {m: s["color"] for m, s in method_styles(TABLE).items()}
    for name in ("psnr_vs_snr", "lost_vs_snr"):
        fig = figs[name]
        texts = [t.get_text() for t in fig.legends[0].get_texts()]
        assert texts == ["jpeg: q=15…85 (3 ops, 0.50–2.00 bpp)", "webp: q=30…80 (2 ops, 0.60–1.60 bpp)"], name
        assert "lighter = lower rate" in fig.legends[0].get_title().get_text()
        lines = labelled(fig.axes[0])
        assert len(lines) == 5  # still one line per (method, op)
        for m, ops in OPS.items():
            cols = [np.array(to_rgb(next(ln for lb, ln in lines.items() if lb.startswith(f"{m} {op}")).get_color()))
                    for op, _ in ops]  # ops listed from the lowest rate up
            assert to_hex(cols[-1]) == to_hex(base[m])  # the highest rate in the method's colour
            assert to_hex(cols[0]) == tint(base[m], LIGHTEST)
            light = [c.sum() for c in cols]
            assert all(a > b for a, b in zip(light, light[1:])), (name, m)  # lighter = lower rate
    assert tint("#000000", 0.5) == "#808080" and tint("#0072B2", 0.0) == "#0072b2"


def test_ops_summary_wording():
    assert ops_summary(["q=15", "q=50", "q=85"], [0.91, 1.45, 2.63]) == "q=15…85 (3 ops, 0.91–2.63 bpp)"
    assert ops_summary(["λ=0.01", "λ=0.1"], [0.44, 0.51]) == "λ=0.01…0.1 (2 ops, 0.44–0.51 bpp)"
    assert ops_summary(["r=8"], [0.9]) == "r=8 (0.90 bpp)"
    assert ops_summary(["α=0.2 β=0", "α=0.8 β=0.5"], [np.nan, np.nan], [0.25, 0.25]) == (
        "α=0.2 β=0…α=0.8 β=0.5 (2 ops, 0.25 cpp)")


# --------------------------------------------------------------------------------------------
# Command line and runner pass the plot options through


def test_cli_flags_reach_make_plots(tmp_path, monkeypatch, tiny_scenario_dict):
    from simlink.cli import app

    calls = []
    monkeypatch.setattr(plots, "make_plots", lambda df, out, **kw: calls.append(kw) or [])
    TABLE.to_parquet(tmp_path / "results.parquet")
    cli = CliRunner()
    assert cli.invoke(app, ["plot", str(tmp_path)]).exit_code == 0
    r = cli.invoke(app, ["plot", str(tmp_path), "--no-error-bars", "--log-rate"])
    assert r.exit_code == 0, r.output
    assert calls == [dict(error_bars=True, log_rate=False), dict(error_bars=False, log_rate=True)]

    import simlink.sweep.runner as runner

    seen = []
    monkeypatch.setattr(runner, "run_scenario", lambda sc, out, **kw: seen.append(kw) or TABLE)
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump(tiny_scenario_dict))
    r = cli.invoke(app, ["run", str(sc), "--out", str(tmp_path / "o"), "--quiet", "--no-error-bars", "--log-rate"])
    assert r.exit_code == 0, r.output
    assert seen[-1]["plot_options"] == dict(error_bars=False, log_rate=True) and seen[-1]["plots"] is True


def test_runner_passes_plot_options_to_make_plots(tmp_path, monkeypatch):
    import simlink.sweep.runner as runner

    got = {}
    monkeypatch.setattr(runner, "plan", lambda *a, **kw: "plan")
    monkeypatch.setattr(runner, "write_manifest", lambda p, f: {})
    monkeypatch.setattr(runner, "execute", lambda p, **kw: ("complete", 0))
    monkeypatch.setattr(runner, "finish", lambda *a, **kw: got.update(kw) or TABLE)
    runner.run_scenario(None, tmp_path / "o", quiet=True, plot_options={"log_rate": True})
    assert got["plot_options"] == {"log_rate": True} and got["plots"] is True
    monkeypatch.undo()

    drawn = []
    monkeypatch.setattr(plots, "make_plots", lambda df, out, **kw: drawn.append(kw) or [])
    monkeypatch.setattr(runner, "models_used", lambda p: [])
    p = SimpleNamespace(store=SimpleNamespace(frame=lambda: TABLE, write_manifest=lambda m: None), out_dir=tmp_path,
                        previous_runs=[], task_on_originals=None, device="cpu")
    for opts, expected in ((None, {}), ({"error_bars": False}, {"error_bars": False})):
        runner.finish(p, {}, "complete", 0, plots=True, sw=runner.Stopwatch(), started=datetime.now(timezone.utc),
                      t_start=time.perf_counter(), log=lambda s: None, plot_options=opts)
        assert drawn[-1] == expected
