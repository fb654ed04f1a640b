"""Publication plots drawn from the tidy results table alone.

:func:`make_plots` writes, for a results table ``df`` (see README, "Results schema"):

* ``psnr_vs_snr``, ``ssim_vs_snr``, ``ms_ssim_vs_snr`` — quality vs Es/N0, one panel per channel,
  one line per (method, operating point);
* ``accuracy_vs_snr``, ``accuracy_vs_bpp`` (``top5_vs_snr``) — when the scenario has a task model;
* ``psnr_vs_bpp`` — rate–distortion: PSNR vs bpp, one row of panels per channel, one panel per
  selected SNR plus the error-free curve, one line per method;
* ``bler_vs_snr`` — code-block error rate vs Es/N0 (log scale), one line per channel, with
  dotted vertical lines at the capacity limit of the link's modulation and code rate (Es/N0
  where the capacity reaches ``code_rate * log2 M``): the QAM-constrained AWGN capacity for
  ``awgn``, the Gaussian-input ergodic Rayleigh capacity for the ``rayleigh_*`` channels (a
  looser reference: no QAM constraint, ergodic rather than outage). Over AWGN a cross marks the
  measured Es/N0 at BLER 1e-2, with its gap to the limit in the legend (no cross when the
  curve does not reach 1e-2 in the measured range). The 256-QAM limit costs ~5 s once per process;
* ``tradeoff_alpha`` — for methods whose operating points are loss weights ``alpha``/``beta``
  (``jscc_multiuser``): accuracy, PSNR and SSIM vs alpha, one line per (method, beta), one column
  per selected Es/N0 (see :mod:`simlink.plots.tradeoff`);
* ``lost_vs_snr`` — fraction of images with a failed block vs Es/N0, one panel per channel;
* ``opta_vs_snr`` (``opta_accuracy_vs_snr`` with a task) — separation bound ("codec + capacity",
  as "BPG + capacity" in the deep-JSCC literature): one panel per channel; per method with >= 2
  operating points, its measured PSNR (accuracy) vs Es/N0 at the operating point whose
  channel-use budget ``rho`` (cpp, channel uses per pixel) is closest to the table's median
  (solid), and dashed the best quality that method's error-free rate-quality curve reaches at
  ``rho * C(Es/N0)`` bits per pixel, ``C`` the AWGN capacity or the Gaussian-input ergodic
  Rayleigh capacity (see :mod:`simlink.plots.bounds`). Not written when no method has 2
  operating points.

Figures about bits (``*_vs_bpp``, ``bler_vs_snr``, ``lost_vs_snr``, ``opta_*``) use the digital
methods' rows only; analog methods (no bits, no code blocks) appear in the ``*_vs_snr`` quality
figures, labelled with their channel uses per pixel (cpp) instead of bpp.

Each figure is saved as vector PDF and as PNG. Values are averaged over repeats weighted by
the number of images (BLER: pooled block counts). A method keeps its colour and marker in
every figure (by its place in the method registry; custom labels take the next free styles).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442", "#8C564B", "#7F7F7F"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]
LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]
METRIC_LABELS = {
    "psnr": "PSNR [dB]",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "accuracy": "task accuracy (top-1)",
    "top5": "task accuracy (top-5)",
    "bler": "BLER (code blocks)",
    "lost_frac": "lost images (fraction)",
}


def method_styles(df: pd.DataFrame) -> dict[str, dict]:
    """Colour and marker per method of a table, distinct within the table.

    A method under its registry name always gets the same style (its place in the registry),
    in every figure and every run; other display names (``label:`` in the scenario) take the
    first free styles after those, in order of appearance.
    """
    from simlink.methods import METHODS

    registry = list(METHODS)
    names = list(dict.fromkeys(df["method"]))
    n = len(COLORS)
    slots = {m: registry.index(m) % n for m in names if m in registry}
    for m in names:
        if m not in slots:  # the first palette entry no other method of this table uses
            used = set(slots.values())
            start = len(registry) % n
            slots[m] = next((i % n for i in range(start, start + n) if i % n not in used), len(slots) % n)
    return {m: {"color": COLORS[i], "marker": MARKERS[i % len(MARKERS)]} for m, i in slots.items()}


def _average(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean over repeats, weighted by ``n_images``; NaN where a group has no value (e.g. the
    ``bpp`` of an analog method)."""
    w = df["n_images"].astype(float)
    keys = [df[c] for c in by]
    parts = {m: (df[m] * w).groupby(keys).sum(min_count=1) / w.where(df[m].notna()).groupby(keys).sum(min_count=1)
             for m in metrics}
    return pd.DataFrame(parts).reset_index()


