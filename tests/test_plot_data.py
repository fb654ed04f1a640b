"""What :func:`simlink.plots.make_plots` draws, checked against the table it was given.

``make_plots`` runs once (module fixture) on a synthetic table with its ``_save`` replaced by a
wrapper that records each figure before the original saves and closes it. Every data line of
every figure is then compared with values computed here from the table with plain pandas/numpy
(weighted means via ``np.average``, pooled block counts, ...), never with the plotting helpers.

The table is built so that the usual mistakes change the numbers: two repeats with 4 and 12
images and different values (an unweighted mean is off), metrics that depend on the channel
(pooling channels is off), block counts that differ per operating point (mean-of-BLER is not the
pooled BLER), per-repeat bpp/cpp (the rate labels and x positions move), an analog method
(``payload="analog"``, bpp NaN) on every channel plus an analog-only channel (it must show in the
``*_vs_snr`` quality figures and the trade-off, nowhere in the bit/block figures).
:func:`test_the_table_discriminates` asserts those differences exist, so the checks can fail.
"""

from __future__ import annotations

import json
import math
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import simlink.plots as plots
import simlink.plots.bounds as bounds
from simlink.plots import METRIC_LABELS, make_plots
from simlink.theory.capacity import (
    awgn_capacity,
    opta_distortion,
    qam_capacity,
    rayleigh_ergodic_capacity,
    snr_for_rate,
)

SNRS = (0.0, 4.0, 8.0, 12.0, 16.0)
DIGITAL_CHANNELS = ("awgn", "rayleigh_block(image)")
ANALOG_ONLY_CHANNEL = "rayleigh_fast"
CHANNELS = DIGITAL_CHANNELS + (ANALOG_ONLY_CHANNEL,)
N_IMAGES = {0: 4, 1: 12}  # repeat -> images: weighting by n_images matters
DIGITAL_OPS = {  # method -> (op label, base bpp, base error-free PSNR)
    "jpeg": (("q=10", 0.40, 27.0), ("q=50", 1.00, 31.0), ("q=90", 2.20, 37.0)),
    "webp": (("q=30", 0.60, 29.0), ("q=80", 1.60, 35.0)),
    "jpeg2000": (("r=8", 0.90, 30.0),),  # a single operating point: no OPTA curve
}
ANALOG_METHOD = "jscc_multiuser"
ALPHAS, BETAS = (0.2, 0.5, 0.8), (0.0, 0.5)
ANALOG_CPP = 0.25
CODE_K, CODE_N, MODULATION = 1024, 1536, 16
AWGN_BLER = {0.0: 1.0, 4.0: 0.6, 8.0: 0.05, 12.0: 0.004, 16.0: 0.0}  # crosses 1e-2 between 8 and 12 dB
RAYLEIGH_BLER = {0.0: 1.0, 4.0: 0.9, 8.0: 0.5, 12.0: 0.2, 16.0: 0.05}
TRADEOFF_METRICS = ("accuracy", "psnr", "ssim")


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    ch_offset = {"awgn": 0.0, "rayleigh_block(image)": -3.0, "rayleigh_fast": -5.0}
    rows = []

    def quality(base, ch, snr, rep):
        """Random-ish but distinct per (channel, snr, repeat): any mix-up moves the means."""
        def unit(v):
            return float(np.clip(v + 0.02 * ch_offset[ch] + rng.uniform(-.01, .01), 0, 1))

        return dict(psnr=base + ch_offset[ch] + 0.4 * snr + 2.5 * rep + rng.uniform(-0.3, 0.3),
                    ssim=unit(0.3 + 0.03 * snr + 0.1 * rep), ms_ssim=unit(0.35 + 0.03 * snr + 0.08 * rep),
                    accuracy=unit(0.2 + 0.04 * snr - 0.1 * rep + 0.01 * ch_offset[ch]))

    for rep, n in N_IMAGES.items():
        for ch in CHANNELS:
            for snr in SNRS:
                if ch in DIGITAL_CHANNELS:
                    p = (AWGN_BLER if ch == "awgn" else RAYLEIGH_BLER)[snr]
                    for m, ops in DIGITAL_OPS.items():
                        for k, (op, bpp0, clean0) in enumerate(ops):
                            bpp = bpp0 + 0.04 * rep  # the repeats saw different images
                            n_blocks = int(round(bpp0 * 100)) * n
                            errs = int(round(n_blocks * min(1.0, p * (1 + 0.3 * k))))
                            rows.append(dict(
                                method=m, method_name=m, op=op, op_params=json.dumps({"quality": op}),
                                payload="digital", bpp=bpp, cpp=bpp / (8 / 3) * 1.05, channel=ch, snr_db=snr,
                                repeat=rep, **quality(clean0 - 8 * p, ch, snr, rep),
                                psnr_clean=clean0 + 1.0 * rep, ssim_clean=0.9 + 0.01 * rep,
                                ms_ssim_clean=0.92 + 0.01 * rep, accuracy_clean=0.4 + bpp0 / 5 + 0.03 * rep,
                                bler=errs / n_blocks, lost_frac=rng.integers(0, n + 1) / n, n_images=n,
                                n_blocks=n_blocks, n_block_errors=errs, code_k=CODE_K, code_n=CODE_N,
                                code_rate=CODE_K / CODE_N, modulation=MODULATION))
                for beta in BETAS:
                    for alpha in ALPHAS:
                        rows.append(dict(
                            method=ANALOG_METHOD, method_name=ANALOG_METHOD, op=f"α={alpha:g} β={beta:g}",
                            op_params=json.dumps({"alpha": alpha, "beta": beta}), payload="analog",
                            bpp=math.nan, cpp=ANALOG_CPP, channel=ch, snr_db=snr, repeat=rep,
                            **quality(22.0 + 6 * alpha + 2 * beta, ch, snr, rep),
                            psnr_clean=33.0 + 6 * alpha, ssim_clean=0.9, ms_ssim_clean=0.92,
                            accuracy_clean=0.9 - 0.3 * alpha, bler=math.nan, lost_frac=0.0, n_images=n,
                            n_blocks=0, n_block_errors=0, code_k=math.nan, code_n=math.nan,
                            code_rate=math.nan, modulation=math.nan))
    return pd.DataFrame(rows)


