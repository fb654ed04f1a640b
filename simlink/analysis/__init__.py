"""Analyses computed from a results table alone (no simulation).

* :mod:`simlink.analysis.report` — Bjøntegaard deltas of every method against an anchor, per
  channel and Es/N0 and for the error-free curves (``simlink report``).
"""

from simlink.analysis.report import ERROR_FREE, bd_table

__all__ = ["ERROR_FREE", "bd_table"]
