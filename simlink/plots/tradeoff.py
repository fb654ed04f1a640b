"""The alpha-beta trade-off figure of loss-weighted methods (multi-user JSCC, Tillmann et al.).

``tradeoff_alpha``: rows = accuracy, PSNR, SSIM (those present); columns = up to four Es/N0
values of the table (always including the one nearest 3 dB, the paper's SNR, when present);
x = ``alpha`` (weight of the reconstruction loss), one line per (method, ``beta``) with the
method's colour and a marker and line style per beta. One figure per channel:
``tradeoff_alpha.pdf``/``.png`` for the first channel, ``tradeoff_alpha_<channel>`` for the others.
Only rows whose ``op_params`` hold both ``alpha`` and ``beta`` are used; nothing is written
when there are none.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

PAPER_SNR_DB = 3.0


def alpha_beta_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``df`` whose operating point has ``alpha`` and ``beta``, with those as columns."""
    if df.empty or "op_params" not in df:
        return df.iloc[0:0]
    params = df["op_params"].map(lambda s: json.loads(s) if isinstance(s, str) else {})
    keep = params.map(lambda p: "alpha" in p and "beta" in p)
    out = df[keep].copy()
    out["alpha"] = params[keep].map(lambda p: float(p["alpha"]))
    out["beta"] = params[keep].map(lambda p: float(p["beta"]))
    return out


def _columns(snrs: list[float], k: int = 4) -> list[float]:
    snrs = sorted(set(snrs))
    if len(snrs) <= k:
        return snrs
    idx = set(np.round(np.linspace(0, len(snrs) - 1, k - 1)).astype(int).tolist())
    idx.add(int(np.argmin(np.abs(np.asarray(snrs) - PAPER_SNR_DB))))
    return [snrs[i] for i in sorted(idx)]


def plot_alpha_tradeoff(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Draw the trade-off figure(s) (module docstring); returns the files written."""
    import matplotlib.pyplot as plt

    from simlink.plots import LINESTYLES, MARKERS, METRIC_LABELS, _average, _legend_outside, _save, method_styles

    ab = alpha_beta_rows(df)
    if ab.empty:
        return []
    metrics = [m for m in ("accuracy", "psnr", "ssim") if m in ab and ab[m].notna().any()]
    styles = method_styles(df)
    paths: list[Path] = []
    for i, (ch, g_ch) in enumerate(ab.groupby("channel", sort=False)):
        cols = _columns(g_ch["snr_db"].tolist())
        avg = _average(g_ch, ["method", "alpha", "beta", "snr_db"], metrics)
        fig, axes = plt.subplots(len(metrics), len(cols), figsize=(3.4 * len(cols), 2.6 * len(metrics)),
                                 squeeze=False, layout="constrained")
        betas = sorted(avg["beta"].unique())
        for c, snr in enumerate(cols):
            at = avg[np.isclose(avg["snr_db"], snr)]
            for r, metric in enumerate(metrics):
                ax = axes[r, c]
                for (m, beta), g in at.groupby(["method", "beta"], sort=False):
                    g = g.sort_values("alpha")
                    st = styles[m]
                    ax.plot(g["alpha"], g[metric], color=st["color"], marker=MARKERS[betas.index(beta) % len(MARKERS)],
                            markersize=5,
                            linestyle=LINESTYLES[betas.index(beta) % len(LINESTYLES)], label=f"{m}, β={beta:g}")
                ax.set_xlabel(r"$\alpha$ (weight of reconstruction)")
                ax.set_ylabel(METRIC_LABELS.get(metric, metric))
                ax.set_title(f"{ch}, $E_s/N_0$ = {snr:g} dB", fontsize=9)
                ax.grid(True, alpha=0.3)
        _legend_outside(fig, axes[0, 0])
        name = "tradeoff_alpha" if i == 0 else "tradeoff_alpha_" + re.sub(r"[^A-Za-z0-9]+", "_", ch).strip("_")
        paths += _save(fig, Path(out_dir), name)
    return paths
