"""Bit-true digital physical layer: code-block segmentation, CRC, 5G LDPC, QAM, channels, BP
decoding; and the analog link of deep-JSCC methods.

Public API:

* :class:`~simlink.phy.config.LinkConfig`, :class:`~simlink.phy.config.CodeConfig` — the
  ``link:`` scenario section.
* :class:`~simlink.phy.channels.Channel` and its registry :data:`~simlink.phy.channels.CHANNELS`
  (``AWGNChannel``, ``RayleighBlockChannel``, ``RayleighFastChannel``) — ``channels:`` entries.
* :class:`~simlink.phy.link.DigitalLink` with ``prepare(streams) -> TxFrame`` and
  ``transmit(tx, channel, esno_db, seed) -> RxResult``; :class:`~simlink.phy.parted.PartedLink`
  for payloads of several named parts, each with its own code, QAM and CRC
  (``prepare({part: streams}) -> PartedFrame``, ``transmit(...) -> PartedRx``);
  :class:`~simlink.phy.analog.AnalogLink`.
* :mod:`simlink.phy.snr` — Es/N0 (per complex channel use) and Eb/N0 (per information bit).

Importing the package is cheap: the torch / Sionna modules load when their names are used.
"""

from simlink.lazy import lazy_exports

_NAMES = {
    **dict.fromkeys(["CHANNELS", "AWGNChannel", "Channel", "ChannelConfig", "RayleighBlockChannel",
                     "RayleighFastChannel", "register_channel"], "simlink.phy.channels"),
    **dict.fromkeys(["CodeConfig", "LinkConfig", "PartLinkConfig"], "simlink.phy.config"),
    **dict.fromkeys(["PartedFrame", "PartedLink", "PartedRx"], "simlink.phy.parted"),
    **dict.fromkeys(["DigitalLink", "RxResult", "TxFrame"], "simlink.phy.link"),
    **dict.fromkeys(["AnalogLink", "AnalogRx"], "simlink.phy.analog"),
    **dict.fromkeys(["ebno_db", "esno_db_to_no"], "simlink.phy.snr"),
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
