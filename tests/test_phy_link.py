"""simlink.phy: coded link behaviour (BLER vs SNR, fading diversity, determinism, early stopping).

Sized for 2 CPU cores: short 5G codes (k = 128) and a few thousand codewords per test.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from simlink.phy import AWGNChannel, CodeConfig, DigitalLink, LinkConfig, RayleighBlockChannel, RayleighFastChannel
from simlink.phy.channels import ChannelSimulator
from simlink.phy.ldpc import BPDecoder
from simlink.phy.link import sionna_seed
from simlink.phy.snr import esno_db_to_no

QPSK_HALF = LinkConfig(code=CodeConfig(k=128, n=256, num_iter=10), modulation=4)  # 104 payload bits = 13 bytes
QAM64_HIGH = LinkConfig(code=CodeConfig(k=128, n=144, num_iter=10), modulation=64)  # rate 0.89


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_block_streams(cfg: LinkConfig, count: int, seed: int) -> list[bytes]:
    """``count`` random streams of exactly one code block each."""
    assert cfg.payload_bits_per_block % 8 == 0
    rng = np.random.default_rng(seed)
    return [rng.bytes(cfg.payload_bits_per_block // 8) for _ in range(count)]


def _bler(rx) -> float:
    return rx.num_block_errors / rx.num_blocks


def _sigma(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1.0 / n) / n)


@pytest.fixture(scope="module")
def qpsk_link() -> DigitalLink:
    return DigitalLink(QPSK_HALF)


def test_awgn_bler_waterfall(qpsk_link):
    tx = qpsk_link.prepare(_one_block_streams(QPSK_HALF, 400, seed=1))
    snrs = [0.5, 1.25, 2.0, 2.75, 3.5]
    bler = [_bler(qpsk_link.transmit(tx, AWGNChannel(), s, seed=100 + i)) for i, s in enumerate(snrs)]
    assert bler[0] > 0.5 and bler[-1] < 0.1, bler  # the grid spans the waterfall
    n = tx.num_codewords
    for a, b in zip(bler, bler[1:]):
        assert b <= a + 3 * math.hypot(_sigma(a, n), _sigma(b, n)), bler
    assert bler[-1] < bler[0] / 10
    big = qpsk_link.prepare(_one_block_streams(QPSK_HALF, 1000, seed=2))
    rx = qpsk_link.transmit(big, AWGNChannel(), 8.0, seed=7)
    assert rx.num_block_errors == 0 and rx.bit_errors == 0 and rx.image_ok.all()


def test_rayleigh_block_has_diversity_one_slope():
    link = DigitalLink(QAM64_HIGH)
    tx = link.prepare(_one_block_streams(QAM64_HIGH, 1200, seed=3))
    snrs = np.array([25.0, 30.0, 35.0])
    fading = RayleighBlockChannel(granularity="block")
    bler = np.array([_bler(link.transmit(tx, fading, s, seed=200 + i)) for i, s in enumerate(snrs)])
    assert (bler > 0).all(), bler
    slope = np.polyfit(snrs / 10.0, np.log10(bler), 1)[0]  # decades of BLER per decade of SNR
    assert -1.3 <= slope <= -0.7, (slope, bler)
    # AWGN with the same code: the waterfall is far steeper, from > 30 % at 19 dB to 0 errors at 25 dB
    small = link.prepare(_one_block_streams(QAM64_HIGH, 300, seed=4))
    awgn_19 = _bler(link.transmit(small, AWGNChannel(), 19.0, seed=300))
    awgn_25 = _bler(link.transmit(tx, AWGNChannel(), 25.0, seed=301))
    assert awgn_19 > 0.3 and awgn_25 < bler[0] / 50, (awgn_19, awgn_25, bler)
    awgn_slope = math.log10(max(awgn_25, 1.0 / tx.num_codewords) / awgn_19) / 0.6  # at least this steep
    assert awgn_slope < 3 * slope, (awgn_slope, slope)


def test_fading_granularity_and_statistics():
    sim = ChannelSimulator("cpu")
    block_image = torch.tensor([0, 0, 0, 1, 2, 2, 4, 4])  # image 3 has no blocks
    with sionna_seed(11):
        h_img = sim.coefficients(RayleighBlockChannel(granularity="image"), 8, 5, block_image, 5)
        h_blk = sim.coefficients(RayleighBlockChannel(granularity="block"), 8, 5, block_image, 5)
        h_fast = sim.coefficients(RayleighFastChannel(), 8, 5, block_image, 5)
    assert sim.coefficients(AWGNChannel(), 8, 5, block_image, 5) is None
    for h in (h_img, h_blk, h_fast):
        assert h.shape == (8, 5) and h.dtype == torch.complex64
    # constant over each codeword for block fading
    assert torch.equal(h_img, h_img[:, :1].expand(8, 5)) and torch.equal(h_blk, h_blk[:, :1].expand(8, 5))
    # image granularity: codewords of an image share the fade, different images differ
    first = h_img[:, 0]
    for i in range(5):
        rows = first[block_image == i]
        assert torch.equal(rows, rows[:1].expand_as(rows))
    assert len({complex(first[j]) for j in (0, 3, 4, 6)}) == 4
    # block granularity: every codeword its own fade; fast: every symbol its own fade
    assert len({complex(v) for v in h_blk[:, 0]}) == 8
    assert len({complex(v) for v in h_fast.flatten()}) == 40
    # CN(0, 1) statistics: E|h|^2 = 1, E h = 0
    with sionna_seed(12):
        h = sim.coefficients(RayleighBlockChannel(), 40000, 1, torch.zeros(40000, dtype=torch.int64), 1)[:, 0]
    assert abs(float(h.abs().square().mean()) - 1.0) < 0.03 and abs(complex(h.mean())) < 0.03
    # through the link: with one fade per image, an image's blocks mostly fail or pass together
    # (only images whose fade sits at the decoding threshold are mixed); with one per block, rarely
    link = DigitalLink(QPSK_HALF)
    rng = np.random.default_rng(5)
    tx = link.prepare([rng.bytes(13 * 6) for _ in range(60)])  # 60 images x 6 blocks
    mixed = {}
    for granularity in ("image", "block"):
        rx = link.transmit(tx, RayleighBlockChannel(granularity=granularity), 6.0, seed=9)
        assert 0.1 < rx.num_block_errors / rx.num_blocks < 0.9
        per_image = rx.block_ok.reshape(60, 6)
        mixed[granularity] = int((per_image.any(axis=1) & ~per_image.all(axis=1)).sum())
    assert mixed["image"] <= 15 and mixed["block"] >= 30, mixed


def _assert_same(a, b) -> None:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y), f.name
        elif f.name == "erasures":
            assert len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y)), f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("channel", [AWGNChannel(), RayleighBlockChannel(granularity="image"), RayleighFastChannel()])
def test_determinism(qpsk_link, channel):
    rng = np.random.default_rng(8)
    streams = [rng.bytes(int(n)) for n in rng.integers(0, 200, size=12)]
    tx = qpsk_link.prepare(streams)
    snr = {"awgn": 2.0, "rayleigh_block": 8.0, "rayleigh_fast": 4.0}[channel.name]  # mid-waterfall
    first = qpsk_link.transmit(tx, channel, snr, seed=42)
    other = qpsk_link.transmit(tx, channel, snr, seed=43)
    again = qpsk_link.transmit(tx, channel, snr, seed=42)
    _assert_same(first, again)
    assert 0 < first.num_block_errors < first.num_blocks
    assert first.streams != other.streams
    # independent of the link instance and of the decoding chunk size
    chunked = DigitalLink(QPSK_HALF.model_copy(update={"max_codewords_per_batch": 7}))
    _assert_same(first, chunked.transmit(chunked.prepare(streams), channel, snr, seed=42))
    # torch's global generator is left as it was
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    qpsk_link.transmit(tx, channel, snr, seed=1)
    assert torch.equal(torch.rand(3), expected)


def _llrs(link: DigitalLink, tx, esno_db: float, seed: int) -> torch.Tensor:
    no = esno_db_to_no(esno_db)
    with sionna_seed(seed):
        y, h = link.channel(AWGNChannel(), tx.symbols, no, torch.as_tensor(tx.block_image), tx.num_images)
    return link.demap(y, h, no)


def _decode(decoder: BPDecoder, llr: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode in batches of ``batch`` codewords (cache-friendly on CPU)."""
    parts = [decoder(llr[a : a + batch]) for a in range(0, llr.shape[0], batch)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def test_early_stop_matches_full_decoder():
    cfg = QPSK_HALF.model_copy(update={"code": QPSK_HALF.code.model_copy(update={"num_iter": 20})})
    link = DigitalLink(cfg)
    tx = link.prepare(_one_block_streams(cfg, 2000, seed=6))
    sent = link.crc.attach(tx.info_bits.float())
    full = BPDecoder(link.encoder, 20, early_stop=False)
    early = BPDecoder(link.encoder, 20, early_stop=True)
    for snr, count, max_disagree in ((1.75, 2000, 2), (4.0, 1000, 0)):  # BLER ~30 % (<= 0.1 % differ) and ~0
        llr = _llrs(link, tx, snr, seed=int(snr * 4))[:count]
        bits_full, it_full = _decode(full, llr)
        bits_early, it_early = _decode(early, llr)
        assert (it_full == 20).all()
        same = (bits_full == bits_early).all(dim=1)
        ok_full, ok_early = (bits_full == sent[:count]).all(dim=1), (bits_early == sent[:count]).all(dim=1)
        assert int((~same).sum()) <= max_disagree and int((ok_full != ok_early).sum()) <= max_disagree
        # codewords that ran all iterations get exactly the uninterrupted decoder's output
        ran_all = it_early == 20
        assert torch.equal(bits_early[ran_all], bits_full[ran_all])
        if snr == 1.75:
            assert 0.1 < 1 - float(ok_full.float().mean()) < 0.6 and int(ran_all.sum()) > 100
            # the chunking schedule changes only the speed, not the result
            other = BPDecoder(link.encoder, 20, early_stop=True, check_every=3)
            bits_other, it_other = other(llr[:500])
            assert torch.equal(bits_other, bits_early[:500]) and torch.equal(it_other, it_early[:500])
        else:
            assert float(it_early.float().mean()) < 8 and float(ok_early.float().mean()) > 0.99
    # through the link: same frame, same seed -> same received bytes and block flags at high SNR
    cfg_full = cfg.model_copy(update={"code": cfg.code.model_copy(update={"early_stop": False})})
    small = link.prepare(_one_block_streams(cfg, 300, seed=7))
    a = link.transmit(small, AWGNChannel(), 4.0, seed=16)
    b = DigitalLink(cfg_full).transmit(small, AWGNChannel(), 4.0, seed=16)
    assert a.streams == b.streams and np.array_equal(a.block_ok, b.block_ok)
    assert a.bp_iterations.mean() < b.bp_iterations.mean() == 20
