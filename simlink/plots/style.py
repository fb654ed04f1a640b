"""Colours, shades and legend wording shared by the figures (no matplotlib state, no table I/O).

* :func:`tint` — a colour blended toward white, the lightness ramp of the operating points;
* :func:`op_shades` — one shade of its method's colour per operating point: the highest-rate
  point in the full colour, lower rates lighter (up to :data:`LIGHTEST` of the way to white);
* :func:`ops_summary` — the short legend note of a method's operating points,
  e.g. ``"q=15…85 (3 ops, 0.91–2.63 bpp)"``.
"""

from __future__ import annotations

import math
import re

from matplotlib.colors import to_hex, to_rgb

LIGHTEST = 0.6
"""Fraction of the way to white of a method's lowest-rate operating point (its highest-rate
point keeps the method's colour); the others are spaced evenly in between."""

_PARAM = re.compile(r"^\s*([^\s=]+)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def tint(color, amount: float) -> str:
    """``color`` blended toward white by ``amount`` (0: unchanged, 1: white), as ``#rrggbb``."""
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be in [0, 1]; got {amount}")
    return to_hex(tuple(c + amount * (1.0 - c) for c in to_rgb(color)))


def shade_amount(rank: int, n_ops: int) -> float:
    """How far toward white the operating point of ``rank`` (0 = lowest rate) of ``n_ops`` is:
    :data:`LIGHTEST` for the lowest rate, 0 for the highest, linear in between (0 for one op)."""
    if n_ops <= 1:
        return 0.0
    return LIGHTEST * (n_ops - 1 - rank) / (n_ops - 1)


def op_shades(base: dict[str, str], ranks: dict[tuple[str, str], int]) -> dict[tuple[str, str], str]:
    """``{(method, op): colour}``: the method's colour ``base[method]`` tinted by
    :func:`shade_amount` of the op's rank among the method's ops (``ranks``, 0 = lowest rate)."""
    counts: dict[str, int] = {}
    for m, _ in ranks:
        counts[m] = counts.get(m, 0) + 1
    return {(m, op): tint(base[m], shade_amount(r, counts[m])) for (m, op), r in ranks.items() if m in base}


def _fmt_rate(values, unit: str, fmt: str) -> str:
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if format(lo, fmt) == format(hi, fmt):
        return f"{lo:{fmt}} {unit}"
    return f"{lo:{fmt}}–{hi:{fmt}} {unit}"


def ops_summary(ops: list[str], bpp: list[float], cpp: list[float] | None = None) -> str:
    """Legend note of a method's operating points, ``ops`` ordered from the lowest rate up.

    One ``name=value`` parameter shared by every op gives ``"q=15…85"`` (lowest-rate op's value
    first); other labels give ``"<first>…<last>"``. Then the count and the rate range in bpp
    (``cpp``, channel uses per pixel, where bpp is NaN: analog methods). One op: its label and rate.
    """
    if not ops:
        return ""
    rate = _fmt_rate(bpp, "bpp", ".2f") or _fmt_rate(cpp or [], "cpp", ".3g")
    if len(ops) == 1:
        return f"{ops[0]} ({rate})" if rate else str(ops[0])
    hits = [_PARAM.match(str(op)) for op in ops]
    if all(hits) and len({h.group(1) for h in hits}) == 1:
        span = f"{hits[0].group(1)}={hits[0].group(2)}…{hits[-1].group(2)}"
    else:
        span = f"{ops[0]}…{ops[-1]}"
    return f"{span} ({len(ops)} ops" + (f", {rate})" if rate else ")")


__all__ = ["LIGHTEST", "op_shades", "ops_summary", "shade_amount", "tint"]
