"""simlink.phy: uncoded QAM through simlink's channel -> equaliser -> APP demapper path vs theory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import erfc

from simlink.phy import AWGNChannel, CodeConfig, DigitalLink, LinkConfig, RayleighFastChannel
from simlink.phy.link import sionna_seed
from simlink.phy.snr import esno_db_to_no


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gray_qam_ber(m_order: int, esno_db: float) -> float:
    """Exact bit error probability of square Gray-labelled M-QAM over AWGN with ML symbol decisions.

    K. Cho and D. Yoon, "On the general BER expression of one- and two-dimensional amplitude
    modulations", IEEE Trans. Commun., 2002, eq. (14)-(16). For 4-QAM this is 0.5 erfc(sqrt(Eb/N0)).
    """
    bits = int(math.log2(m_order))
    side = int(math.isqrt(m_order))
    gamma_b = 10 ** (esno_db / 10) / bits
    arg = math.sqrt(3 * bits * gamma_b / (2 * (m_order - 1)))
    total = 0.0
    for k in range(1, int(math.log2(side)) + 1):
        pk = 0.0
        for i in range(int((1 - 2.0**-k) * side)):
            w = (-1) ** math.floor(i * 2 ** (k - 1) / side) * (2 ** (k - 1) - math.floor(i * 2 ** (k - 1) / side + 0.5))
            pk += w * erfc((2 * i + 1) * arg)
        total += pk / side
    return total / math.log2(side)


def _link(modulation: int) -> DigitalLink:
    """A link whose mapper, channel and demapper are used (the code is irrelevant here)."""
    m = int(math.log2(modulation))
    return DigitalLink(LinkConfig(code=CodeConfig(k=96, n=60 * m), modulation=modulation, crc="16"))


def _uncoded_hard_bits(link: DigitalLink, bits: torch.Tensor, channel, esno_db: float, seed: int) -> torch.Tensor:
    """Map -> channel -> ZF equaliser -> APP demapper -> hard decision (LLR > 0 means bit 1)."""
    x = link.mapper(bits)
    block_image = torch.zeros(x.shape[0], dtype=torch.int64)
    no = esno_db_to_no(esno_db)
    with sionna_seed(seed):
        y, h = link.channel(channel, x, no, block_image, 1)
    llr = link.demap(y, h, no)
    return (llr > 0).to(bits.dtype)


def _assert_binomial(errors: int, trials: int, p: float) -> None:
    sigma = math.sqrt(trials * p * (1 - p))
    expected = f"expected {trials * p:.1f} +- {3 * sigma:.1f}"
    assert abs(errors - trials * p) <= 3 * sigma + 1, f"{errors} errors in {trials}, {expected}"


@pytest.mark.parametrize(
    "modulation, snrs",
    [(4, [0.0, 4.0, 8.0]), (16, [6.0, 10.0, 14.0]), (64, [12.0, 16.0, 20.0])],
)
def test_uncoded_qam_ber_awgn_matches_closed_form(modulation, snrs):
    link = _link(modulation)
    m = link.config.bits_per_symbol
    gen = torch.Generator().manual_seed(modulation)
    bits = torch.randint(0, 2, (1000, 120 * m), generator=gen).float()  # 120 000 * m bits
    for i, snr in enumerate(snrs):
        errors = int((_uncoded_hard_bits(link, bits, AWGNChannel(), snr, seed=10 + i) != bits).sum())
        _assert_binomial(errors, bits.numel(), gray_qam_ber(modulation, snr))


def test_uncoded_qpsk_ber_rayleigh_fast_matches_closed_form():
    link = _link(4)
    gen = torch.Generator().manual_seed(5)
    bits = torch.randint(0, 2, (2000, 200), generator=gen).float()
    for i, snr in enumerate([3.0, 10.0, 20.0]):
        gamma = 10 ** (snr / 10) / 2  # Eb/N0 of QPSK
        p = 0.5 * (1 - math.sqrt(gamma / (1 + gamma)))
        errors = int((_uncoded_hard_bits(link, bits, RayleighFastChannel(), snr, seed=20 + i) != bits).sum())
        _assert_binomial(errors, bits.numel(), p)


def test_closed_form_sanity():
    assert gray_qam_ber(4, 6.0) == pytest.approx(0.5 * erfc(math.sqrt(10**0.6 / 2)), rel=1e-12)
    # standard high-SNR approximation for 16-QAM: (3/8) erfc(sqrt(Es/(10 N0)))
    esno = 10 ** 1.8
    assert gray_qam_ber(16, 18.0) == pytest.approx(3 / 8 * erfc(math.sqrt(esno / 10)), rel=1e-3)


@pytest.mark.parametrize("modulation", [4, 16, 64, 256])
def test_llr_sign_convention_at_high_snr(modulation):
    """Sionna convention LLR = log p(1)/p(0): positive exactly where the sent bit is 1."""
    link = DigitalLink(LinkConfig(code=CodeConfig(k=512, n=768), modulation=modulation))
    rng = np.random.default_rng(modulation)
    tx = link.prepare([rng.bytes(300), rng.bytes(41)])
    no = esno_db_to_no(60.0)
    with sionna_seed(1):
        y, h = link.channel(AWGNChannel(), tx.symbols, no, torch.zeros(tx.num_codewords, dtype=torch.int64), 2)
    llr = link.demap(y, h, no)
    coded = link.encoder(link.crc.attach(tx.info_bits.float()))  # the transmitted (interleaved) codeword bits
    assert torch.equal(llr > 0, coded > 0.5)
    assert bool((llr.abs() > 1.0).all())
