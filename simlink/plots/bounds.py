"""Information-theoretic references drawn over the measured curves.

Conventions as in :mod:`simlink.theory.capacity`: SNRs are Es/N0 in dB per complex channel use,
capacities in bits per complex channel use, rates in bits per pixel (bpp) and channel-use
budgets ``rho`` in complex channel uses per pixel (the table's ``cpp``).

* :func:`bler_bounds` / :func:`draw_bler_bounds` — for ``bler_vs_snr``: the capacity limit of the
  link's modulation and code rate (QAM-constrained AWGN capacity for ``awgn``; Gaussian-input
  ergodic Rayleigh capacity for the ``rayleigh_*`` channels) and, over AWGN, the measured SNR at
  BLER 1e-2 and its gap to that limit.
* :func:`opta_curve` / :func:`plot_opta_vs_snr` — the "codec + capacity" separation (OPTA) bound:
  a method's error-free rate-quality curve evaluated at ``rho * C(SNR)`` bpp.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from simlink.plots import (
    BARS_NOTE,
    METRIC_LABELS,
    _average_finite,
    _draw,
    _has_bars,
    _legend_outside,
    _panels,
    _pooled_bler,
    _save,
    method_styles,
    metric_points,
)
from simlink.theory.capacity import (
    QAM_ORDERS,
    awgn_capacity,
    gap_to_capacity_db,
    opta_distortion,
    qam_capacity,
    rayleigh_ergodic_capacity,
    snr_for_rate,
    threshold_snr,
)

BLER_TARGET = 1e-2
"""BLER at which the measured threshold SNR is read off (``bler_vs_snr`` legend)."""

BLER_BOUND_COLUMNS = ["channel", "family", "modulation", "code_rate", "limit_db", "threshold_db", "gap_db",
                      "threshold_kind", "bracket_lo_db", "bracket_hi_db"]
"""Columns of :func:`bler_bounds`."""

THRESHOLD_KINDS = ("interpolated", "grid", "bracket")
"""How :func:`bler_bounds` found the crossing: interpolated on log10 BLER between two grid
points with errors; at a grid point whose BLER equals the target; or only bracketed, because
the first point at or below the target has no block error at all (no logarithm)."""

OPTA_GRID_POINTS = 121
"""SNR samples of the dashed OPTA curves (the capacities used there are closed forms: cheap)."""

CAPACITY_NAMES = {
    "awgn": "AWGN",
    "rayleigh": "ergodic Rayleigh (Gaussian input)",
}
"""Panel-title wording of the capacity used per channel family (see :func:`channel_family`)."""


# --------------------------------------------------------------------------------------------
# Channels, capacities and limits


def channel_family(channel: str) -> Optional[str]:
    """``"awgn"`` or ``"rayleigh"`` for a channel label of the table (``awgn``,
    ``rayleigh_block(image)``, ``rayleigh_fast``, ...); ``None`` for anything else."""
    for family in ("awgn", "rayleigh"):
        if str(channel).startswith(family):
            return family
    return None


def channel_capacity(channel: str) -> Optional[Callable]:
    """Gaussian-input capacity function ``snr_db -> bits per channel use`` of a channel label:
    :func:`awgn_capacity` for AWGN, :func:`rayleigh_ergodic_capacity` for every Rayleigh
    channel (block or fast fading); ``None`` if the channel is not recognised."""
    return {"awgn": awgn_capacity, "rayleigh": rayleigh_ergodic_capacity}.get(channel_family(channel))


def _valid_link(order: int, code_rate: float) -> bool:
    return int(order) in QAM_ORDERS and 0.0 < float(code_rate) < 1.0


@lru_cache(maxsize=64)
def qam_limit_db(order: int, code_rate: float) -> float:
    """Es/N0 [dB] where the QAM-constrained AWGN capacity equals ``code_rate * log2(order)``.

    The same root search as :func:`gap_to_capacity_db` (same bracket and tolerance, so the
    quadratures it needs are cached for it). 256-QAM costs a few seconds the first time.

    Inputs: ``order`` M in :data:`QAM_ORDERS`; ``code_rate`` information bits per coded bit.
    Output: dB (float); NaN for an unsupported order or a code rate outside ``(0, 1)``.
    """
    if not _valid_link(order, code_rate):
        return math.nan
    return float(snr_for_rate(lambda s: qam_capacity(int(order), s), float(code_rate) * math.log2(int(order))))


def ergodic_limit_db(order: int, code_rate: float) -> float:
    """Es/N0 [dB] where the Gaussian-input ergodic Rayleigh capacity equals
    ``code_rate * log2(order)`` (the Rayleigh reference of ``bler_vs_snr``); NaN as in
    :func:`qam_limit_db`."""
    if not _valid_link(order, code_rate):
        return math.nan
    return float(snr_for_rate(rayleigh_ergodic_capacity, float(code_rate) * math.log2(int(order))))


def _code_rate(df: pd.DataFrame) -> pd.Series:
    """The table's ``code_rate`` column, or ``code_k / code_n`` for tables without it."""
    return df["code_rate"] if "code_rate" in df else df["code_k"] / df["code_n"]


