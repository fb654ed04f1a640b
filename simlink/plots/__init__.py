"""Publication plots drawn from the tidy results table alone.

:func:`make_plots` writes, for a results table ``df`` (see README, "Results schema"):

* ``psnr_vs_snr``, ``ssim_vs_snr``, ``ms_ssim_vs_snr`` — quality vs Es/N0, one panel per channel,
  one line per (method, operating point): the method's colour, lighter for lower-rate operating
  points (:mod:`simlink.plots.style`), and a compact legend with one entry per method naming the
  range of its operating points (``jpeg: q=15…85 (3 ops, 0.91–2.63 bpp)``);
* ``accuracy_vs_snr``, ``accuracy_vs_bpp`` (``top5_vs_snr``) — when the scenario has a task model;
  ``miou_vs_snr``, ``miou_vs_bpp`` (one panel per SNR) and ``miou_vs_orig_vs_snr`` for a
  segmentation task (error bars: the bootstrap half-widths ``miou_ci``);
* ``psnr_vs_bpp`` — rate–distortion: PSNR vs bpp, one row of panels per channel, one panel per
  selected SNR plus the error-free curve, one line per method. The solid line joins only the
  points where no image was lost (``lost_frac == 0``); points with losses are hollow markers,
  not joined (they belong to another regime, the error cliff). A panel where every point shows
  only concealment images (``concealed_frac == 1`` everywhere; ``lost_frac`` for tables
  without it) is greyed, with the note "all images concealed" instead of data.
  ``log_rate=True`` draws the rate axis on a log scale;
* ``bler_vs_snr`` — code-block error rate vs Es/N0 (log scale), pooled over every method and
  operating point (BLER depends only on the code, modulation and channel; the title says so),
  one curve per (channel, link setting), with Wilson 95 % intervals from the pooled block
  counts; an SNR without any block error is drawn as a downward triangle at the one-sided 95 %
  upper bound ``1 - 0.05**(1/n)`` (≈ 3/n, n the pooled blocks there) instead of vanishing from
  the log axis (:func:`bler_points`). Dotted vertical lines mark the capacity limit of the
  link's modulation and code rate (Es/N0 where the capacity reaches ``code_rate * log2 M``):
  the QAM-constrained AWGN capacity for ``awgn``, the Gaussian-input ergodic Rayleigh capacity
  for the ``rayleigh_*`` channels (a looser reference: no QAM constraint, ergodic rather than
  outage). Over AWGN the measured Es/N0 at BLER 1e-2 is marked with the precision the grid
  gives: "≈ x dB (interp.)" with its bracketing grid points when it is interpolated on log10
  BLER, a bar over the bracketing grid interval when the next point has no error at all (see
  :func:`simlink.plots.bounds.bler_bounds`). The 256-QAM limit costs ~5 s once per process;
* ``tradeoff_alpha`` — for methods whose operating points are loss weights ``alpha``/``beta``
  (``jscc_multiuser``): accuracy, PSNR and SSIM vs alpha, one line per (method, beta), one column
  per selected Es/N0 (see :mod:`simlink.plots.tradeoff`);
* ``lost_vs_snr`` — fraction of images with a failed block vs Es/N0, one panel per channel,
  shaded and labelled like the quality figures;
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

**Error bars** (``error_bars=True``, the default; ``simlink plot --no-error-bars`` turns them
off) are 95 % intervals from the table's ``*_ci`` columns, on every metric-vs-SNR and
metric-vs-bpp figure (not the error-free panels, whose values have no ``*_ci``):
``psnr``, ``ssim``, ``ms_ssim``, ``accuracy``, ``top5`` ± their Student-t half-width
(``accuracy``/``top5`` clipped to [0, 1]); ``lost_frac`` its Wilson interval, recomputed from
``lost_frac * n_images`` (``lost_frac_ci`` is that interval's half-width, but the interval is
not centred on the estimate near 0 and 1); BLER the Wilson interval of the pooled counts. Where
several repeats are averaged, the half-width drawn is the image-weighted mean of the repeats'
half-widths (for ``lost_frac`` the weighted mean of their bounds), not a root-sum-square
shrunk by ``sqrt(repeats)``: the repeats are channel draws over the *same* images, so their
errors share the image-to-image spread and are far from independent. The weighted mean of the
half-widths is exact for fully correlated repeats and, by the Cauchy–Schwarz inequality, never
narrower than the true one whatever the correlation; the ``sqrt(repeats)`` rule would be right
only for independent image sets. A group with a repeat of unknown spread (one image: NaN
``*_ci``) gets no bar. BLER's Wilson intervals treat the pooled blocks as independent trials;
over block fading (``rayleigh_block``) blocks that share a fade are correlated and the true
interval is wider.

Each figure is saved as vector PDF and as PNG. Values are averaged over repeats weighted by
the number of images (BLER: pooled block counts). A method keeps its colour and marker in
every figure (by its place in the method registry; custom labels take the next free styles).
The data helpers behind the figures return plain tables, for checks without drawing:
:func:`metric_points` (means and interval bounds), :func:`bler_points` (pooled BLER, Wilson
bounds, zero-error upper bounds), :func:`simlink.plots.bounds.bler_bounds` (limits, crossing).
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
    "miou": "mIoU (receiver's segmenter)",
    "pixel_acc": "pixel accuracy (receiver's segmenter)",
    "miou_vs_orig": "mIoU vs segmentation of the original",
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


CI_LEVEL = 0.95
"""Confidence level of every interval drawn (the table's ``*_ci`` are 95 % half-widths)."""

PROPORTIONS = ("accuracy", "top5", "miou", "pixel_acc", "class_acc", "miou_vs_orig", "lost_frac")
"""Metrics that are fractions: their intervals are clipped to [0, 1]."""

ZERO_ERROR_MARKER = "v"
"""Marker of a zero-error BLER point, drawn at its one-sided upper bound (no line)."""

LOSSY_NOTE = "hollow, not joined: some images lost (lost_frac > 0)"
CONCEALED_NOTE = "all images concealed"
LOST_NOTE = "all images lost"


def zero_error_bound(n, confidence: float = CI_LEVEL):
    """One-sided upper confidence bound of a rate with no event in ``n`` trials.

    ``1 - (1 - confidence)**(1/n)``: the rate at which seeing 0 events in ``n`` independent
    trials has probability ``1 - confidence`` (the exact Clopper–Pearson bound; ≈ 3/n at 95 %,
    "the rule of three"). ``n`` scalar or array, >= 1; returns float or array.
    """
    n = np.asarray(n, dtype=np.float64)
    out = 1.0 - (1.0 - confidence) ** (1.0 / n)
    return float(out) if out.ndim == 0 else out


def _row_bounds(df: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series] | None:
    """Per row, the 95 % interval ``(low, high)`` of ``metric`` (module docstring), or None when
    the table has nothing to build it from."""
    from simlink.metrics.stats import proportion_ci

    y = df[metric].astype(float)
    if metric == "lost_frac" and "n_images" in df:
        n = df["n_images"].astype(float)
        lo, hi = pd.Series(np.nan, index=df.index), pd.Series(np.nan, index=df.index)
        ok = y.notna() & (n >= 1)
        for i, p, k in zip(df.index[ok], y[ok], n[ok]):
            _, lo[i], hi[i] = proportion_ci(int(round(p * k)), int(k), CI_LEVEL)
        return lo, hi
    if f"{metric}_ci" not in df:
        return None
    h = df[f"{metric}_ci"].astype(float)
    return y - h, y + h


def metric_points(df: pd.DataFrame, by: list[str], metric: str, extra=()) -> pd.DataFrame:
    """Image-weighted means over repeats with their 95 % interval bounds.

    Inputs: a results table; ``by`` grouping columns (e.g. method, op, channel, snr_db);
    ``metric`` a column; ``extra`` further columns to average alongside (e.g. bpp).
    Output: one row per group: ``by``, ``metric``, ``extra``, and ``low``, ``high`` — the
    image-weighted means of the rows' interval bounds (``metric`` ± its ``*_ci``; for
    ``lost_frac`` its Wilson interval), i.e. the mean ± the weighted mean of the half-widths
    (module docstring: why not ``/ sqrt(repeats)``); clipped to [0, 1] for
    :data:`PROPORTIONS`; NaN when the table has no ``*_ci`` or a repeat's is NaN.
    """
    avg = _average(df, by, [metric, *extra])
    bounds = _row_bounds(df, metric)
    if bounds is None:
        return avg.assign(low=np.nan, high=np.nan)
    w = df["n_images"].astype(float).where(df[metric].notna())
    keys = [df[c] for c in by]
    out = {}
    for name, b in zip(("low", "high"), bounds):
        mean = (b * w).groupby(keys).sum(min_count=1) / w.groupby(keys).sum(min_count=1)
        unknown = (b.isna() & df[metric].notna()).groupby(keys).any()
        out[name] = mean.where(~unknown)
    ci = pd.DataFrame(out).reset_index()
    if metric in PROPORTIONS:
        ci[["low", "high"]] = ci[["low", "high"]].clip(0.0, 1.0)
    return avg.merge(ci, on=by, how="left")


def _draw(ax, x, y, low=None, high=None, *, error_bars: bool = True, label: str = "_nolegend_", **kw):
    """A line (``ax.plot`` keywords ``kw``) with vertical bars from ``low`` to ``high`` where those
    are finite (``error_bars`` and any finite bound); returns the data line, labelled ``label``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if error_bars and low is not None and np.isfinite(np.asarray(low, dtype=float)).any():
        low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        yerr = np.vstack([np.clip(y - low, 0.0, None), np.clip(high - y, 0.0, None)])
        cont = ax.errorbar(x, y, yerr=yerr, label="_nolegend_", elinewidth=0.7, capsize=1.5, capthick=0.7, **kw)
        line = cont.lines[0]
        for art in (*cont.lines[1], *cont.lines[2]):
            art.set_alpha(0.6)
        line.set_label(label)
        return line
    (line,) = ax.plot(x, y, label=label, **kw)
    return line


def _has_bars(ax) -> bool:
    from matplotlib.container import ErrorbarContainer

    return any(isinstance(c, ErrorbarContainer) for c in ax.containers)


def _figure_legend(fig, handles, labels, title: str | None = None, **kw) -> None:
    """One small legend for the figure, right of the panels (so it never hides data)."""
    if title:
        kw.update(title=title, title_fontsize=7)
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False,
               ncols=1 if len(labels) <= 20 else 2, **kw)


def _ops_legend(fig, df: pd.DataFrame, styles: dict, shades: dict, ranks: dict, note: str | None) -> None:
    """The compact legend of the per-(method, op) figures: one entry per method, its handle the
    shades of its ops side by side (lightest = lowest rate), its text :func:`ops_summary`."""
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D

    from simlink.plots.style import ops_summary

    rates = _average(df, ["method", "op"], ["bpp", "cpp"]).set_index(["method", "op"])
    handles, labels, widest = [], [], 1
    for m in dict.fromkeys(df["method"]):
        ops = sorted((op for (mm, op) in ranks if mm == m and (mm, op) in rates.index), key=lambda o: ranks[(m, o)])
        st = styles[m]
        handles.append(tuple(Line2D([], [], color=shades[(m, op)], marker=st["marker"], markersize=4, linestyle="none")
                             for op in ops))
        labels.append(f"{m}: " + ops_summary(ops, [rates.loc[(m, op), "bpp"] for op in ops],
                                             [rates.loc[(m, op), "cpp"] for op in ops]))
        widest = max(widest, len(ops))
    title = "lighter = lower rate" + (f"\n{note}" if note else "")
    _figure_legend(fig, handles, labels, title=title, handler_map={tuple: HandlerTuple(ndivide=None, pad=0.0)},
                   handlelength=max(2.0, 0.9 * widest))


def _op_shades(df: pd.DataFrame, styles: dict) -> tuple[dict, dict]:
    """``(ranks, shades)``: :func:`_op_order` and the shade of each (method, op)."""
    from simlink.plots.style import op_shades

    ranks = _op_order(df)
    return ranks, op_shades({m: s["color"] for m, s in styles.items()}, ranks)


BARS_NOTE = "bars: 95 % confidence intervals"


def plot_quality_vs_snr(df: pd.DataFrame, metric: str, out_dir: Path, *, error_bars: bool = True) -> list[Path]:
    """``metric`` vs Es/N0, one panel per channel, a line per (method, op) in its method's colour,
    lighter for lower rates, with 95 % error bars (``error_bars``); one legend entry per method."""
    styles = method_styles(df)
    channels = list(dict.fromkeys(df["channel"]))
    pts = metric_points(df, ["method", "op", "channel", "snr_db"], metric, extra=["bpp", "cpp"])
    ranks, shades = _op_shades(df, styles)
    fig, axes = _panels(len(channels))
    for ax, ch in zip(axes, channels):
        sub = pts[pts["channel"] == ch]
        for (m, op), g in sub.groupby(["method", "op"], sort=False):
            g = g.sort_values("snr_db")
            _draw(ax, g["snr_db"], g[metric], g["low"], g["high"], error_bars=error_bars, color=shades[(m, op)],
                  marker=styles[m]["marker"], markersize=4,
                  label=f"{m} {op} ({_rate_label(g['bpp'].iloc[0], g['cpp'].iloc[0])})")
        ax.set_title(ch)
        ax.set_xlabel(r"$E_s/N_0$ [dB]")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(True, alpha=0.3)
    _ops_legend(fig, df, styles, shades, ranks, BARS_NOTE if any(_has_bars(ax) for ax in fig.axes) else None)
    return _save(fig, out_dir, f"{metric}_vs_snr")


def _legend_outside(fig, ax) -> None:
    """One legend for the figure from ``ax``'s labelled artists, right of the panels."""
    handles, labels = ax.get_legend_handles_labels()
    _figure_legend(fig, handles, labels)


def _pick_snrs(snrs: list[float], k: int = 3) -> list[float]:
    snrs = sorted(snrs)
    if len(snrs) <= k:
        return snrs
    idx = np.unique(np.round(np.linspace(0, len(snrs) - 1, k)).astype(int))
    return [snrs[i] for i in idx]


def concealed_note(points: pd.DataFrame) -> str | None:
    """:data:`CONCEALED_NOTE` when every row of ``points`` (one rate–quality panel) shows only
    concealment images (``concealed_frac`` 1 throughout), :data:`LOST_NOTE` when a table without
    ``concealed_frac`` has every image lost (``lost_frac`` 1); None otherwise or when empty."""
    col, note = ("concealed_frac", CONCEALED_NOTE) if "concealed_frac" in points else ("lost_frac", LOST_NOTE)
    if points.empty or col not in points:
        return None
    v = points[col].to_numpy(dtype=float)
    return note if np.isfinite(v).all() and (v >= 1.0 - 1e-12).all() else None


def _log_rate_axis(ax) -> None:
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_quality_vs_bpp(df: pd.DataFrame, metric: str, out_dir: Path, *, error_bars: bool = True,
                        log_rate: bool = False) -> list[Path]:
    """Rate–distortion: ``metric`` vs bpp per channel (rows) and SNR (columns), plus error-free.

    Per method a solid line through its points without lost images (``lost_frac == 0``) and
    hollow, unjoined markers for the points with losses; 95 % error bars (``error_bars``);
    panels where every point is concealment greyed with a note (:func:`concealed_note`);
    ``log_rate``: log-scale rate axis.
    """
    from matplotlib.lines import Line2D

    styles = method_styles(df)
    channels = list(dict.fromkeys(df["channel"]))
    snrs = _pick_snrs(sorted(df["snr_db"].unique()))
    state = [c for c in ("lost_frac", "concealed_frac") if c in df]
    pts = metric_points(df, ["method", "op", "channel", "snr_db"], metric, extra=["bpp", f"{metric}_clean", *state])
    ncols = len(snrs) + 1
    fig, axes = plt.subplots(len(channels), ncols, figsize=(3.6 * ncols, 3.0 * len(channels)), squeeze=False,
                             layout="constrained")
    any_lossy = False
    for r, ch in enumerate(channels):
        greyed = []
        for c in range(ncols):
            ax = axes[r, c]
            clean = c == len(snrs)
            ax.set_title("error-free" if clean else f"{ch}, $E_s/N_0$ = {snrs[c]:g} dB", fontsize=9)
            ax.set_xlabel("rate [bit/pixel]")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            ax.grid(True, alpha=0.3)
            if log_rate:
                _log_rate_axis(ax)
            if clean:
                sub = pts.drop_duplicates(["method", "op"])
            else:
                sub = pts[(pts["channel"] == ch) & np.isclose(pts["snr_db"], snrs[c])]
                note = concealed_note(sub)
                if note:
                    ax.set_facecolor("0.9")
                    ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=9,
                            color="0.35", gid="concealed-note")
                    ax.set_yticks([])
                    greyed.append(ax)
                    continue
            ycol = f"{metric}_clean" if clean else metric
            for m, g in sub.groupby("method", sort=False):
                g = g.sort_values("bpp")
                st = styles[m]
                lossy = np.zeros(len(g), bool) if clean or "lost_frac" not in g else (g["lost_frac"] > 0).to_numpy()
                low, high = (None, None) if clean else (g["low"], g["high"])
                ok = ~lossy
                _draw(ax, g["bpp"][ok], g[ycol][ok], None if clean else low[ok], None if clean else high[ok],
                      error_bars=error_bars, color=st["color"], marker=st["marker"], markersize=4, label=m)
                if lossy.any():
                    any_lossy = True
                    _draw(ax, g["bpp"][lossy], g[ycol][lossy], low[lossy], high[lossy], error_bars=error_bars,
                          color=st["color"], marker=st["marker"], markersize=5.5, linestyle="none",
                          markerfacecolor="none", label=f"{m} (images lost)")
        ref = axes[r, -1]  # greyed panels take the rate range of the error-free panel
        for ax in greyed:
            ax.set_xlim(ref.get_xlim())
    methods = list(dict.fromkeys(df["method"]))
    handles = [Line2D([], [], color=styles[m]["color"], marker=styles[m]["marker"], markersize=4) for m in methods]
    labels = list(methods)
    if any_lossy:
        handles.append(Line2D([], [], color="0.4", marker="o", markersize=5, linestyle="none", markerfacecolor="none"))
        labels.append(LOSSY_NOTE)
    bars = any(_has_bars(ax) for ax in fig.axes)
    _figure_legend(fig, handles, labels, title=BARS_NOTE if bars else None)
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
    ``n_blocks`` and ``n_block_errors``; rows without parts are kept as they are. The
    ``n_blocks_<part>`` columns are dropped from the result, so applying it twice splits once."""
    parts = [c.removeprefix("n_blocks_") for c in df.columns if c.startswith("n_blocks_")]
    if not parts:
        return df
    has_parts = df[[f"n_blocks_{p}" for p in parts]].notna().any(axis=1)
    out = [df[~has_parts]]
    for p in parts:
        sub = df[df[f"n_blocks_{p}"].notna()]
        out.append(sub.assign(**{c: sub[f"{c}_{p}"] for c in _PART_LINK_COLUMNS if f"{c}_{p}" in sub}))
    return pd.concat(out, ignore_index=True).drop(columns=[f"n_blocks_{p}" for p in parts])


POOLED_NOTE = "BLER pooled over all methods\n(it depends only on code, modulation and channel)"
"""End of the ``bler_vs_snr`` title."""

BLER_POINT_COLUMNS = ["channel", *LINK_SETTING, "snr_db", "n_blocks", "n_block_errors", "bler", "low", "high",
                      "zero_errors", "y"]
"""Columns of :func:`bler_points`."""


def bler_points(df: pd.DataFrame, confidence: float = CI_LEVEL) -> pd.DataFrame:
    """The points of ``bler_vs_snr``: pooled BLER per channel, link setting and Es/N0.

    Inputs: a results table of digital rows (``channel``, ``snr_db``, ``code_k``, ``code_n``,
    ``modulation``, ``n_blocks``, ``n_block_errors``; parts are split by
    :func:`link_setting_rows`); ``confidence`` level.
    Output: DataFrame :data:`BLER_POINT_COLUMNS`, one row per (channel, code_k, code_n,
    modulation, snr_db) with pooled integer counts (over every method, operating point and
    repeat), ``bler`` = errors / blocks, ``low``/``high`` its Wilson interval
    (:func:`simlink.metrics.stats.proportion_ci`: it stays inside [0, 1] and is valid for few
    errors, unlike the normal approximation), ``zero_errors`` (no block error) and ``y`` the
    value drawn: ``bler``, or for a zero-error point the one-sided upper bound
    :func:`zero_error_bound` (≈ 3/n). Points with no block are dropped.
    """
    from simlink.metrics.stats import proportion_ci

    rows = link_setting_rows(df)
    rows = rows[rows["n_blocks"].fillna(0) > 0]
    if rows.empty:
        return pd.DataFrame(columns=BLER_POINT_COLUMNS)
    rows = rows.assign(**{c: rows[c].astype(int) for c in LINK_SETTING})
    pooled = rows.groupby(["channel", *LINK_SETTING, "snr_db"], sort=False)[["n_blocks", "n_block_errors"]].sum()
    pooled = pooled.reset_index().sort_values(["snr_db"], kind="stable")
    order = {ch: i for i, ch in enumerate(dict.fromkeys(rows["channel"]))}
    pooled = pooled.sort_values("channel", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    n = pooled["n_blocks"].astype(int).to_numpy()
    k = pooled["n_block_errors"].astype(int).to_numpy()
    ci = np.array([proportion_ci(int(e), int(b), confidence) for e, b in zip(k, n)]).reshape(-1, 3)
    zero = k == 0
    return pooled.assign(n_blocks=n, n_block_errors=k, bler=ci[:, 0], low=ci[:, 1], high=ci[:, 2],
                         zero_errors=zero,
                         y=np.where(zero, zero_error_bound(np.maximum(n, 1), confidence), ci[:, 0]))[BLER_POINT_COLUMNS]


def _blocks_label(n) -> str:
    n = [int(v) for v in n]
    return f"{n[0]} blocks/pt" if len(set(n)) == 1 else f"{min(n)}–{max(n)} blocks/pt"


def plot_bler_vs_snr(df: pd.DataFrame, out_dir: Path, *, error_bars: bool = True) -> list[Path]:
    """Pooled code-block error rate vs Es/N0 per channel and link setting (:func:`bler_points`,
    log scale): Wilson 95 % bars (``error_bars``), zero-error points as a downward triangle at
    their one-sided 95 % bound; the capacity limits and the AWGN threshold of
    :mod:`simlink.plots.bounds`. Parts of a payload with their own code and QAM (``link.parts``)
    are curves of their own."""
    from matplotlib.lines import Line2D

    from simlink.plots.bounds import bler_bounds, draw_bler_bounds

    df = link_setting_rows(df)
    pts = bler_points(df)
    settings = list(dict.fromkeys(map(tuple, pts[LINK_SETTING].to_numpy().tolist())))
    markers = [mk for mk in MARKERS if mk != ZERO_ERROR_MARKER]
    fig, ax = plt.subplots(figsize=(9.5, 3.8), layout="constrained")  # room for the legend on the right
    colors, any_zero = {}, False
    for i, ch in enumerate(dict.fromkeys(df["channel"])):
        colors[ch] = COLORS[i % len(COLORS)]
        for j, setting in enumerate(settings):
            g = pts[(pts["channel"] == ch) & (pts[LINK_SETTING].to_numpy() == np.array(setting)).all(axis=1)]
            if g.empty:
                continue
            err, zero = g[~g["zero_errors"]], g[g["zero_errors"]]
            what = "" if len(settings) == 1 else " k={}, n={}, {}-QAM".format(*map(int, setting))
            _draw(ax, err["snr_db"], err["bler"], err["low"], err["high"], error_bars=error_bars, color=colors[ch],
                  marker=markers[(i + j) % len(markers)], linestyle=LINESTYLES[j % len(LINESTYLES)],
                  label=f"{ch}{what} ({_blocks_label(g['n_blocks'])})")
            if len(zero):
                any_zero = True
                ax.plot(zero["snr_db"], zero["y"], marker=ZERO_ERROR_MARKER, markersize=6, linestyle="none",
                        color=colors[ch], label=f"_{ch}{what}: no block error", gid="bler-zero-bound")
    ax.set_yscale("log")
    draw_bler_bounds(ax, bler_bounds(df), colors)
    ax.set_xlabel(r"$E_s/N_0$ [dB]")
    ax.set_ylabel(METRIC_LABELS["bler"])
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any_zero:
        handles.append(Line2D([], [], marker=ZERO_ERROR_MARKER, color="0.3", markersize=6, linestyle="none"))
        labels.append(f"no block error: one-sided {CI_LEVEL * 100:g} % upper bound ≈ 3/n")
    _figure_legend(fig, handles, labels, title=f"bars: Wilson {CI_LEVEL * 100:g} % intervals" if _has_bars(ax) else None)
    pooled = POOLED_NOTE
    if len(settings) == 1:
        k, n, mod = settings[0]
        ax.set_title(f"5G LDPC k={k}, n={n}, {mod}-QAM; {pooled}", fontsize=8)
    else:
        ax.set_title(f"5G LDPC, {len(settings)} link settings (payload parts); {pooled}", fontsize=8)
    return _save(fig, out_dir, "bler_vs_snr")


def plot_lost_vs_snr(df: pd.DataFrame, out_dir: Path, *, error_bars: bool = True) -> list[Path]:
    """Fraction of images with at least one failed code block vs Es/N0, a line per (method, op)
    shaded as in :func:`plot_quality_vs_snr`, with Wilson 95 % bars (``error_bars``)."""
    styles = method_styles(df)
    channels = list(dict.fromkeys(df["channel"]))
    pts = metric_points(df, ["method", "op", "channel", "snr_db"], "lost_frac", extra=["bpp"])
    ranks, shades = _op_shades(df, styles)
    fig, axes = _panels(len(channels))
    for ax, ch in zip(axes, channels):
        for (m, op), g in pts[pts["channel"] == ch].groupby(["method", "op"], sort=False):
            g = g.sort_values("snr_db")
            _draw(ax, g["snr_db"], g["lost_frac"], g["low"], g["high"], error_bars=error_bars, color=shades[(m, op)],
                  marker=styles[m]["marker"], markersize=4, label=f"{m} {op}")
        ax.set_title(ch)
        ax.set_xlabel(r"$E_s/N_0$ [dB]")
        ax.set_ylabel(METRIC_LABELS["lost_frac"])
        ax.set_ylim(-0.03, 1.03)
        ax.grid(True, alpha=0.3)
    _ops_legend(fig, df, styles, shades, ranks,
                "bars: Wilson 95 % intervals" if any(_has_bars(ax) for ax in fig.axes) else None)
    return _save(fig, out_dir, "lost_vs_snr")


def make_plots(df: pd.DataFrame, out_dir: str | Path, error_bars: bool = True, log_rate: bool = False) -> list[Path]:
    """Draw every figure for a results table into ``out_dir``; returns the files written.

    ``error_bars``: 95 % intervals on the metric-vs-SNR and metric-vs-bpp figures and Wilson
    bars on ``bler_vs_snr`` (module docstring); ``log_rate``: log-scale rate axis on the
    ``*_vs_bpp`` figures.
    """
    out_dir = Path(out_dir)
    if df.empty:
        raise ValueError("the results table is empty: nothing to plot")
    paths: list[Path] = []
    for metric in ("psnr", "ssim", "ms_ssim", "accuracy", "top5", "miou", "miou_vs_orig"):
        if metric in df:
            paths += plot_quality_vs_snr(df, metric, out_dir, error_bars=error_bars)
    digital = _digital(df)
    if not digital.empty:  # bits, blocks and capacity bounds concern digital methods only
        for metric in ("psnr", "accuracy", "miou"):
            if metric in digital:
                paths += plot_quality_vs_bpp(digital, metric, out_dir, error_bars=error_bars, log_rate=log_rate)
        paths += plot_bler_vs_snr(digital, out_dir, error_bars=error_bars)
        paths += plot_lost_vs_snr(digital, out_dir, error_bars=error_bars)
        from simlink.plots.bounds import plot_opta_vs_snr

        for metric in ("psnr", "accuracy"):
            if metric in digital and f"{metric}_clean" in digital and "cpp" in digital:
                paths += plot_opta_vs_snr(digital, metric, out_dir, error_bars=error_bars)
    from simlink.plots.tradeoff import plot_alpha_tradeoff

    paths += plot_alpha_tradeoff(df, out_dir)
    return paths
