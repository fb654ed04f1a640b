"""simlink — end-to-end link simulation for semantic / task-oriented image communication.

Pipeline: images → source coding (classic or learned) → real bitstreams → 5G LDPC + QAM →
channel → soft demapping → BP decoding → source decoding → quality and task metrics.
"""

__version__ = "0.1.0"
