"""Bjøntegaard-delta report of every method against an anchor method.

:func:`bd_table` compares, for each channel and Es/N0 of a results table, the rate-quality curve
of every method (one point per operating point: source bits per pixel and the quality the
receiver shows, averaged over repeats weighted by ``n_images``) with the anchor's curve at the
same channel and Es/N0, and does the same once more for the error-free curves (the
``<metric>_clean`` columns; channel :data:`ERROR_FREE`, ``snr_db`` NaN). See
:mod:`simlink.metrics.bd` for the deltas themselves.
"""

from __future__ import annotations

import math

import pandas as pd

from simlink.errors import SimlinkError
from simlink.metrics.bd import BD_METHODS, bd_metric, bd_rate

ERROR_FREE = "error-free"
"""``channel`` value of the rows computed from the error-free (``*_clean``) curves."""

QUALITY_METRICS = ("psnr", "ssim", "ms_ssim", "accuracy", "top5", "miou", "pixel_acc", "class_acc", "miou_vs_orig")
"""Table columns that can be compared (higher is better), besides any ``X`` with an ``X_clean``."""

COLUMNS = ["channel", "snr_db", "method", "anchor", "metric", "bd_rate", "bd_metric", "n_points", "n_anchor"]
"""Columns of :func:`bd_table`'s result, in order."""


def available_metrics(df: pd.DataFrame) -> list[str]:
    """Quality columns of ``df`` a BD report can use: :data:`QUALITY_METRICS` present in the
    table, then any other column ``X`` that has an ``X_clean`` partner."""
    paired = [c[: -len("_clean")] for c in df.columns if c.endswith("_clean")]
    return list(dict.fromkeys([m for m in QUALITY_METRICS if m in df] + [m for m in paired if m in df]))


def _check(df: pd.DataFrame, anchor: str, metric: str, method: str) -> None:
    """Raise :class:`SimlinkError` naming what is available when an argument does not fit ``df``."""
    metrics = available_metrics(df)
    if metric not in metrics:
        raise SimlinkError(f"metric {metric!r} is not in the results table; available: {', '.join(metrics) or 'none'}")
    methods = list(dict.fromkeys(df["method"]))
    if anchor not in methods:
        raise SimlinkError(f"anchor {anchor!r} is not a method of the results table; methods: {', '.join(methods)}")
    if method not in BD_METHODS:
        raise SimlinkError(f"BD method {method!r} is not one of {', '.join(BD_METHODS)}")


def rd_points(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rate-quality points per (channel, Es/N0, method, op), the error-free ones included.

    Inputs: a results table; ``metric`` a column of :func:`available_metrics`.
    Output: DataFrame ``channel, snr_db, method, op, bpp, value, concealed``: measured points
    (``value`` = ``metric``, mean over repeats weighted by ``n_images``; ``concealed`` the mean
    ``concealed_frac``, NaN for tables without it) and, when ``<metric>_clean`` exists, one
    error-free point per (method, op) with ``channel`` :data:`ERROR_FREE`, ``snr_db`` NaN and
    ``concealed`` 0; rows whose value is NaN are left out.
    """
    from simlink.plots import _average_finite

    extra = ["concealed_frac"] if "concealed_frac" in df else []
    measured = _average_finite(df, ["channel", "snr_db", "method", "op"], ["bpp", metric, *extra])
    measured = measured.rename(columns={metric: "value", "concealed_frac": "concealed"})
    if "concealed" not in measured:
        measured = measured.assign(concealed=math.nan)
    parts = [measured]
    clean = f"{metric}_clean"
    if clean in df:
        free = _average_finite(df, ["method", "op"], ["bpp", clean]).rename(columns={clean: "value"})
        parts.append(free.assign(channel=ERROR_FREE, snr_db=math.nan, concealed=0.0))
    return pd.concat(parts, ignore_index=True)[["channel", "snr_db", "method", "op", "bpp", "value", "concealed"]]


def _all_concealed(curve: pd.DataFrame) -> bool:
    """Every point of the curve showed only concealment images (its quality says nothing of the
    method: a BD delta between two such curves is noise around 0, reported as NaN)."""
    return len(curve) > 0 and bool((curve["concealed"] >= 1.0 - 1e-12).all())


def _deltas(anchor: pd.DataFrame, test: pd.DataFrame, method: str) -> dict[str, float]:
    """``bd_rate`` [%] and ``bd_metric`` [metric units] of ``test`` vs ``anchor`` (frames with
    ``bpp`` and ``value``); NaN for a delta that has too few points, repeated abscissae or no
    overlap."""
    out = {}
    for name, fn in (("bd_rate", bd_rate), ("bd_metric", bd_metric)):
        try:
            out[name] = fn(anchor["bpp"], anchor["value"], test["bpp"], test["value"], method=method)
        except ValueError:
            out[name] = math.nan
    return out


def bd_table(df: pd.DataFrame, anchor: str, metric: str = "psnr", method: str = "pchip") -> pd.DataFrame:
    """Bjøntegaard deltas of every method against ``anchor``, per channel and Es/N0.

    Inputs: a results table (README "Results schema"); ``anchor`` a method display name of it;
    ``metric`` the quality column (higher is better: psnr, ssim, ms_ssim, accuracy, ...);
    ``method`` the BD fit, ``"pchip"`` (>= 2 points per curve) or ``"cubic"`` (>= 4).
    Output: DataFrame with :data:`COLUMNS`, one row per (channel, snr_db, method != anchor), the
    measured channels in table order and Es/N0 ascending, then the :data:`ERROR_FREE` rows
    (``snr_db`` NaN): ``bd_rate`` percent rate (bpp) change at equal metric (negative: the method
    needs less rate than the anchor), ``bd_metric`` mean metric gain at equal rate (e.g. dB for
    PSNR; positive: better), ``n_points`` / ``n_anchor`` the operating points of the method / the
    anchor on that curve. NaN where a curve has too few points, the curves do not overlap, or
    both show only concealment images (``concealed_frac`` 1 at every point: ``simlink report``
    prints "–" there instead of a round-off value such as ``+4.5e-15``).
    Raises :class:`SimlinkError` (naming what is available) for an unknown anchor, metric or
    BD method.
    """
    _check(df, anchor, metric, method)
    pts = rd_points(df, metric)
    order = {m: i for i, m in enumerate(dict.fromkeys(df["method"]))}
    rows = []
    for (ch, snr), g in pts.groupby(["channel", "snr_db"], sort=False, dropna=False):
        curves = {m: c.sort_values("bpp", kind="stable") for m, c in g.groupby("method", sort=False)}
        ref = curves.get(anchor, g.iloc[:0])
        for m in sorted(set(curves) - {anchor}, key=order.get):
            both_concealed = _all_concealed(ref) and _all_concealed(curves[m])
            deltas = {"bd_rate": math.nan, "bd_metric": math.nan} if both_concealed else _deltas(ref, curves[m], method)
            rows.append(dict(channel=ch, snr_db=snr, method=m, anchor=anchor, metric=metric,
                             **deltas, n_points=len(curves[m]), n_anchor=len(ref)))
    out = pd.DataFrame(rows, columns=COLUMNS)
    channels = {c: i for i, c in enumerate(dict.fromkeys(list(df["channel"]) + [ERROR_FREE]))}
    out = out.assign(_c=out["channel"].map(channels), _m=out["method"].map(order))
    return out.sort_values(["_c", "snr_db", "_m"], kind="stable").drop(columns=["_c", "_m"]).reset_index(drop=True)