TABLE = _table()
DIGITAL = TABLE[TABLE["payload"] == "digital"]
ANALOG = TABLE[TABLE["payload"] == "analog"]


# --------------------------------------------------------------------------------------------
# Independent reference values (plain pandas / numpy)


def wmean(df: pd.DataFrame, by: list[str], col: str) -> dict:
    """``{group key: mean of col weighted by n_images}`` over the rows where ``col`` is not NaN."""
    out = {}
    for key, g in df.groupby(by):
        g = g[g[col].notna()]
        out[key if isinstance(key, tuple) else (key,)] = (
            float(np.average(g[col].to_numpy(float), weights=g["n_images"].to_numpy(float))) if len(g) else math.nan)
    return out


def op_rate(df: pd.DataFrame, m: str, op: str, col: str) -> float:
    g = df[(df["method"] == m) & (df["op"] == op)]
    return float(np.average(g[col], weights=g["n_images"]))


def pooled_bler(ch: str) -> pd.Series:
    g = DIGITAL[DIGITAL["channel"] == ch]
    errs = g.groupby("snr_db")["n_block_errors"].sum()
    blocks = g.groupby("snr_db")["n_blocks"].sum()
    return (errs / blocks).sort_index()


def snr_line(df: pd.DataFrame, metric: str, ch: str, m: str, op: str):
    g = df[(df["channel"] == ch) & (df["method"] == m) & (df["op"] == op)]
    means = wmean(g, ["snr_db"], metric)
    x = np.array(sorted(k[0] for k in means))
    return x, np.array([means[(s,)] for s in x])


def ops_of(df: pd.DataFrame):
    return list(dict.fromkeys(zip(df["method"], df["op"])))


def quality_label(m: str, op: str) -> str:
    """``"<method> <op> (<bpp> bpp)"`` for digital, ``"... (<cpp> cpp)"`` for analog operating points."""
    if m == ANALOG_METHOD:
        return f"{m} {op} ({op_rate(TABLE, m, op, 'cpp'):.3g} cpp)"
    return f"{m} {op} ({op_rate(TABLE, m, op, 'bpp'):.2f} bpp)"