def threshold_bracket(snr_db, bler, target: float = BLER_TARGET) -> tuple[str | None, float, float]:
    """How a BLER curve's crossing of ``target`` is known from the grid: ``(kind, lo, hi)``.

    The first point (by SNR) with ``BLER <= target`` and its predecessor bracket the crossing
    (the rule of :func:`simlink.theory.capacity.threshold_snr`): ``kind`` is ``"grid"`` when that
    point's BLER equals the target (``lo == hi`` = its SNR), ``"bracket"`` when it has no block
    error (log10 0 does not exist: the crossing lies somewhere in ``(lo, hi]``), otherwise
    ``"interpolated"`` (on log10 BLER between ``lo`` and ``hi``). ``(None, nan, nan)`` when the
    curve never reaches the target or starts below it (crossing outside the measured range).
    """
    snr = np.asarray(snr_db, dtype=np.float64).ravel()
    b = np.asarray(bler, dtype=np.float64).ravel()
    order = np.argsort(snr, kind="stable")
    snr, b = snr[order], b[order]
    below = np.flatnonzero(b <= target)
    if below.size == 0:
        return None, math.nan, math.nan
    k = int(below[0])
    if b[k] == target:
        return "grid", float(snr[k]), float(snr[k])
    if k == 0:
        return None, math.nan, math.nan
    return ("bracket" if b[k] == 0.0 else "interpolated"), float(snr[k - 1]), float(snr[k])


def bler_bounds(df: pd.DataFrame, target: float = BLER_TARGET) -> pd.DataFrame:
    """Capacity limit, measured threshold and gap per channel and link setting.

    Inputs: a results table (``channel``, ``snr_db``, ``modulation``, ``code_rate`` or
    ``code_k``/``code_n``, ``n_blocks``, ``n_block_errors``); ``target`` BLER.
    Output: one row per (channel, modulation, code_rate) with ``family`` (``awgn`` /
    ``rayleigh``), ``limit_db`` (QAM-constrained AWGN limit for ``awgn``, Gaussian-input ergodic
    limit for ``rayleigh``), ``threshold_db`` (pooled BLER reaches ``target``; AWGN only) and
    ``gap_db`` (``threshold_db - limit_db``, i.e. :func:`gap_to_capacity_db`); how precisely the
    grid gives the threshold: ``threshold_kind`` (:data:`THRESHOLD_KINDS`, see
    :func:`threshold_bracket`) and the bracketing grid points ``bracket_lo_db``,
    ``bracket_hi_db``. For a ``"bracket"`` crossing ``threshold_db`` is the upper end
    ``bracket_hi_db`` (and ``gap_db`` an upper bound). NaN / None where a value does not exist
    (unknown channel, no BLER crossing in the measured range, ...).
    """
    rows = []
    keyed = df.assign(code_rate=_code_rate(df))
    for (ch, order, rate), g in keyed.groupby(["channel", "modulation", "code_rate"], sort=False):
        family = channel_family(ch)
        limit = {"awgn": qam_limit_db, "rayleigh": ergodic_limit_db}.get(family, lambda *_: math.nan)(order, rate)
        thr = gap = lo = hi = math.nan
        kind = None
        if family == "awgn":
            bler = _pooled_bler(g)["bler"].dropna()
            thr = threshold_snr(bler.index, bler.to_numpy(), target) if len(bler) else math.nan
            if len(bler):
                kind, lo, hi = threshold_bracket(bler.index, bler.to_numpy(), target)
            if np.isfinite(thr) and np.isfinite(limit):
                gap = float(gap_to_capacity_db(thr, int(order), float(rate)))  # cached quadratures
        rows.append(dict(channel=ch, family=family, modulation=int(order), code_rate=float(rate),
                         limit_db=limit, threshold_db=thr, gap_db=gap, threshold_kind=kind,
                         bracket_lo_db=lo, bracket_hi_db=hi))
    return pd.DataFrame(rows, columns=BLER_BOUND_COLUMNS)