def _average_finite(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """:func:`_average` over the rows where every column of ``metrics`` is finite (a NaN,
    e.g. a method without a task metric, would otherwise count as 0)."""
    keep = np.isfinite(df[metrics].to_numpy(dtype=float)).all(axis=1)
    return _average(df[keep], by, metrics)


def _op_order(df: pd.DataFrame) -> dict[tuple[str, str], int]:
    """Rank of each operating point within its method, by bpp (analog methods: table order)."""
    order: dict[tuple[str, str], int] = {}
    for m, g in df.groupby("method", sort=False):
        for rank, op in enumerate(g.groupby("op", sort=False)["bpp"].mean().sort_values(kind="stable").index):
            order[(m, op)] = rank
    return order


def _digital(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of digital methods (all rows of tables written before analog methods existed)."""
    return df[df["payload"] != "analog"] if "payload" in df else df


def _rate_label(bpp: float, cpp: float) -> str:
    """``"0.52 bpp"`` for digital rows, ``"0.195 cpp"`` (channel uses per pixel) for analog ones."""
    return f"{bpp:.2f} bpp" if np.isfinite(bpp) else f"{cpp:.3g} cpp"


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]
    fig.savefig(paths[0], bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", dpi=200)
    plt.close(fig)
    return paths


def _panels(n: int, ncols: int | None = None, size=(4.2, 3.2)):
    ncols = ncols or min(n, 3)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def plot_quality_vs_snr(df: pd.DataFrame, metric: str, out_dir: Path) -> list[Path]:
    """``metric`` vs Es/N0, one panel per channel, a line per (method, op)."""
    styles = method_styles(df)
    channels = list(dict.fromkeys(df["channel"]))
    avg = _average(df, ["method", "op", "channel", "snr_db"], [metric, "bpp", "cpp"])
    ranks = _op_order(df)
    fig, axes = _panels(len(channels))
    for ax, ch in zip(axes, channels):
        sub = avg[avg["channel"] == ch]
        for (m, op), g in sub.groupby(["method", "op"], sort=False):
            g = g.sort_values("snr_db")
            st = styles[m]
            ax.plot(
                g["snr_db"], g[metric], color=st["color"], marker=st["marker"], markersize=4,
                linestyle=LINESTYLES[ranks.get((m, op), 0) % len(LINESTYLES)],
                label=f"{m} {op} ({_rate_label(g['bpp'].iloc[0], g['cpp'].iloc[0])})",
            )
        ax.set_title(ch)
        ax.set_xlabel(r"$E_s/N_0$ [dB]")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(True, alpha=0.3)
    _legend_outside(fig, axes[0])
    return _save(fig, out_dir, f"{metric}_vs_snr")


def _legend_outside(fig, ax) -> None:
    """One legend for the figure, right of the panels (so it never hides data)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, ncols=1 if len(labels) <= 20 else 2, frameon=False)


def _pick_snrs(snrs: list[float], k: int = 3) -> list[float]:
    snrs = sorted(snrs)
    if len(snrs) <= k:
        return snrs
    idx = np.unique(np.round(np.linspace(0, len(snrs) - 1, k)).astype(int))
    return [snrs[i] for i in idx]


def plot_quality_vs_bpp(df: pd.DataFrame, metric: str, out_dir: Path) -> list[Path]:
    """Rate–distortion: ``metric`` vs bpp per channel (rows) and SNR (columns), plus error-free."""
    styles = method_styles(df)
    channels = list(dict.fromkeys(df["channel"]))
    snrs = _pick_snrs(sorted(df["snr_db"].unique()))
    avg = _average(df, ["method", "op", "channel", "snr_db"], [metric, "bpp", f"{metric}_clean"])
    ncols = len(snrs) + 1
    fig, axes = plt.subplots(len(channels), ncols, figsize=(3.6 * ncols, 3.0 * len(channels)), squeeze=False,
                             layout="constrained")
    for r, ch in enumerate(channels):
        for c in range(ncols):
            ax = axes[r, c]
            clean = c == len(snrs)
            sub = avg[avg["channel"] == ch] if not clean else avg.drop_duplicates(["method", "op"])
            if not clean:
                sub = sub[np.isclose(sub["snr_db"], snrs[c])]
            ycol = f"{metric}_clean" if clean else metric
            for m, g in sub.groupby("method", sort=False):
                g = g.sort_values("bpp")
                st = styles[m]
                ax.plot(g["bpp"], g[ycol], color=st["color"], marker=st["marker"], markersize=4, label=m)
            ax.set_title("error-free" if clean else f"{ch}, $E_s/N_0$ = {snrs[c]:g} dB", fontsize=9)
            ax.set_xlabel("rate [bit/pixel]")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            ax.grid(True, alpha=0.3)
    _legend_outside(fig, axes[0, 0])
    return _save(fig, out_dir, f"{metric}_vs_bpp")


def _pooled_bler(df: pd.DataFrame) -> pd.DataFrame:
    """Block counts ``n_block_errors``, ``n_blocks`` and their ratio ``bler`` per Es/N0 [dB]
    (the index), pooling every row of ``df``."""
    pooled = df.groupby("snr_db")[["n_block_errors", "n_blocks"]].sum()
    return pooled.assign(bler=pooled["n_block_errors"] / pooled["n_blocks"])


LINK_SETTING = ["code_k", "code_n", "modulation"]
_PART_LINK_COLUMNS = ("modulation", "code_k", "code_n", "code_rate", "bler", "n_blocks", "n_block_errors")


def link_setting_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, link setting): a row of a payload with named parts (``n_blocks_<part>``
    ...) becomes one row per part carrying that part's ``modulation``, ``code_*``, ``bler``,
    ``n_blocks`` and ``n_block_errors``; rows without parts are kept as they are."""
    parts = [c.removeprefix("n_blocks_") for c in df.columns if c.startswith("n_blocks_")]
    if not parts:
        return df
    has_parts = df[[f"n_blocks_{p}" for p in parts]].notna().any(axis=1)
    out = [df[~has_parts]]
    for p in parts:
        sub = df[df[f"n_blocks_{p}"].notna()]
        out.append(sub.assign(**{c: sub[f"{c}_{p}"] for c in _PART_LINK_COLUMNS if f"{c}_{p}" in sub}))
    return pd.concat(out, ignore_index=True)


def plot_bler_vs_snr(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Pooled code-block error rate vs Es/N0 per channel and link setting (log scale; zero-error
    points omitted), with the capacity limits and the AWGN threshold of :mod:`simlink.plots.bounds`.
    Parts of a payload with their own code and QAM (``link.parts``) are curves of their own."""
    from simlink.plots.bounds import bler_bounds, draw_bler_bounds

    df = link_setting_rows(df)
    settings = list(dict.fromkeys(map(tuple, df[LINK_SETTING].astype(int).to_numpy().tolist())))
    fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")  # room for the legend on the right
    colors = {}
    for i, (ch, g) in enumerate(df.groupby("channel", sort=False)):
        colors[ch] = COLORS[i % len(COLORS)]
        for j, (setting, gs) in enumerate(g.groupby(LINK_SETTING, sort=False)):
            pooled = _pooled_bler(gs)
            bler = pooled["bler"]
            keep = bler > 0
            what = "" if len(settings) == 1 else " k={}, n={}, {}-QAM".format(*map(int, setting))
            ax.semilogy(bler.index[keep], bler[keep], marker=MARKERS[(i + j) % len(MARKERS)], color=colors[ch],
                        linestyle=LINESTYLES[j % len(LINESTYLES)],
                        label=f"{ch}{what} ({int(pooled['n_blocks'].iloc[0])} blocks/pt)")
    draw_bler_bounds(ax, bler_bounds(df), colors)
    ax.set_xlabel(r"$E_s/N_0$ [dB]")
    ax.set_ylabel(METRIC_LABELS["bler"])
    ax.grid(True, which="both", alpha=0.3)
    _legend_outside(fig, ax)
    if len(settings) == 1:
        k, n, mod = settings[0]
        ax.set_title(f"5G LDPC k={k}, n={n}, {mod}-QAM", fontsize=9)
    else:
        ax.set_title(f"5G LDPC, {len(settings)} link settings (payload parts)", fontsize=9)
    return _save(fig, out_dir, "bler_vs_snr")