def representative(df: pd.DataFrame) -> dict:
    """method -> (op, rho): the op whose weighted cpp is nearest the median over all ops."""
    ops = [(m, op, op_rate(df, m, op, "cpp"), op_rate(df, m, op, "bpp")) for m, op in ops_of(df)]
    median = float(np.median([c for _, _, c, _ in ops]))
    reps = {}
    for m in dict.fromkeys(df["method"]):
        mine = [o for o in ops if o[0] == m]
        if len({round(b, 12) for *_, b in mine}) >= 2:
            best = min(mine, key=lambda o: (abs(o[2] - median), o[3]))
            reps[m] = (best[1], best[2])
    return reps


# --------------------------------------------------------------------------------------------
# Figures


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """``({name: Figure}, paths)`` of one ``make_plots(TABLE, ...)`` run.

    ``_save`` is replaced by a recorder that closes the figure and returns the paths the original
    would write, without writing them (PDF + 200 dpi PNG of these 13 figures cost ~10 s; the
    files themselves are checked in test_plots_cli.py and test_bounds_plots.py)."""
    figs = {}

    def capture(fig, out_dir, name):
        assert name not in figs, f"figure {name} saved twice"
        figs[name] = fig
        plt.close(fig)
        return [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]

    out = tmp_path_factory.mktemp("plots")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "_save", capture)  # simlink.plots itself, and tradeoff (imports it per call)
        mp.setattr(bounds, "_save", capture)  # bounds bound the name at import time
        paths = make_plots(TABLE, out)
    return figs, paths


