"""SNR bookkeeping: Es/N0, N0 and Eb/N0.

Conventions (used everywhere in simlink):

* **Es/N0** (dB) is the SNR *per complex channel use*. The QAM constellations have unit average
  energy (``Es = 1``), so the noise variance per complex symbol is ``N0 = 10^(-EsN0_dB / 10)``
  (``N0 / 2`` per real dimension). Sweeps are specified in Es/N0.
* **Eb/N0** (dB) is the SNR *per source information bit*:
  ``EbN0_dB = EsN0_dB - 10 log10(info_bits / channel_uses)``, where ``info_bits`` are the source
  payload bits actually carried (CRC bits and zero padding excluded) and ``channel_uses`` are the
  complex symbols sent for them. Hence Eb/N0 charges the transmitter for CRC, code redundancy
  and padding, which makes digital and analog (deep JSCC) schemes comparable.
* **Nominal** values use the link configuration alone: spectral efficiency
  ``m * R`` with ``m = log2(M)`` bits per symbol and ``R = (k - crc_len) / n`` payload bits per
  coded bit (padding of the last block of each image ignored).
"""

from __future__ import annotations

import numpy as np

from simlink.phy.config import LinkConfig


def esno_db_to_no(esno_db: float) -> float:
    """Noise variance per complex symbol for unit-energy symbols.

    Inputs: ``esno_db`` Es/N0 in dB per complex channel use.
    Output: ``N0 = 10^(-esno_db / 10)`` (float, linear).
    """
    return float(10.0 ** (-float(esno_db) / 10.0))


def ebno_db(esno_db, info_bits, channel_uses):
    """Eb/N0 per source information bit from Es/N0 per complex channel use.

    Inputs (scalars or broadcastable arrays):
        esno_db: Es/N0 in dB per complex channel use.
        info_bits: source payload bits carried (CRC and padding excluded), > 0.
        channel_uses: complex channel symbols used to carry them, > 0.
    Output: ``esno_db - 10 log10(info_bits / channel_uses)`` in dB (float or float64 array).
    """
    out = np.asarray(esno_db, dtype=np.float64) - 10.0 * np.log10(
        np.asarray(info_bits, dtype=np.float64) / np.asarray(channel_uses, dtype=np.float64)
    )
    return float(out) if out.ndim == 0 else out


def esno_db_from_ebno(ebno_db_value, info_bits, channel_uses):
    """Inverse of :func:`ebno_db`: Es/N0 (dB) that gives the Eb/N0 ``ebno_db_value`` (dB).

    Inputs as :func:`ebno_db`; output float or float64 array in dB.
    """
    out = np.asarray(ebno_db_value, dtype=np.float64) + 10.0 * np.log10(
        np.asarray(info_bits, dtype=np.float64) / np.asarray(channel_uses, dtype=np.float64)
    )
    return float(out) if out.ndim == 0 else out


def nominal_spectral_efficiency(config: LinkConfig, include_crc: bool = False) -> float:
    """Payload bits per complex channel use of the configured link, ``m * R``.

    Inputs:
        config: the link configuration.
        include_crc: if True count CRC bits as information (``R = k / n``), else
            ``R = (k - crc_len) / n`` (the default, matching :func:`ebno_db`'s payload bits).
    Output: bits per complex channel use (float). Padding of each image's last block is ignored.
    """
    k = config.code.k if include_crc else config.payload_bits_per_block
    return config.bits_per_symbol * k / config.code.n


def nominal_ebno_db(esno_db, config: LinkConfig, include_crc: bool = False):
    """Nominal Eb/N0 (dB) at Es/N0 ``esno_db`` (dB): ``EsN0 - 10 log10(m * R)``.

    Inputs: ``esno_db`` scalar or array (dB), ``config``, ``include_crc`` as in
    :func:`nominal_spectral_efficiency`. Output: float or float64 array (dB).
    """
    return ebno_db(esno_db, nominal_spectral_efficiency(config, include_crc), 1.0)