def threshold_label(r, target: float = BLER_TARGET) -> str:
    """Legend text of one :func:`bler_bounds` row's crossing, as precise as the grid allows.

    ``"awgn: BLER 0.01 at ≈9.5 dB (interp. on log BLER between 9 and 10 dB), gap ≈1.6 dB"``;
    ``"... at 10 dB (grid point), gap 2.07 dB"``; ``"... between 5 and 10 dB (no block error
    at 10 dB), gap ≤2.07 dB"``. An interpolated value gets one decimal (two when the bracketing
    points are less than 0.5 dB apart): the grid says no more.
    """
    gap = r.gap_db if np.isfinite(r.gap_db) else None
    lo, hi = r.bracket_lo_db, r.bracket_hi_db
    if r.threshold_kind == "interpolated":
        d = 1 if hi - lo >= 0.5 else 2
        text = f"at ≈{r.threshold_db:.{d}f} dB (interp. on log BLER between {lo:g} and {hi:g} dB)"
        return text + (f", gap ≈{gap:.{d}f} dB" if gap is not None else "")
    if r.threshold_kind == "bracket":
        text = f"between {lo:g} and {hi:g} dB (no block error at {hi:g} dB)"
        return text + (f", gap ≤{gap:.2f} dB" if gap is not None else "")
    return f"at {r.threshold_db:g} dB (grid point)" + (f", gap {gap:.2f} dB" if gap is not None else "")


def draw_bler_bounds(ax, bounds: pd.DataFrame, colors: dict[str, str], target: float = BLER_TARGET) -> None:
    """Draw :func:`bler_bounds` on a BLER-vs-SNR axis.

    One dotted vertical line per distinct limit (in the colour of the first channel it belongs
    to; the Rayleigh channels share the ergodic one), and over AWGN the measured threshold: a
    cross at an interpolated (or grid-point) crossing, a bar with end ticks over the bracketing
    grid interval when the crossing is only bracketed; the legend entry says which
    (:func:`threshold_label`). Rows with NaN draw nothing.
    """
    drawn = bounds.dropna(subset=["limit_db"]).drop_duplicates(["family", "modulation", "code_rate"])
    for r in drawn.itertuples():
        what = f"{r.modulation}-QAM AWGN limit" if r.family == "awgn" else "Rayleigh ergodic limit (Gaussian input)"
        ax.axvline(r.limit_db, color=colors[r.channel], linestyle=":", linewidth=1.2,
                   label=f"{what}, R={r.code_rate:.3g}: {r.limit_db:.2f} dB")
    several = len(bounds.drop_duplicates(["modulation", "code_rate"])) > 1  # name the setting of each cross
    for r in bounds.dropna(subset=["threshold_db"]).itertuples():
        setting = f" {r.modulation}-QAM R={r.code_rate:.3g}" if several else ""
        label = f"{r.channel}{setting}: BLER {target:g} {threshold_label(r, target)}"
        if r.threshold_kind == "bracket":
            ax.plot([r.bracket_lo_db, r.bracket_hi_db], [target, target], marker="|", markersize=9, linewidth=1.5,
                    color=colors[r.channel], label=label, gid="bler-threshold-bracket")
        else:
            ax.plot([r.threshold_db], [target], marker="x", markersize=7, linestyle="none", color=colors[r.channel],
                    label=label, gid="bler-threshold")