def plot_lost_vs_snr(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Fraction of images with at least one failed code block vs Es/N0."""
    styles = method_styles(df)
    channels = list(dict.fromkeys(df["channel"]))
    avg = _average(df, ["method", "op", "channel", "snr_db"], ["lost_frac", "bpp"])
    ranks = _op_order(df)
    fig, axes = _panels(len(channels))
    for ax, ch in zip(axes, channels):
        for (m, op), g in avg[avg["channel"] == ch].groupby(["method", "op"], sort=False):
            st = styles[m]
            g = g.sort_values("snr_db")
            ax.plot(g["snr_db"], g["lost_frac"], color=st["color"], marker=st["marker"], markersize=4,
                    linestyle=LINESTYLES[ranks.get((m, op), 0) % len(LINESTYLES)], label=f"{m} {op}")
        ax.set_title(ch)
        ax.set_xlabel(r"$E_s/N_0$ [dB]")
        ax.set_ylabel(METRIC_LABELS["lost_frac"])
        ax.set_ylim(-0.03, 1.03)
        ax.grid(True, alpha=0.3)
    _legend_outside(fig, axes[0])
    return _save(fig, out_dir, "lost_vs_snr")


def make_plots(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Draw every figure for a results table into ``out_dir``; returns the files written."""
    out_dir = Path(out_dir)
    if df.empty:
        raise ValueError("the results table is empty: nothing to plot")
    paths: list[Path] = []
    for metric in ("psnr", "ssim", "ms_ssim", "accuracy", "top5"):
        if metric in df:
            paths += plot_quality_vs_snr(df, metric, out_dir)
    digital = _digital(df)
    if not digital.empty:  # bits, blocks and capacity bounds concern digital methods only
        for metric in ("psnr", "accuracy"):
            if metric in digital:
                paths += plot_quality_vs_bpp(digital, metric, out_dir)
        paths += plot_bler_vs_snr(digital, out_dir)
        paths += plot_lost_vs_snr(digital, out_dir)
        from simlink.plots.bounds import plot_opta_vs_snr

        for metric in ("psnr", "accuracy"):
            if metric in digital and f"{metric}_clean" in digital and "cpp" in digital:
                paths += plot_opta_vs_snr(digital, metric, out_dir)
    from simlink.plots.tradeoff import plot_alpha_tradeoff

    paths += plot_alpha_tradeoff(df, out_dir)
    return paths
