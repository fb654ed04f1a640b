"""Analyses computed from a results table or a scenario's trained methods.

* :mod:`simlink.analysis.report` — Bjøntegaard deltas of every method against an anchor, per
  channel and Es/N0 and for the error-free curves (``simlink report``).
* :mod:`simlink.analysis.mutual_info_table` — CLUB / MINE estimates of ``I(X; Z)`` and
  ``I(Ŷ; Y)`` plus the plug-in ``I(argmax Ŷ; Y)`` per method and operating point, merged into the
  results table (``simlink mi``).
"""

from simlink.analysis.mutual_info_table import (
    MI_COLUMNS,
    compute_mutual_information,
    merge_into_results,
    plugin_mi_bits,
    scenario_mutual_information,
)
from simlink.analysis.report import ERROR_FREE, bd_table

__all__ = [
    "ERROR_FREE",
    "MI_COLUMNS",
    "bd_table",
    "compute_mutual_information",
    "merge_into_results",
    "plugin_mi_bits",
    "scenario_mutual_information",
]
