"""The bit-true digital link: bytes -> 5G LDPC + QAM -> channel -> BP decoding -> bytes.

Transmitter (:meth:`DigitalLink.prepare`, deterministic, done once per set of streams)::

    streams --code-block segmentation--> blocks of k - crc_len bits --CRC--> k bits --LDPC5GEncoder--> n bits
            --Mapper (Gray QAM, unit energy)--> n / log2(M) complex symbols per codeword

Receiver (:meth:`DigitalLink.transmit`, per channel / SNR / seed)::

    channel (fading, AWGN) --ZF equaliser, N0/|h|^2--> APP Demapper --> BP decoder (``link.decoder``:
            Sionna's LDPC5GDecoder via BPDecoder, or the numba decoder on Sionna's graph; both
            optionally early-terminated) --CRCDecoder--> block_ok --reassembly--> streams

All codewords of all images are processed as one batch on the device, in chunks of at most
``link.max_codewords_per_batch`` codewords for demapping and decoding (the channel is drawn for
the whole frame at once, so results do not depend on the chunk size). SNR is Es/N0 in dB per
complex channel use (see :mod:`simlink.phy.snr`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from simlink.phy.channels import ChannelConfig, ChannelSimulator, equalise
from simlink.phy.config import LinkConfig
from simlink.phy.ldpc import BPDecoder
from simlink.phy.code_blocks import (
    BlockCRC,
    BlockLayout,
    blocks_to_bytes,
    failed_bit_ranges,
    plan_layout,
    split_streams,
    streams_to_blocks,
)
from simlink.phy.snr import esno_db_to_no


@dataclass
class TxFrame:
    """Everything the transmitter produced for a list of streams (reused for every SNR / channel).

    Attributes:
        symbols: ``complex64[num_cw, S]`` QAM symbols on the link's device, ``S = n / log2(M)``.
        block_image: ``int64[num_cw]`` image index of each codeword (numpy).
        info_bits: ``uint8[num_cw, k - crc_len]`` payload bits of each block, zero padding
            included, on the device (for the genie check without CRC).
        stream_lengths: ``int64[N]`` bytes per image.
        num_bits: ``int64[N]`` payload bits per image (``8 * stream_lengths``).
        blocks_per_image: ``int64[N]`` codewords per image.
        channel_uses: ``int64[N]`` complex channel symbols per image (``blocks_per_image * S``).
        layout: the code-block layout (for reassembly).
        tx_bytes: ``uint8[sum(stream_lengths)]`` all streams concatenated (for bit-error counting).
        config: the link configuration the frame was made with.
    """

    symbols: torch.Tensor
    block_image: np.ndarray
    info_bits: torch.Tensor
    stream_lengths: np.ndarray
    num_bits: np.ndarray
    blocks_per_image: np.ndarray
    channel_uses: np.ndarray
    layout: BlockLayout
    tx_bytes: np.ndarray
    config: LinkConfig

    @property
    def num_codewords(self) -> int:
        """Total codewords (code blocks) in the frame."""
        return int(self.block_image.shape[0])

    @property
    def num_images(self) -> int:
        """Number of streams ``N``."""
        return int(self.stream_lengths.shape[0])


@dataclass
class RxResult:
    """What the receiver got for one transmission of a :class:`TxFrame`.

    Attributes:
        streams: received payload bytes per image, same lengths as sent: the decoded information
            bits of every block, whether its CRC passed or not.
        block_ok: ``bool[num_cw]``: the block's CRC passed. Without a CRC (``link.crc: null``)
            this is a *genie* check (decoded payload bits == sent bits), which a real receiver
            could not perform; it is only used in that configuration.
        block_image: ``int64[num_cw]`` image index of each block.
        image_ok: ``bool[N]``: all blocks of the image ok (True for images with 0 blocks).
        num_block_errors: blocks with ``block_ok == False``.
        num_blocks: total blocks.
        bit_errors: payload bit errors over all images (vs what was sent; padding and CRC excluded).
        channel_uses: ``int64[N]`` complex channel symbols per image.
        bp_iterations: ``int32[num_cw]`` BP iterations spent per codeword (``num_iter`` unless
            early stopping ended it sooner).
        erasures: per image, ``int64[m, 2]`` ``[start, stop)`` bit ranges of its stream that were
            in blocks with ``block_ok == False`` (:func:`~simlink.phy.code_blocks.failed_bit_ranges`).
    """

    streams: list[bytes]
    block_ok: np.ndarray
    block_image: np.ndarray
    image_ok: np.ndarray
    num_block_errors: int
    num_blocks: int
    bit_errors: int
    channel_uses: np.ndarray
    bp_iterations: np.ndarray | None = None
    erasures: list[np.ndarray] | None = None


def torch_device(device: str | torch.device) -> str:
    """Canonical device string as Sionna keys it (``"cpu"``, ``"cuda:0"``, ...)."""
    d = torch.device(device)
    if d.type == "cuda":
        return f"cuda:{torch.cuda.current_device() if d.index is None else d.index}"
    return str(d)


@contextmanager
def sionna_seed(seed: int):
    """Seed Sionna's generators (``sionna.phy.config.seed = seed``) for the enclosed draws.

    Sionna's seeding also reseeds torch's global generators; their previous state is restored on
    exit so that code outside the link is not affected.
    """
    from sionna.phy import config

    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        config.seed = int(seed) % (1 << 64)
        yield


class DigitalLink:
    """Segmentation + CRC + 5G LDPC + QAM over a simulated channel, bit-true.

    Args:
        config: the ``link`` section of a scenario.
        device: torch device string for all tensors (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    """

    def __init__(self, config: LinkConfig, device: str = "cpu"):
        from sionna.phy.fec.ldpc import LDPC5GEncoder
        from sionna.phy.mapping import Demapper, Mapper

        self.config = config
        self.device = torch_device(device)
        code = config.code
        m = config.bits_per_symbol
        self.crc = BlockCRC(config.crc, config.payload_bits_per_block, self.device)
        self.encoder = LDPC5GEncoder(code.k, code.n, num_bits_per_symbol=m, device=self.device, check_input=False)
        self.decoder_name = config.resolved_decoder(str(self.device))
        if self.decoder_name == "numba":
            from simlink.phy.ldpc_numba import NumbaBPDecoder

            self.decoder = NumbaBPDecoder(self.encoder, code.num_iter, early_stop=code.early_stop)
        else:
            self.decoder = BPDecoder(self.encoder, code.num_iter, code.cn_update, code.early_stop, device=self.device)
        self.mapper = Mapper("qam", m, device=self.device)
        self.demapper = Demapper("app", "qam", m, device=self.device)
        self.channel = ChannelSimulator(self.device)

    # ---- transmitter ----------------------------------------------------------------------------
    def prepare(self, streams: list[bytes]) -> TxFrame:
        """Segment, CRC-protect, LDPC-encode and QAM-map byte streams (deterministic).

        Input: ``N`` byte strings (any lengths, 0 allowed).
        Output: :class:`TxFrame` with ``num_cw = sum(ceil(8 * len / (k - crc_len)))`` codewords.
        """
        cfg = self.config
        layout = plan_layout([len(s) for s in streams], cfg.payload_bits_per_block)
        payload = streams_to_blocks(streams, layout, self.device)  # float32 [num_cw, P]
        symbols = torch.empty(layout.num_blocks, cfg.symbols_per_codeword, dtype=torch.complex64, device=self.device)
        step = cfg.batch_codewords(str(self.device))
        for a in range(0, layout.num_blocks, step):  # CRC -> LDPC [B, n] -> QAM [B, S], chunked for memory
            symbols[a : a + step] = self.mapper(self.encoder(self.crc.attach(payload[a : a + step])))
        return TxFrame(
            symbols=symbols,
            block_image=layout.block_image,
            info_bits=payload.to(torch.uint8),
            stream_lengths=layout.stream_lengths,
            num_bits=layout.num_bits,
            blocks_per_image=layout.blocks_per_image,
            channel_uses=layout.blocks_per_image * cfg.symbols_per_codeword,
            layout=layout,
            tx_bytes=np.frombuffer(b"".join(streams), dtype=np.uint8),
            config=cfg,
        )

    # ---- channel + receiver -----------------------------------------------------------------------
    def transmit(self, tx: TxFrame, channel: ChannelConfig, esno_db: float, seed: int) -> RxResult:
        """Send a frame over a channel and decode it.

        Inputs:
            tx: from :meth:`prepare` of a link with the same k, n, modulation and CRC.
            channel: an :class:`~simlink.phy.channels.AWGNChannel`, ``RayleighBlockChannel`` or
                ``RayleighFastChannel``.
            esno_db: Es/N0 in dB per complex channel use.
            seed: the call's result depends on ``seed`` alone (not on earlier calls).
        Output: :class:`RxResult`.
        """
        self._check_frame(tx)
        no = esno_db_to_no(esno_db)
        block_image = torch.as_tensor(tx.block_image, device=self.device)
        with sionna_seed(seed):
            y, h = self.channel(channel, tx.symbols, no, block_image, tx.num_images)
        return self.decode_frame(tx, lambda a, b: self.demap(y[a:b], None if h is None else h[a:b], no))

    def decode_llrs(self, tx: TxFrame, llr: torch.Tensor) -> RxResult:
        """Decode given channel LLRs instead of drawing a channel (for tests and iterative receivers).

        Inputs: ``tx``; ``llr float32[num_cw, n]`` logits ``log p(1)/p(0)`` of the transmitted
        (interleaved, rate-matched) codeword bits. Output: :class:`RxResult`.
        """
        self._check_frame(tx)
        if tuple(llr.shape) != (tx.num_codewords, self.config.code.n):
            raise ValueError(f"llr must be [{tx.num_codewords}, {self.config.code.n}], got {list(llr.shape)}")
        return self.decode_frame(tx, lambda a, b: llr[a:b].to(device=self.device, dtype=torch.float32))

    def demap(self, y: torch.Tensor, h: torch.Tensor | None, no: float) -> torch.Tensor:
        """Equalise (ZF, perfect CSI) and APP-demap.

        Inputs: ``y complex64[B, S]`` received symbols, ``h complex64[B, S]`` fades or ``None``
        (AWGN), ``no`` = N0 per complex symbol (linear).
        Output: ``float32[B, S * log2(M)]`` LLRs ``log p(1)/p(0)`` (Sionna convention).
        """
        y_eq, no_eff = equalise(y, h, no)
        if not isinstance(no_eff, torch.Tensor):
            no_eff = torch.tensor(no_eff, dtype=torch.float32, device=self.device)
        return self.demapper(y_eq, no_eff)

    # ---- internals --------------------------------------------------------------------------------
    def _check_frame(self, tx: TxFrame) -> None:
        """The frame must come from the same transmitter settings (receiver settings may differ)."""
        a, b = tx.config, self.config
        if a.transmitter_key != b.transmitter_key:
            raise ValueError(
                f"TxFrame was prepared for k={a.code.k}, n={a.code.n}, modulation={a.modulation}, crc={a.crc}, "
                f"this link has k={b.code.k}, n={b.code.n}, modulation={b.modulation}, crc={b.crc}"
            )

    def decode_frame(self, tx: TxFrame, llr_of) -> RxResult:
        """Decode the frame chunk by chunk; ``llr_of(a, b)`` gives the LLRs ``float32[b - a, n]``
        of codewords ``a:b`` (called once per chunk of ``batch_codewords`` codewords)."""
        num_cw, k = tx.num_codewords, self.config.code.k
        bits = torch.empty(num_cw, k, dtype=torch.float32, device=self.device)
        iters = torch.empty(num_cw, dtype=torch.int32, device=self.device)
        step = self.config.batch_codewords(str(self.device))
        for a in range(0, num_cw, step):
            b = min(a + step, num_cw)
            bits[a:b], iters[a:b] = self.decoder(llr_of(a, b))
        return self._receive(tx, bits, iters)

    def _receive(self, tx: TxFrame, bits: torch.Tensor, iters: torch.Tensor) -> RxResult:
        """CRC check, reassembly and error counting from hard-decided ``bits float32[num_cw, k]``."""
        payload, ok = self.crc.check(bits)
        if ok is None:  # no CRC: genie check against the sent bits
            ok = (payload.to(torch.uint8) == tx.info_bits).all(dim=1)
        rx_bytes = blocks_to_bytes(payload, tx.layout)
        block_ok = ok.cpu().numpy().astype(bool)
        bad_per_image = np.bincount(tx.block_image[~block_ok], minlength=tx.num_images)
        bit_errors = int(np.bitwise_count(np.bitwise_xor(rx_bytes, tx.tx_bytes)).sum(dtype=np.int64))
        return RxResult(
            streams=split_streams(rx_bytes, tx.layout),
            block_ok=block_ok,
            block_image=tx.block_image,
            image_ok=bad_per_image == 0,
            num_block_errors=int((~block_ok).sum()),
            num_blocks=tx.num_codewords,
            bit_errors=bit_errors,
            channel_uses=tx.channel_uses,
            bp_iterations=iters.cpu().numpy(),
            erasures=failed_bit_ranges(tx.layout, block_ok),
        )