# --------------------------------------------------------------------------------------------
# Separation (OPTA) bound


def clean_rd(df: pd.DataFrame, method: str, metric: str = "psnr") -> pd.DataFrame:
    """A method's error-free rate-quality points.

    Inputs: a results table; ``method`` display name; ``metric`` (its ``<metric>_clean`` column
    is used).
    Output: DataFrame ``op, bpp, clean`` (bpp in bits per pixel), one row per operating point
    (mean over rows, weighted by ``n_images``), sorted by bpp; NaN cleans dropped.
    """
    sub = df[df["method"] == method]
    pts = _average_finite(sub, ["op"], ["bpp", f"{metric}_clean"]).rename(columns={f"{metric}_clean": "clean"})
    return pts.sort_values("bpp", kind="stable").reset_index(drop=True)


def opta_curve(df: pd.DataFrame, method: str, channel: str, rho: float, snr_db=None,
               metric: str = "psnr") -> pd.DataFrame:
    """The "codec + capacity" separation bound of a method over a channel.

    ``opta = opta_distortion(bpp, <metric>_clean, cpp=rho, capacity=C(snr_db))`` on the
    method's :func:`clean_rd` points, with ``C`` from :func:`channel_capacity`.

    Inputs: a results table; ``method`` display name; ``channel`` label; ``rho`` channel uses per
    pixel; ``snr_db`` Es/N0 values in dB (default: the table's SNRs for that channel);
    ``metric`` quality column (higher is better).
    Output: DataFrame ``snr_db, capacity`` (bits per channel use), ``rate_bpp``
    (``rho * capacity``), ``opta`` (metric units; NaN below the codec's lowest rate, or
    everywhere when the method has fewer than 2 distinct error-free rates).
    Raises ValueError for a channel without a known capacity.
    """
    cap_fn = channel_capacity(channel)
    if cap_fn is None:
        raise ValueError(f"no capacity known for channel {channel!r} (expected awgn or rayleigh_*)")
    if snr_db is None:
        snr_db = sorted(df.loc[df["channel"] == channel, "snr_db"].unique())
    snr = np.atleast_1d(np.asarray(snr_db, dtype=np.float64))
    cap = np.atleast_1d(cap_fn(snr))
    pts = clean_rd(df, method, metric).drop_duplicates("bpp")
    opta = (np.atleast_1d(opta_distortion(pts["bpp"], pts["clean"], rho, cap)) if len(pts) >= 2
            else np.full_like(snr, np.nan))
    return pd.DataFrame({"snr_db": snr, "capacity": cap, "rate_bpp": rho * cap, "opta": opta})


def representative_ops(df: pd.DataFrame) -> pd.DataFrame:
    """Per method, the operating point whose channel-use budget is closest to the table's median.

    Input: a results table (``method``, ``op``, ``cpp``, ``bpp``, ``n_images``).
    Output: DataFrame ``method, op, rho`` (``rho`` = that op's mean cpp, channel uses per pixel),
    one row per method with at least 2 operating points of distinct bpp; ties go to the lower
    rate. The median is over the operating points of every method.
    """
    ops = _average_finite(df, ["method", "op"], ["cpp", "bpp"])
    ops["dist"] = (ops["cpp"] - ops["cpp"].median()).abs()
    ops["n_rates"] = ops.groupby("method")["bpp"].transform("nunique")
    best = ops[ops["n_rates"] >= 2].sort_values(["dist", "bpp"], kind="stable").drop_duplicates("method")
    order = list(dict.fromkeys(df["method"]))
    best = best.sort_values("method", key=lambda s: s.map(order.index), kind="stable")
    return best.rename(columns={"cpp": "rho"})[["method", "op", "rho"]].reset_index(drop=True)


