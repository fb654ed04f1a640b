"""simlink.phy: code-block segmentation round trip, full-link round trip at high SNR, CRC error detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simlink.phy import AWGNChannel, CodeConfig, DigitalLink, LinkConfig
from simlink.phy.code_blocks import BlockCRC, blocks_to_streams, plan_layout, streams_to_blocks


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _lengths(payload_bits: int, rng: np.random.Generator) -> list[int]:
    """Random lengths in 0..5000 bytes plus 0, 1 and exact multiples of the block payload."""
    multiple = int(np.lcm(payload_bits, 8) // 8)  # bytes in the shortest stream filling whole blocks
    fixed = [0, 1, multiple, 2 * multiple, 5000 // multiple * multiple, multiple - 1, multiple + 1]
    return fixed + rng.integers(0, 5001, size=12).tolist()


@pytest.mark.parametrize("payload_bits", [1000, 488, 117, 8, 13])
def test_segmentation_round_trip(payload_bits):
    rng = np.random.default_rng(payload_bits)
    lengths = _lengths(payload_bits, rng)
    streams = [rng.bytes(n) for n in lengths]
    layout = plan_layout(lengths, payload_bits)
    expected_blocks = [-(-8 * n // payload_bits) for n in lengths]
    assert layout.blocks_per_image.tolist() == expected_blocks
    assert layout.num_blocks == sum(expected_blocks)
    assert layout.block_image.tolist() == np.repeat(np.arange(len(lengths)), expected_blocks).tolist()
    blocks = streams_to_blocks(streams, layout, "cpu")
    assert blocks.shape == (layout.num_blocks, payload_bits)
    # padding is zero and the payload positions hold the stream bits in order (MSB first)
    mask = layout.payload_mask("cpu")
    assert float(blocks[~mask].abs().sum()) == 0.0
    first = int(np.flatnonzero(np.array(lengths) > 0)[0])
    bits0 = np.unpackbits(np.frombuffer(streams[first], dtype=np.uint8))
    row0 = int(np.cumsum([0] + expected_blocks)[first])
    n0 = min(payload_bits, bits0.size)
    assert blocks[row0, :n0].to(torch.uint8).numpy().tolist() == bits0[:n0].tolist()
    assert blocks_to_streams(blocks, layout) == streams


def test_empty_inputs():
    layout = plan_layout([0, 0], 100)
    assert layout.num_blocks == 0 and layout.blocks_per_image.tolist() == [0, 0]
    blocks = streams_to_blocks([b"", b""], layout, "cpu")
    assert blocks.shape == (0, 100)
    assert blocks_to_streams(blocks, layout) == [b"", b""]
    assert plan_layout([], 100).num_blocks == 0


def test_full_link_round_trip_at_high_snr():
    cfg = LinkConfig(code=CodeConfig(k=512, n=768, num_iter=10), modulation=16, crc="24A")
    link = DigitalLink(cfg)
    rng = np.random.default_rng(7)
    lengths = _lengths(cfg.payload_bits_per_block, rng)[:9] + [0]
    streams = [rng.bytes(n) for n in lengths]
    tx = link.prepare(streams)
    assert tx.num_codewords == sum(-(-8 * n // 488) for n in lengths)
    assert tx.symbols.shape == (tx.num_codewords, 192) and tx.symbols.dtype == torch.complex64
    assert tx.channel_uses.tolist() == [192 * b for b in tx.blocks_per_image.tolist()]
    assert tx.num_bits.tolist() == [8 * n for n in lengths]
    rx = link.transmit(tx, AWGNChannel(), 30.0, seed=1)
    assert rx.streams == streams
    assert rx.block_ok.all() and rx.image_ok.all()
    assert rx.num_block_errors == 0 and rx.bit_errors == 0 and rx.num_blocks == tx.num_codewords
    assert rx.block_image.tolist() == tx.block_image.tolist()
    assert rx.channel_uses.tolist() == tx.channel_uses.tolist()


def test_link_with_no_streams_or_only_empty_streams():
    link = DigitalLink(LinkConfig(code=CodeConfig(k=128, n=256), modulation=4))
    for streams in ([], [b"", b""]):
        tx = link.prepare(streams)
        rx = link.transmit(tx, AWGNChannel(), 10.0, seed=0)
        assert rx.streams == streams and rx.num_blocks == 0 and rx.image_ok.all() and rx.bit_errors == 0


@pytest.mark.parametrize("crc", ["24A", "24B", "24C", "16", "11", "6"])
def test_crc_catches_corrupted_blocks(crc):
    """Flip random bits of valid CRC blocks: the check must fail except with probability ~2^-crc_len.

    The 24-bit CRCs and CRC16 (all with an (x + 1) factor, d_min >= 4 at this length) detect every
    error of weight 1..3; CRC11 and CRC6 have no such guarantee and are only held to the random rate.
    """
    payload_bits = 200
    coder = BlockCRC(crc, payload_bits, "cpu")
    gen = torch.Generator().manual_seed(len(crc) + int(crc[:2]))
    blocks = coder.attach(torch.randint(0, 2, (20000, payload_bits), generator=gen).float())
    payload, ok = coder.check(blocks)
    assert ok.all() and torch.equal(payload, blocks[:, :payload_bits])
    n = blocks.shape[0]
    weights = torch.randint(1, 40, (n,), generator=gen)
    weights[: n // 2] = torch.randint(1, 4, (n // 2,), generator=gen)  # half the blocks: 1..3 flips
    order = torch.rand(n, blocks.shape[1], generator=gen).argsort(dim=1)
    corrupted = torch.where(order < weights.unsqueeze(1), 1.0 - blocks, blocks)
    _, ok = coder.check(corrupted)
    if crc in ("24A", "24B", "24C", "16"):
        assert not ok[: n // 2].any()
    undetected = int(ok.sum())
    assert undetected <= 2 * n * 2.0 ** -coder.length + 3, f"{undetected} undetected of {n}"
    if coder.length >= 16:
        assert undetected == 0


def test_link_flags_blocks_decoded_from_wrong_llrs():
    cfg = LinkConfig(code=CodeConfig(k=256, n=512, num_iter=10), modulation=4)
    link = DigitalLink(cfg)
    rng = np.random.default_rng(3)
    streams = [rng.bytes(100), rng.bytes(300), rng.bytes(64)]
    tx = link.prepare(streams)
    coded = link.encoder(link.crc.attach(tx.info_bits.float()))
    llr = 20.0 * (2.0 * coded - 1.0)  # perfect LLRs
    bad = [1, 2]
    gen = torch.Generator().manual_seed(0)
    llr[bad] = 20.0 * torch.randn(len(bad), cfg.code.n, generator=gen)  # strongly wrong LLRs
    rx = link.decode_llrs(tx, llr)
    expected = np.ones(tx.num_codewords, dtype=bool)
    expected[bad] = False
    assert rx.block_ok.tolist() == expected.tolist()
    assert rx.image_ok.tolist() == [bool(expected[tx.block_image == i].all()) for i in range(3)]
    assert rx.image_ok.tolist() == [False, True, True]  # image 0 has blocks 0..3
    assert rx.num_block_errors == 2 and rx.bit_errors > 0
    assert [len(s) for s in rx.streams] == [100, 300, 64]
    assert rx.streams[1:] == streams[1:] and rx.streams[0] != streams[0]


def test_no_crc_uses_genie_check():
    cfg = LinkConfig(code=CodeConfig(k=128, n=256, num_iter=10), modulation=4, crc=None)
    link = DigitalLink(cfg)
    tx = link.prepare([bytes(range(64)), b"\xff" * 16])
    assert tx.info_bits.shape[1] == 128
    coded = link.encoder(tx.info_bits.float())
    llr = 20.0 * (2.0 * coded - 1.0)
    llr[2] = -llr[2]  # the complement: decodes to something else (or nothing)
    rx = link.decode_llrs(tx, llr)
    assert rx.block_ok.tolist() == [True, True, False, True, True]
    assert rx.image_ok.tolist() == [False, True]
