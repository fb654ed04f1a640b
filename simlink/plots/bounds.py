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
    METRIC_LABELS,
    _average_finite,
    _legend_outside,
    _panels,
    _pooled_bler,
    _save,
    method_styles,
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

BLER_BOUND_COLUMNS = ["channel", "family", "modulation", "code_rate", "limit_db", "threshold_db", "gap_db"]
"""Columns of :func:`bler_bounds`."""

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


def bler_bounds(df: pd.DataFrame, target: float = BLER_TARGET) -> pd.DataFrame:
    """Capacity limit, measured threshold and gap per channel and link setting.

    Inputs: a results table (``channel``, ``snr_db``, ``modulation``, ``code_rate`` or
    ``code_k``/``code_n``, ``n_blocks``, ``n_block_errors``); ``target`` BLER.
    Output: one row per (channel, modulation, code_rate) with ``family`` (``awgn`` /
    ``rayleigh``), ``limit_db`` (QAM-constrained AWGN limit for ``awgn``, Gaussian-input ergodic
    limit for ``rayleigh``), ``threshold_db`` (pooled BLER reaches ``target``; AWGN only) and
    ``gap_db`` (``threshold_db - limit_db``, i.e. :func:`gap_to_capacity_db`); NaN where a value
    does not exist (unknown channel, no BLER crossing in the measured range, ...).
    """
    rows = []
    keyed = df.assign(code_rate=_code_rate(df))
    for (ch, order, rate), g in keyed.groupby(["channel", "modulation", "code_rate"], sort=False):
        family = channel_family(ch)
        limit = {"awgn": qam_limit_db, "rayleigh": ergodic_limit_db}.get(family, lambda *_: math.nan)(order, rate)
        thr = gap = math.nan
        if family == "awgn":
            bler = _pooled_bler(g)["bler"].dropna()
            thr = threshold_snr(bler.index, bler.to_numpy(), target) if len(bler) else math.nan
            if np.isfinite(thr) and np.isfinite(limit):
                gap = float(gap_to_capacity_db(thr, int(order), float(rate)))  # cached quadratures
        rows.append(dict(channel=ch, family=family, modulation=int(order), code_rate=float(rate),
                         limit_db=limit, threshold_db=thr, gap_db=gap))
    return pd.DataFrame(rows, columns=BLER_BOUND_COLUMNS)


def draw_bler_bounds(ax, bounds: pd.DataFrame, colors: dict[str, str], target: float = BLER_TARGET) -> None:
    """Draw :func:`bler_bounds` on a BLER-vs-SNR axis.

    One dotted vertical line per distinct limit (in the colour of the first channel it belongs
    to; the Rayleigh channels share the ergodic one), and over AWGN a cross at the measured
    threshold, with the threshold and gap in its legend entry. Rows with NaN draw nothing.
    """
    drawn = bounds.dropna(subset=["limit_db"]).drop_duplicates(["family", "modulation", "code_rate"])
    for r in drawn.itertuples():
        what = f"{r.modulation}-QAM AWGN limit" if r.family == "awgn" else "Rayleigh ergodic limit (Gaussian input)"
        ax.axvline(r.limit_db, color=colors[r.channel], linestyle=":", linewidth=1.2,
                   label=f"{what}, R={r.code_rate:.3g}: {r.limit_db:.2f} dB")
    several = len(bounds.drop_duplicates(["modulation", "code_rate"])) > 1  # name the setting of each cross
    for r in bounds.dropna(subset=["threshold_db"]).itertuples():
        gap = f", gap {r.gap_db:.2f} dB" if np.isfinite(r.gap_db) else ""
        setting = f" {r.modulation}-QAM R={r.code_rate:.3g}" if several else ""
        ax.plot([r.threshold_db], [target], marker="x", markersize=7, linestyle="none", color=colors[r.channel],
                label=f"{r.channel}{setting}: BLER {target:g} at {r.threshold_db:.2f} dB{gap}")


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


def plot_opta_vs_snr(df: pd.DataFrame, metric: str, out_dir: Path) -> list[Path]:
    """Measured ``metric`` vs Es/N0 against the separation bound at the same channel-use budget.

    One panel per channel; per method (with >= 2 operating points) its operating point chosen by
    :func:`representative_ops`: measured curve solid with markers, :func:`opta_curve` dashed in
    the same colour. Saved as ``opta_vs_snr`` for PSNR, ``opta_<metric>_vs_snr`` otherwise;
    nothing is written (``[]``) when no method/channel has a bound.
    """
    reps = representative_ops(df.dropna(subset=[metric, f"{metric}_clean"]))
    channels = [ch for ch in dict.fromkeys(df["channel"]) if channel_capacity(ch) is not None]
    if reps.empty or not channels:
        return []
    styles = method_styles(df)
    avg = _average_finite(df, ["method", "op", "channel", "snr_db"], [metric])
    fig, axes = _panels(len(channels))
    for ax, ch in zip(axes, channels):
        meas_ch = avg[avg["channel"] == ch]
        grid = _snr_grid(meas_ch["snr_db"])
        for r in reps.itertuples():
            st = styles[r.method]
            meas = meas_ch[(meas_ch["method"] == r.method) & (meas_ch["op"] == r.op)].sort_values("snr_db")
            bound = opta_curve(df, r.method, ch, r.rho, grid, metric)
            ax.plot(meas["snr_db"], meas[metric], color=st["color"], marker=st["marker"], markersize=4,
                    label=f"{r.method} {r.op} (ρ={r.rho:.3g})")
            ax.plot(bound["snr_db"], bound["opta"], color=st["color"], linestyle="--",
                    marker=None if len(grid) > 1 else st["marker"], fillstyle="none",
                    label=f"{r.method} + capacity (OPTA, ρ={r.rho:.3g})")
        ax.set_title(f"{ch}\nbound with C: {CAPACITY_NAMES[channel_family(ch)]}", fontsize=8)
        ax.set_xlabel(r"$E_s/N_0$ [dB]")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.grid(True, alpha=0.3)
    _legend_outside(fig, axes[0])
    fig.legends[-1].set_title("solid: measured; dashed: codec + capacity\nρ: channel uses per pixel", prop={"size": 7})
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
    "plot_opta_vs_snr",
    "qam_limit_db",
    "representative_ops",
]