def _snr_grid(snrs) -> np.ndarray:
    """Dense Es/N0 grid [dB] over the measured range (the measured values included)."""
    snrs = np.unique(np.asarray(snrs, dtype=np.float64))
    if snrs.size < 2:
        return snrs
    return np.union1d(np.linspace(snrs[0], snrs[-1], OPTA_GRID_POINTS), snrs)


def plot_opta_vs_snr(df: pd.DataFrame, metric: str, out_dir: Path, *, error_bars: bool = True) -> list[Path]:
    """Measured ``metric`` vs Es/N0 against the separation bound at the same channel-use budget.

    One panel per channel; per method (with >= 2 operating points) its operating point chosen by
    :func:`representative_ops`: measured curve solid with markers (95 % error bars from the
    ``*_ci`` columns with ``error_bars``), :func:`opta_curve` dashed in the same colour. Saved as ``opta_vs_snr`` for PSNR, ``opta_<metric>_vs_snr`` otherwise;
    nothing is written (``[]``) when no method/channel has a bound.
    """
    reps = representative_ops(df.dropna(subset=[metric, f"{metric}_clean"]))
    channels = [ch for ch in dict.fromkeys(df["channel"]) if channel_capacity(ch) is not None]
    if reps.empty or not channels:
        return []
    styles = method_styles(df)
    finite = df[np.isfinite(df[metric].to_numpy(dtype=float))]
    avg = metric_points(finite, ["method", "op", "channel", "snr_db"], metric)
    fig, axes = _panels(len(channels))
    for ax, ch in zip(axes, channels):
        meas_ch = avg[avg["channel"] == ch]
        grid = _snr_grid(meas_ch["snr_db"])
        for r in reps.itertuples():
            st = styles[r.method]
            meas = meas_ch[(meas_ch["method"] == r.method) & (meas_ch["op"] == r.op)].sort_values("snr_db")
            bound = opta_curve(df, r.method, ch, r.rho, grid, metric)
            _draw(ax, meas["snr_db"], meas[metric], meas["low"], meas["high"], error_bars=error_bars,
                  color=st["color"], marker=st["marker"], markersize=4, label=f"{r.method} {r.op} (ρ={r.rho:.3g})")
            ax.plot(bound["snr_db"], bound["opta"], color=st["color"], linestyle="--",
                    marker=None if len(grid) > 1 else st["marker"], fillstyle="none",
                    label=f"{r.method} + capacity (OPTA, ρ={r.rho:.3g})")
        ax.set_title(f"{ch}\nbound with C: {CAPACITY_NAMES[channel_family(ch)]}", fontsize=8)
        ax.set_xlabel(r"$E_s/N_0$ [dB]")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(True, alpha=0.3)
    _legend_outside(fig, axes[0])
    bars = f"\n{BARS_NOTE}" if any(_has_bars(ax) for ax in fig.axes) else ""
    fig.legends[-1].set_title(f"solid: measured; dashed: codec + capacity\nρ: channel uses per pixel{bars}",
                              prop={"size": 7})
    return _save(fig, out_dir, "opta_vs_snr" if metric == "psnr" else f"opta_{metric}_vs_snr")


__all__ = [
    "BLER_TARGET",
    "bler_bounds",
    "channel_capacity",
    "channel_family",
    "clean_rd",
    "draw_bler_bounds",
    "ergodic_limit_db",
    "opta_curve",
    "threshold_bracket",
    "threshold_label",
    "plot_opta_vs_snr",
    "qam_limit_db",
    "representative_ops",
]
