"""Information-theoretic references for the link simulator (numpy / scipy only).

* :mod:`simlink.theory.capacity` — AWGN, square-QAM (coded modulation and BICM) and Rayleigh
  capacities, SNR thresholds and gaps to capacity, and the separation (OPTA) bound. SNRs are
  Es/N0 in dB per complex channel use; capacities are bits per complex channel use.
* :mod:`simlink.theory.rate_distortion` — classic and task-extended (TOSC-SR) Blahut-Arimoto
  for discrete sources.
"""

from simlink.theory.capacity import (
    GH_POINTS,
    QAM_ORDERS,
    awgn_capacity,
    bicm_capacity,
    gap_to_capacity_db,
    opta_distortion,
    qam_capacity,
    qam_constellation,
    rayleigh_ergodic_capacity,
    rayleigh_outage_capacity,
    snr_for_rate,
    threshold_snr,
)
from simlink.theory.rate_distortion import (
    RDCurve,
    RDPoint,
    blahut_arimoto,
    extended_blahut_arimoto,
    mutual_information,
    rd_curve,
)

__all__ = [
    "GH_POINTS",
    "QAM_ORDERS",
    "RDCurve",
    "RDPoint",
    "awgn_capacity",
    "bicm_capacity",
    "blahut_arimoto",
    "extended_blahut_arimoto",
    "gap_to_capacity_db",
    "mutual_information",
    "opta_distortion",
    "qam_capacity",
    "qam_constellation",
    "rayleigh_ergodic_capacity",
    "rayleigh_outage_capacity",
    "rd_curve",
    "snr_for_rate",
    "threshold_snr",
]
