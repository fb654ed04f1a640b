"""A toy source for the extended rate–distortion problem, and the plot of its rate–(D_R, D_T) surface.

The source (:func:`parity_source`) has ``levels`` equiprobable grey levels, squared-error pixel
distortion scaled by 1/10, and a binary task label, the level's parity, seen through label
noise. Pixel fidelity alone merges neighbouring levels and so destroys the parity: the task
term of TOSC-SR's extended problem (``beta > 0``) keeps it. ``simlink rd-toy`` draws the
surface with :func:`plot_rd_surface`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simlink.theory.rate_distortion import rd_curve


def parity_source(levels: int = 8, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p_x [levels], p_y_given_x [levels, 2], d_r [levels, levels])`` of the parity toy source.

    ``d_r(x, x_hat) = (x - x_hat)^2 / 10``; ``p(y = parity(x) | x) = 1 - noise``.
    """
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if not 0.0 <= noise < 0.5:
        raise ValueError(f"noise must be in [0, 0.5), got {noise}")
    x = np.arange(levels)
    p_x = np.full(levels, 1.0 / levels)
    even = x % 2 == 0
    p_y_given_x = np.stack([np.where(even, 1.0 - noise, noise), np.where(even, noise, 1.0 - noise)], axis=1)
    d_r = (x[:, None] - x[None, :]) ** 2 / 10.0
    return p_x, p_y_given_x, d_r


def rd_surface(betas, lams, levels: int = 8, noise: float = 0.05) -> dict[str, np.ndarray]:
    """Rate, D_R and D_T (``float64[len(betas), len(lams)]``; rate and D_T in bits) of the parity
    source over a grid of ``beta`` x ``lam``, by extended Blahut–Arimoto."""
    p_x, p_yx, d_r = parity_source(levels, noise)
    curves = [rd_curve(p_x, p_yx, d_r, lams, float(b)) for b in betas]
    return {"beta": np.asarray(betas, dtype=np.float64), "lam": np.asarray(lams, dtype=np.float64),
            "rate": np.stack([c.rate for c in curves]), "d_r": np.stack([c.d_r for c in curves]),
            "d_t": np.stack([c.d_t for c in curves])}


def plot_rd_surface(out_dir: str | Path, betas=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0), lams=None, levels: int = 8,
                    noise: float = 0.05) -> list[Path]:
    """Write ``rd_surface.pdf/.png`` (3-D surface R over (D_R, D_T)) and ``rd_curves.pdf/.png``
    (R vs D_R and R vs D_T, one line per beta) into ``out_dir``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lams = np.logspace(-1.5, 1.5, 25) if lams is None else np.asarray(lams, dtype=np.float64)
    s = rd_surface(betas, lams, levels, noise)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    fig = plt.figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(s["d_r"], s["d_t"], s["rate"], cmap="viridis", alpha=0.8, linewidth=0.3, edgecolor="k")
    ax.set_xlabel("pixel distortion $D_R$")
    ax.set_ylabel("task distortion $D_T$ [bit]")
    ax.set_zlabel("rate $I(X;\\hat X)$ [bit]")
    ax.set_title(f"extended R-D, {levels}-level parity source", fontsize=9)
    paths += _save(fig, out, "rd_surface")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.4, 3.2))
    for i, b in enumerate(s["beta"]):
        a1.plot(s["d_r"][i], s["rate"][i], label=f"β = {b:g}")
        a2.plot(s["d_t"][i], s["rate"][i], label=f"β = {b:g}")
    a1.set_xlabel("pixel distortion $D_R$")
    a2.set_xlabel("task distortion $D_T$ [bit]")
    for a in (a1, a2):
        a.set_ylabel("rate [bit]")
        a.grid(alpha=0.3)
    a2.legend(fontsize=7)
    fig.tight_layout()
    paths += _save(fig, out, "rd_curves")
    return paths


def _save(fig, out: Path, name: str) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = [out / f"{name}.pdf", out / f"{name}.png"]
    fig.savefig(paths[0], bbox_inches="tight")
    fig.savefig(paths[1], dpi=200, bbox_inches="tight")
    plt.close(fig)
    return paths