def panels(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def lines_by_label(ax) -> dict:
    lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    labels = [ln.get_label() for ln in lines]
    assert len(set(labels)) == len(labels), f"duplicate labels in {ax.get_title()!r}: {labels}"
    return dict(zip(labels, lines))


def assert_line(line, x, y, what):
    xd, yd = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    assert xd.shape == np.shape(x), (what, xd, x)
    np.testing.assert_allclose(xd, x, rtol=1e-9, atol=1e-12, err_msg=f"x of {what}")
    np.testing.assert_allclose(yd, y, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=f"y of {what}")


def legend_texts(fig) -> list[str]:
    assert len(fig.legends) == 1
    return [t.get_text() for t in fig.legends[0].get_texts()]


def assert_method_legend(fig, df: pd.DataFrame) -> None:
    """The compact legend of the per-(method, op) figures: one entry per method, in table order,
    naming how many operating points it has (tests/test_plots_honest.py checks the wording)."""
    texts = legend_texts(fig)
    methods = list(dict.fromkeys(df["method"]))
    assert len(texts) == len(methods)
    for text, m in zip(texts, methods):
        n_ops = df.loc[df["method"] == m, "op"].nunique()
        assert text.startswith(f"{m}: ") and (n_ops == 1 or f"({n_ops} ops, " in text), text


def test_the_table_discriminates():
    """The checks below can fail: unweighted means, pooled channels and mean-of-BLER differ."""
    keys = ["method", "op", "channel", "snr_db"]
    for df, metrics in ((TABLE, ("psnr", "ssim", "ms_ssim", "accuracy")),
                        (DIGITAL, ("bpp", "cpp", "psnr_clean", "accuracy_clean", "lost_frac"))):
        for metric in metrics:
            w, plain = wmean(df, keys, metric), df.groupby(keys)[metric].mean()
            diff = np.array([abs(w[k] - plain[k]) for k in plain.index])
            assert np.mean(diff > 1e-3) > (0.5 if metric == "lost_frac" else 0.99), metric
    for metric in ("psnr", "ssim", "accuracy"):
        by_ch = TABLE.groupby(["channel", "method", "op", "snr_db"])[metric].mean().unstack("channel")
        assert (by_ch["awgn"] - by_ch["rayleigh_block(image)"]).abs().min() > 1e-3, metric
    for ch in DIGITAL_CHANNELS:
        g = DIGITAL[(DIGITAL["channel"] == ch) & DIGITAL["snr_db"].between(4, 12)]
        pooled = pooled_bler(ch).loc[4.0:12.0]
        assert (pooled - g.groupby("snr_db")["bler"].mean()).abs().min() > 1e-4, ch
        weighted = pd.Series({k[0]: v for k, v in wmean(g, ["snr_db"], "bler").items()})
        assert (pooled - weighted).abs().min() > 1e-4, ch
    assert (pooled_bler("awgn") - pooled_bler("rayleigh_block(image)")).abs().max() > 0.1


def test_every_figure_is_drawn(drawn):
    figs, paths = drawn
    assert set(figs) == {
        "psnr_vs_snr", "ssim_vs_snr", "ms_ssim_vs_snr", "accuracy_vs_snr", "psnr_vs_bpp", "accuracy_vs_bpp",
        "bler_vs_snr", "lost_vs_snr", "opta_vs_snr", "opta_accuracy_vs_snr",
        "tradeoff_alpha", "tradeoff_alpha_rayleigh_block_image", "tradeoff_alpha_rayleigh_fast",
    }
    assert sorted(p.name for p in paths) == sorted(f"{n}.{ext}" for n in figs for ext in ("pdf", "png"))


@pytest.mark.parametrize("metric", ["psnr", "ssim", "ms_ssim", "accuracy"])
def test_quality_vs_snr_lines_are_weighted_means_per_channel(drawn, metric):
    fig = drawn[0][f"{metric}_vs_snr"]
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == list(CHANNELS)  # one panel per channel, table order
    for ax in axes:
        ch = ax.get_title()
        rows = TABLE[TABLE["channel"] == ch]
        expected = {quality_label(m, op): (m, op) for m, op in ops_of(rows)}
        got = lines_by_label(ax)
        assert set(got) == set(expected), ch
        for label, (m, op) in expected.items():
            assert_line(got[label], *snr_line(TABLE, metric, ch, m, op), f"{metric} {ch} {label}")
        assert ax.get_ylabel() == METRIC_LABELS[metric] and "E_s/N_0" in ax.get_xlabel()
    analog = [lb for lb in lines_by_label(axes[0]) if lb.startswith(ANALOG_METHOD)]
    assert len(analog) == len(ALPHAS) * len(BETAS) and all(lb.endswith(f"({ANALOG_CPP:g} cpp)") for lb in analog)
    assert set(lines_by_label(axes[2])) == {quality_label(m, op) for m, op in ops_of(ANALOG)}  # analog-only
    assert_method_legend(fig, TABLE)


def _bpp_panel_titles(fig):
    """``[(channel, snr or None for error-free)]`` per panel, channel taken from the panel row."""
    out, ch = [], None
    for ax in panels(fig):
        t = ax.get_title()
        if t == "error-free":
            out.append((ch, None))
            continue
        hit = re.fullmatch(r"(.+), \$E_s/N_0\$ = (\S+) dB", t)
        assert hit, t
        ch = hit.group(1)
        out.append((ch, float(hit.group(2))))
    return out


@pytest.mark.parametrize("metric", ["psnr", "accuracy"])
def test_quality_vs_bpp_lines_are_digital_rate_quality_curves(drawn, metric):
    fig = drawn[0][f"{metric}_vs_bpp"]
    titles = _bpp_panel_titles(fig)
    per_row = len(titles) // len(DIGITAL_CHANNELS)
    assert len(titles) == per_row * len(DIGITAL_CHANNELS)
    for r, ch in enumerate(DIGITAL_CHANNELS):  # one row per digital channel (no analog-only one)
        row = titles[r * per_row:(r + 1) * per_row]
        assert row[-1] == (ch, None) and all(c == ch for c, _ in row)
        snrs = [s for _, s in row[:-1]]
        assert snrs == sorted(snrs) and set(snrs) <= set(SNRS) and len(snrs) == 3
        assert min(snrs) == min(SNRS) and max(snrs) == max(SNRS)
    n_lossy = 0
    for ax, (ch, snr) in zip(panels(fig), titles):
        got = lines_by_label(ax)
        # one line per digital method (analog absent), plus its hollow points with losses
        assert set(DIGITAL_OPS) <= set(got) <= set(DIGITAL_OPS) | {f"{m} (images lost)" for m in DIGITAL_OPS}
        for m in DIGITAL_OPS:
            if snr is None:  # error-free: clean quality at the op's rate, over every row of the op
                g = DIGITAL[DIGITAL["method"] == m]
                ycol = f"{metric}_clean"
            else:
                g = DIGITAL[(DIGITAL["method"] == m) & (DIGITAL["channel"] == ch) & (DIGITAL["snr_db"] == snr)]
                ycol = metric
            bpp, y, lost = wmean(g, ["op"], "bpp"), wmean(g, ["op"], ycol), wmean(g, ["op"], "lost_frac")
            order = sorted(bpp, key=bpp.get)
            solid = [k for k in order if snr is None or lost[k] == 0]  # the solid line: no image lost
            hollow = [k for k in order if k not in solid]
            assert_line(got[m], [bpp[k] for k in solid], [y[k] for k in solid], f"{metric} {ch} {snr} {m}")
            if hollow:
                n_lossy += 1
                pts = got[f"{m} (images lost)"]
                assert pts.get_linestyle() == "None" and pts.get_markerfacecolor() == "none"
                assert_line(pts, [bpp[k] for k in hollow], [y[k] for k in hollow], f"lossy {metric} {ch} {snr} {m}")
            else:
                assert f"{m} (images lost)" not in got
            assert ax.get_ylabel() == METRIC_LABELS[metric] and "bit/pixel" in ax.get_xlabel()
    assert n_lossy > 5  # the table's random lost_frac makes many lossy points: the split is checked
    assert set(legend_texts(fig)) == set(DIGITAL_OPS) | {plots.LOSSY_NOTE}


def _awgn_threshold(bler: pd.Series, target=1e-2) -> float:
    """First crossing of ``target``, linear in (SNR, log10 BLER); at the point itself if BLER is 0."""
    s, b = bler.index.to_numpy(float), bler.to_numpy(float)
    i = int(np.argmax(b <= target))
    assert b[i] <= target and i > 0 and b[i] > 0
    return float(np.interp(np.log10(target), np.log10([b[i], b[i - 1]]), [s[i], s[i - 1]]))


def test_bler_vs_snr_is_pooled_per_channel_with_capacity_limits(drawn):
    fig = drawn[0]["bler_vs_snr"]
    (ax,) = panels(fig)
    assert ax.get_yscale() == "log" and "E_s/N_0" in ax.get_xlabel()
    assert ax.get_title().startswith(f"5G LDPC k={CODE_K}, n={CODE_N}, {MODULATION}-QAM; ")
    assert "BLER pooled over all methods" in ax.get_title()
    got = lines_by_label(ax)
    data = {lb: ln for lb, ln in got.items() if re.fullmatch(r".+ \(\d+ blocks/pt\)", lb)}
    colour = {}
    expected = {}
    for ch in DIGITAL_CHANNELS:  # digital channels only: no line for the analog-only channel
        pooled = pooled_bler(ch)
        blocks = int(DIGITAL[(DIGITAL["channel"] == ch) & (DIGITAL["snr_db"] == min(SNRS))]["n_blocks"].sum())
        expected[f"{ch} ({blocks} blocks/pt)"] = (ch, pooled[pooled > 0])  # zero-error points omitted
    assert set(data) == set(expected)
    for label, (ch, pooled) in expected.items():
        assert_line(data[label], pooled.index.to_numpy(), pooled.to_numpy(), label)
        colour[ch] = data[label].get_color()
    assert len(set(colour.values())) == len(colour)
    # capacity limits: dotted verticals in the colour of their channel
    limits = {lb: ln for lb, ln in got.items() if ln.get_linestyle() == ":"}
    qam = snr_for_rate(lambda s: qam_capacity(MODULATION, s), CODE_K / CODE_N * math.log2(MODULATION))
    erg = snr_for_rate(rayleigh_ergodic_capacity, CODE_K / CODE_N * math.log2(MODULATION))
    assert qam == pytest.approx(7.93, abs=0.01)  # README
    assert len(limits) == 2
    for lim, ch, words in ((qam, "awgn", "16-QAM AWGN limit"), (erg, "rayleigh_block(image)", "Rayleigh ergodic")):
        (label,) = [lb for lb in limits if words in lb]
        np.testing.assert_allclose(limits[label].get_xdata(), [lim, lim], rtol=1e-9)
        assert limits[label].get_color() == colour[ch] and f"{lim:.2f} dB" in label
    # the measured AWGN threshold: a cross at (threshold, 1e-2); none for Rayleigh (no threshold drawn there)
    crosses = {lb: ln for lb, ln in got.items() if ln.get_marker() == "x"}
    assert len(crosses) == 1
    (label, cross), = crosses.items()
    thr = _awgn_threshold(pooled_bler("awgn"))
    assert 8.0 < thr < 12.0
    np.testing.assert_allclose(cross.get_xdata(), [thr], rtol=1e-9)
    np.testing.assert_allclose(cross.get_ydata(), [1e-2])
    assert cross.get_color() == colour["awgn"] and label.startswith("awgn: BLER 0.01 at ")
    # interpolated between the 8 and 12 dB grid points: quoted to 0.1 dB, marked as interpolated
    assert f"at ≈{thr:.1f} dB (interp. on log BLER between 8 and 12 dB)" in label
    assert f"gap ≈{thr - qam:.1f} dB" in label


def test_lost_vs_snr_lines_are_weighted_lost_fractions_of_digital_ops(drawn):
    fig = drawn[0]["lost_vs_snr"]
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == list(DIGITAL_CHANNELS)
    for ax in axes:
        ch = ax.get_title()
        got = lines_by_label(ax)
        expected = {f"{m} {op}": (m, op) for m, op in ops_of(DIGITAL)}
        assert set(got) == set(expected), ch
        for label, (m, op) in expected.items():
            assert_line(got[label], *snr_line(DIGITAL, "lost_frac", ch, m, op), f"lost {ch} {label}")
        assert ax.get_ylim() == pytest.approx((-0.03, 1.03))
    assert_method_legend(fig, DIGITAL)


@pytest.mark.parametrize("metric", ["psnr", "accuracy"])
def test_opta_measured_and_bound_curves(drawn, metric):
    fig = drawn[0]["opta_vs_snr" if metric == "psnr" else f"opta_{metric}_vs_snr"]
    axes = panels(fig)
    caps = {"awgn": (awgn_capacity, "AWGN"),
            "rayleigh_block(image)": (rayleigh_ergodic_capacity, "ergodic Rayleigh (Gaussian input)")}
    assert [ax.get_title() for ax in axes] == [f"{ch}\nbound with C: {caps[ch][1]}" for ch in DIGITAL_CHANNELS]
    reps = representative(DIGITAL)
    assert reps == {"jpeg": ("q=50", pytest.approx(op_rate(DIGITAL, "jpeg", "q=50", "cpp"))),
                    "webp": ("q=30", pytest.approx(op_rate(DIGITAL, "webp", "q=30", "cpp")))}
    for ax, ch in zip(axes, DIGITAL_CHANNELS):
        got = lines_by_label(ax)
        assert set(got) == {f"{m} {op} (ρ={rho:.3g})" for m, (op, rho) in reps.items()} | {
            f"{m} + capacity (OPTA, ρ={rho:.3g})" for m, (op, rho) in reps.items()}
        for m, (op, rho) in reps.items():
            solid = got[f"{m} {op} (ρ={rho:.3g})"]
            assert solid.get_linestyle() == "-"
            assert_line(solid, *snr_line(DIGITAL, metric, ch, m, op), f"opta measured {ch} {m}")
            dashed = got[f"{m} + capacity (OPTA, ρ={rho:.3g})"]
            assert dashed.get_linestyle() == "--" and dashed.get_color() == solid.get_color()
            x = np.asarray(dashed.get_xdata(), float)
            assert np.all(np.diff(x) > 0) and x[0] == min(SNRS) and x[-1] == max(SNRS) and len(x) >= 100
            assert set(SNRS) <= set(x)
            g = DIGITAL[DIGITAL["method"] == m]
            rate, clean = wmean(g, ["op"], "bpp"), wmean(g, ["op"], f"{metric}_clean")
            keys = sorted(rate, key=rate.get)
            r, q = np.array([rate[k] for k in keys]), np.array([clean[k] for k in keys])
            bits = rho * caps[ch][0](x)
            y = np.asarray(dashed.get_ydata(), float)
            np.testing.assert_allclose(y, opta_distortion(r, q, rho, caps[ch][0](x)), rtol=1e-9, equal_nan=True)
            # and, without the theory function: NaN below the lowest rate, the best quality above the
            # highest, in between bracketed by the neighbouring operating points (monotone curve)
            q = np.maximum.accumulate(q)
            assert np.isnan(y[bits < r[0]]).all() and (bits < r[0]).any()
            np.testing.assert_allclose(y[bits > r[-1]], q[-1])
            inside = (bits >= r[0]) & (bits <= r[-1])
            assert inside.sum() > 10
            j = np.searchsorted(r, bits[inside], side="right").clip(1, len(r) - 1)
            assert (y[inside] >= q[j - 1] - 1e-9).all() and (y[inside] <= q[j] + 1e-9).all()


def _tradeoff_figures(figs):
    return {"awgn": figs["tradeoff_alpha"], "rayleigh_block(image)": figs["tradeoff_alpha_rayleigh_block_image"],
            "rayleigh_fast": figs["tradeoff_alpha_rayleigh_fast"]}


def test_tradeoff_alpha_lines(drawn):
    metric_of = {METRIC_LABELS[m]: m for m in TRADEOFF_METRICS}
    for ch, fig in _tradeoff_figures(drawn[0]).items():
        axes = panels(fig)
        ab = ANALOG[ANALOG["channel"] == ch].assign(
            alpha=lambda d: d["op_params"].map(lambda s: json.loads(s)["alpha"]),
            beta=lambda d: d["op_params"].map(lambda s: json.loads(s)["beta"]))
        seen = set()
        for ax in axes:
            hit = re.fullmatch(r"(.+), \$E_s/N_0\$ = (\S+) dB", ax.get_title())
            assert hit and hit.group(1) == ch, ax.get_title()
            snr, metric = float(hit.group(2)), metric_of[ax.get_ylabel()]
            seen.add((metric, snr))
            got = lines_by_label(ax)
            assert set(got) == {f"{ANALOG_METHOD}, β={b:g}" for b in BETAS}
            for beta in BETAS:
                g = ab[(ab["beta"] == beta) & (ab["snr_db"] == snr)]
                means = wmean(g, ["alpha"], metric)
                assert_line(got[f"{ANALOG_METHOD}, β={beta:g}"], list(ALPHAS), [means[(a,)] for a in ALPHAS],
                            f"tradeoff {ch} {snr} {metric} {beta}")
        snrs = sorted({s for _, s in seen})
        assert seen == {(m, s) for m in TRADEOFF_METRICS for s in snrs}  # rows = metrics, columns = SNRs
        assert len(snrs) == 4 and set(snrs) <= set(SNRS)
        assert min(SNRS, key=lambda s: abs(s - 3.0)) in snrs  # the paper's 3 dB (nearest)
        assert len(axes) == len(seen)


def _base_colour(colours: set) -> str:
    """The one colour of which every colour in ``colours`` is a tint (a blend toward white):
    the darkest; asserts that the others lie between it and white, in every RGB channel alike."""
    from matplotlib.colors import to_hex, to_rgb

    rgb = sorted((np.array(to_rgb(c)) for c in colours), key=lambda v: v.sum())
    base = rgb[0]
    for c in rgb[1:]:
        room = 1.0 - base
        f = float(((c - base) * room).sum() / (room**2).sum())  # least-squares blend fraction
        # the same blend in every channel, up to the 8-bit rounding of #rrggbb
        assert 0.0 < f <= 0.61 and np.abs(base + f * room - c).max() <= 1.0 / 255, (to_hex(base), to_hex(c))
    return to_hex(base)


def test_a_method_keeps_its_colour_in_every_figure(drawn):
    """One colour per method; in the per-(method, op) figures lighter tints of it per op."""
    from matplotlib.colors import to_hex

    figs = dict(drawn[0])
    figs.pop("bler_vs_snr")  # coloured by channel
    colours: dict[str, set] = {}
    for name, fig in figs.items():
        here: dict[str, set] = {}
        for ax in panels(fig):
            for label, line in lines_by_label(ax).items():
                here.setdefault(re.split(r"[ ,]", label)[0], set()).add(to_hex(line.get_color()))
        if name in ("psnr_vs_snr", "ssim_vs_snr", "ms_ssim_vs_snr", "accuracy_vs_snr", "lost_vs_snr"):
            for m, c in here.items():  # a lightness ramp: one shade per op of a method
                n_ops = TABLE.loc[TABLE["method"] == m, "op"].nunique()
                assert len(c) == n_ops, (name, m, c)
                here[m] = {_base_colour(c)}
        assert all(len(c) == 1 for c in here.values()), (name, here)
        first = [next(iter(c)) for c in here.values()]
        assert len(set(first)) == len(first), name  # distinct methods, distinct colours
        for m, c in here.items():
            colours.setdefault(m, set()).update(c)
    assert set(colours) == set(DIGITAL_OPS) | {ANALOG_METHOD}
    assert all(len(c) == 1 for c in colours.values()), colours
