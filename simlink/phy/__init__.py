"""Bit-true digital physical layer: segmentation, CRC, 5G LDPC, QAM, channels, BP decoding.

Public API:

* :class:`~simlink.phy.config.LinkConfig`, :class:`~simlink.phy.config.CodeConfig` — the
  ``link:`` scenario section.
* :data:`~simlink.phy.channels.ChannelConfig` (``AWGNChannel``, ``RayleighBlockChannel``,
  ``RayleighFastChannel``) and :data:`~simlink.phy.channels.CHANNELS` — ``channels:`` entries.
* :class:`~simlink.phy.link.DigitalLink` with ``prepare(streams) -> TxFrame`` and
  ``transmit(tx, channel, esno_db, seed) -> RxResult``.
* :mod:`simlink.phy.snr` — Es/N0 (per complex channel use) and Eb/N0 (per information bit).
"""

from simlink.phy.channels import (
    CHANNELS,
    AWGNChannel,
    ChannelConfig,
    RayleighBlockChannel,
    RayleighFastChannel,
)
from simlink.phy.config import CodeConfig, LinkConfig
from simlink.phy.link import DigitalLink, RxResult, TxFrame
from simlink.phy.snr import ebno_db, esno_db_to_no

__all__ = [
    "CHANNELS",
    "AWGNChannel",
    "ChannelConfig",
    "CodeConfig",
    "DigitalLink",
    "LinkConfig",
    "RayleighBlockChannel",
    "RayleighFastChannel",
    "RxResult",
    "TxFrame",
    "ebno_db",
    "esno_db_to_no",
]
