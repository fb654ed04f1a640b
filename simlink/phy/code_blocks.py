"""Code-block segmentation and per-block CRC.

Transmitter, per image::

    bytes --(MSB first)--> bits --> blocks of P = k - crc_len payload bits (last block zero-padded)
          --> CRC appended per block (Sionna CRCEncoder) --> k bits per block (LDPC input)

Receiver: CRC check per block (Sionna CRCDecoder), then the payload bits of an image's blocks are
concatenated and cut back to exactly the original number of bytes. **The length of every stream
(in bytes) is assumed known to the receiver** — it is signalled out of band (e.g. in a control
channel) and is not protected or corrupted by the simulated link. An empty stream has 0 blocks.

Everything is vectorised over all blocks of all images (numpy ``unpackbits``/``packbits`` and
boolean masks on the device); there are no per-bit Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class BlockLayout:
    """Where each image's bits sit in the code blocks.

    Attributes:
        payload_bits: ``P``, payload bits per block (``k - crc_len``).
        stream_lengths: ``int64[N]``, bytes per image.
        blocks_per_image: ``int64[N]``, ``ceil(8 * len / P)`` (0 for an empty stream).
        block_image: ``int64[num_blocks]``, image index of each block (images in order).
        valid_bits: ``int64[num_blocks]``, leading bits of each block that carry payload
            (``P`` except for an image's last block); the rest is zero padding.
    """

    payload_bits: int
    stream_lengths: np.ndarray
    blocks_per_image: np.ndarray
    block_image: np.ndarray
    valid_bits: np.ndarray

    @property
    def num_blocks(self) -> int:
        """Total number of code blocks (codewords)."""
        return int(self.block_image.shape[0])

    @property
    def num_images(self) -> int:
        """Number of streams ``N``."""
        return int(self.stream_lengths.shape[0])

    @property
    def num_bits(self) -> np.ndarray:
        """``int64[N]``: payload bits per image, ``8 * len(stream)``."""
        return 8 * self.stream_lengths

    def payload_mask(self, device: str | torch.device) -> torch.Tensor:
        """``bool[num_blocks, P]`` on ``device``: True where a block position carries payload."""
        pos = torch.arange(self.payload_bits, device=device)
        valid = torch.as_tensor(self.valid_bits, device=device)
        return pos.unsqueeze(0) < valid.unsqueeze(1)


def plan_layout(stream_lengths, payload_bits: int) -> BlockLayout:
    """Block layout for streams of the given lengths.

    Inputs:
        stream_lengths: bytes per image, sequence or ``int[N]`` array (>= 0).
        payload_bits: ``P`` payload bits per block (> 0).
    Output: :class:`BlockLayout`.
    """
    if payload_bits <= 0:
        raise ValueError(f"payload_bits must be positive, got {payload_bits}")
    lengths = np.asarray(stream_lengths, dtype=np.int64).reshape(-1)
    if (lengths < 0).any():
        raise ValueError("stream lengths must be non-negative")
    bits = 8 * lengths
    blocks = -(-bits // payload_bits)  # ceil
    block_image = np.repeat(np.arange(lengths.shape[0], dtype=np.int64), blocks)
    first_block = np.cumsum(blocks) - blocks  # index of each image's first block
    index_in_image = np.arange(block_image.shape[0], dtype=np.int64) - first_block[block_image]
    valid = np.minimum(payload_bits, bits[block_image] - index_in_image * payload_bits)
    return BlockLayout(
        payload_bits=int(payload_bits),
        stream_lengths=lengths,
        blocks_per_image=blocks.astype(np.int64),
        block_image=block_image,
        valid_bits=valid.astype(np.int64),
    )


_NO_RANGES = np.zeros((0, 2), dtype=np.int64)
_NO_RANGES.flags.writeable = False


def failed_bit_ranges(layout: BlockLayout, block_ok: np.ndarray) -> list[np.ndarray]:
    """Which payload bits of each image were in code blocks that failed.

    Inputs: ``layout`` (:func:`plan_layout`); ``block_ok bool[num_blocks]`` (CRC passed).
    Output: per image an ``int64[m, 2]`` array of ``[start, stop)`` bit ranges of its stream
    (bit 0 = MSB of byte 0), one per run of consecutive failed blocks; block ``j`` of an image
    covers bits ``[j * P, j * P + valid_bits)``, so the last block's padding is not included.
    Images without a failed block share one empty read-only array.
    """
    block_ok = np.asarray(block_ok, dtype=bool).reshape(-1)
    if block_ok.shape[0] != layout.num_blocks:
        raise ValueError(f"block_ok has {block_ok.shape[0]} entries for {layout.num_blocks} blocks")
    out = [_NO_RANGES] * layout.num_images
    bad = np.flatnonzero(~block_ok)
    if bad.size == 0:
        return out
    first_block = np.cumsum(layout.blocks_per_image) - layout.blocks_per_image
    image = layout.block_image[bad]
    start = (bad - first_block[image]) * layout.payload_bits
    stop = start + layout.valid_bits[bad]
    new_run = np.ones(bad.size, dtype=bool)
    new_run[1:] = (np.diff(bad) != 1) | (np.diff(image) != 0)
    run_first = np.flatnonzero(new_run)
    run_last = np.append(run_first[1:], bad.size) - 1
    ranges = np.stack([start[run_first], stop[run_last]], axis=1)
    run_image = image[run_first]
    cuts = np.flatnonzero(np.diff(run_image)) + 1
    for img, r in zip(run_image[np.append(0, cuts)].tolist(), np.split(ranges, cuts)):
        out[img] = r
    return out


def streams_to_blocks(streams: list[bytes], layout: BlockLayout, device: str | torch.device) -> torch.Tensor:
    """Cut byte streams into zero-padded payload blocks.

    Inputs:
        streams: ``N`` byte strings (lengths must match ``layout.stream_lengths``).
        layout: from :func:`plan_layout`.
        device: torch device for the output.
    Output: ``float32[num_blocks, P]`` tensor of 0/1 on ``device`` (bits MSB first per byte).
    """
    if [len(s) for s in streams] != layout.stream_lengths.tolist():
        raise ValueError("streams do not match the layout's stream lengths")
    blocks = torch.zeros(layout.num_blocks, layout.payload_bits, dtype=torch.float32, device=device)
    if layout.num_blocks == 0:
        return blocks
    raw = np.frombuffer(b"".join(streams), dtype=np.uint8)
    bits = torch.from_numpy(np.unpackbits(raw)).to(device=device, dtype=torch.float32)
    blocks[layout.payload_mask(device)] = bits
    return blocks


def blocks_to_bytes(blocks: torch.Tensor, layout: BlockLayout) -> np.ndarray:
    """Payload bits of all blocks, padding dropped, packed into the concatenation of all streams.

    Inputs:
        blocks: ``[num_blocks, P]`` tensor of 0/1 (any real or integer dtype, any device).
        layout: the layout the blocks were made with.
    Output: ``uint8[sum(stream_lengths)]`` numpy array (bytes of image 0, then image 1, ...).
    """
    if tuple(blocks.shape) != (layout.num_blocks, layout.payload_bits):
        raise ValueError(f"blocks must be [{layout.num_blocks}, {layout.payload_bits}], got {list(blocks.shape)}")
    if layout.num_blocks == 0:
        return np.zeros(0, dtype=np.uint8)
    bits = blocks[layout.payload_mask(blocks.device)].to(torch.uint8)  # all images' bits, in order
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=blocks.device)
    packed = (bits.view(-1, 8) * weights).sum(dim=1, dtype=torch.uint8)  # MSB first
    return packed.cpu().numpy()


def split_streams(buf: np.ndarray, layout: BlockLayout) -> list[bytes]:
    """Cut the concatenated bytes ``uint8[sum(lengths)]`` into ``N`` streams of the layout's lengths."""
    raw = buf.tobytes()
    ends = np.cumsum(layout.stream_lengths)
    starts = ends - layout.stream_lengths
    return [raw[a:b] for a, b in zip(starts.tolist(), ends.tolist())]


def blocks_to_streams(blocks: torch.Tensor, layout: BlockLayout) -> list[bytes]:
    """Reassemble payload blocks into byte streams of exactly the original lengths.

    Inputs: as :func:`blocks_to_bytes`. Output: ``N`` byte strings,
    ``len(out[i]) == layout.stream_lengths[i]``.
    """
    return split_streams(blocks_to_bytes(blocks, layout), layout)


class BlockCRC:
    """Per-block CRC with Sionna's ``CRCEncoder``/``CRCDecoder`` (or none).

    Args:
        crc: ``"24A"``, ``"24B"``, ``"24C"``, ``"16"``, ``"11"``, ``"6"`` (Sionna ``"CRC24A"``...)
            or ``None`` for no CRC.
        payload_bits: ``P`` payload bits per block.
        device: torch device string.
    """

    def __init__(self, crc: str | None, payload_bits: int, device: str):
        from sionna.phy.fec.crc import CRCDecoder, CRCEncoder

        self.crc = crc
        self.payload_bits = int(payload_bits)
        if crc is None:
            self.length = 0
            self._encoder = self._decoder = None
        else:
            self._encoder = CRCEncoder(f"CRC{crc}", k=self.payload_bits, device=device)
            self._decoder = CRCDecoder(self._encoder, device=device)
            self.length = int(self._encoder.crc_length)

    def attach(self, blocks: torch.Tensor) -> torch.Tensor:
        """Append the CRC: ``float32[B, P]`` -> ``float32[B, P + crc_len]`` (0/1)."""
        if self._encoder is None:
            return blocks
        if blocks.shape[0] == 0:
            return blocks.new_zeros(0, self.payload_bits + self.length)
        return self._encoder(blocks)

    def check(self, blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Verify and strip the CRC.

        Input: ``float32[B, P + crc_len]`` hard-decided bits (0/1).
        Output: ``(payload float32[B, P], ok bool[B])``; ``ok`` is ``None`` without a CRC.
        """
        if self._decoder is None:
            return blocks, None
        if blocks.shape[0] == 0:
            return blocks[:, : self.payload_bits], torch.zeros(0, dtype=torch.bool, device=blocks.device)
        payload, ok = self._decoder(blocks)
        return payload, ok.reshape(-1)
