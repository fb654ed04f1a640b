"""Payloads of several named parts over the bit-true link: unequal error protection per part.

A digital payload may carry several parts per image (``labels``, ``features`` ...; see
:class:`simlink.methods.base.PayloadPart`). Each part is segmented into its *own* code blocks and
sent with its own link settings (``link.parts.<part>``: code ``(k, n)``, QAM order, CRC; the
link's settings otherwise, :meth:`~simlink.phy.config.LinkConfig.for_part`)::

    part p of every image --DigitalLink(p).prepare--> codewords of part p, S_p = n_p / log2(M_p) symbols each
    all parts' codewords, part after part --> one frame of rows, zero-padded to S_max = max_p S_p
    --channel (one draw for the whole frame)--> each part's rows, first S_p symbols
    --DigitalLink(p): demap, BP decode, CRC--> per part: bytes, block_ok, erased bit ranges

Every codeword is one row of the channel, whatever its part, so all parts of an image go through
the same channel realisation process as a one-part payload: ``rayleigh_block`` with
``granularity: image`` gives all codewords of an image — of every part — one fade, with
``granularity: block`` every codeword its own, ``rayleigh_fast`` every symbol its own. The
padding symbols of shorter rows are never sent nor counted: channel uses are ``S_p`` per
codeword of part ``p``, so a part's padding *bits* (of its last block) are counted, padding
*symbols* of the frame layout are not. With one part the frame is exactly
:meth:`~simlink.phy.link.DigitalLink.prepare`'s and the draws are exactly
:meth:`~simlink.phy.link.DigitalLink.transmit`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from simlink.phy.channels import ChannelConfig, ChannelSimulator
from simlink.phy.config import LinkConfig
from simlink.phy.link import DigitalLink, RxResult, TxFrame, sionna_seed, torch_device
from simlink.phy.snr import esno_db_to_no


@dataclass
class PartedFrame:
    """The transmitter side of a payload with named parts.

    Attributes:
        parts: ``{part: TxFrame}`` in sending order (each part's codewords, layout, bytes; with
            several parts its ``symbols`` are a view into :attr:`symbols`).
        symbols: ``complex64[B, S_max]`` every codeword of every part, part after part, zero-padded
            to the longest codeword (``B = sum of the parts' codewords``); on the link's device.
        row_image: ``int64[B]`` image index of each row (on the device).
        first_row: ``{part: int}`` the part's first row in ``symbols``.
        num_images: ``N``.
    """

    parts: dict[str, TxFrame]
    symbols: torch.Tensor
    row_image: torch.Tensor
    first_row: dict[str, int]
    num_images: int

    @property
    def num_bits(self) -> np.ndarray:
        """``int64[N]``: payload bits per image over all parts."""
        return sum((f.num_bits for f in self.parts.values()), np.zeros(self.num_images, dtype=np.int64))

    @property
    def channel_uses(self) -> np.ndarray:
        """``int64[N]``: complex channel uses per image over all parts (``S_p`` per codeword of part ``p``)."""
        return sum((f.channel_uses for f in self.parts.values()), np.zeros(self.num_images, dtype=np.int64))

    def rows(self, part: str) -> slice:
        """The rows of ``part`` in :attr:`symbols`."""
        a = self.first_row[part]
        return slice(a, a + self.parts[part].num_codewords)


@dataclass
class PartedRx:
    """What the receiver got for one transmission of a :class:`PartedFrame`.

    Attributes:
        parts: ``{part: RxResult}`` (received bytes, ``block_ok``, ``erasures`` per image ...).
        image_ok: ``bool[N]``: every block of every part of the image passed.
        channel_uses: ``int64[N]`` over all parts.
    """

    parts: dict[str, RxResult]
    image_ok: np.ndarray
    channel_uses: np.ndarray

    @property
    def num_blocks(self) -> int:
        return sum(r.num_blocks for r in self.parts.values())

    @property
    def num_block_errors(self) -> int:
        return sum(r.num_block_errors for r in self.parts.values())

    @property
    def bit_errors(self) -> int:
        return sum(r.bit_errors for r in self.parts.values())


class PartedLink:
    """One :class:`~simlink.phy.link.DigitalLink` per distinct part setting, one channel per frame.

    Args:
        config: the scenario's ``link`` section (with its ``parts``).
        device: torch device string.
    """

    def __init__(self, config: LinkConfig, device: str = "cpu"):
        self.config = config
        self.device = torch_device(device)
        self.channel = ChannelSimulator(self.device)
        self._links: dict[str, DigitalLink] = {}  # by settings: parts with the same settings share one
        self._by_part: dict[str, DigitalLink] = {}  # by part name: resolved once, not per cell

    def link_for(self, part: str) -> DigitalLink:
        """The link of payload part ``part`` (shared by parts with the same settings)."""
        if part not in self._by_part:
            cfg = self.config.for_part(part)
            key = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
            if key not in self._links:
                self._links[key] = DigitalLink(cfg, device=self.device)
            self._by_part[part] = self._links[key]
        return self._by_part[part]

    # ---- transmitter ----------------------------------------------------------------------------
    def prepare(self, parts: dict[str, list[bytes]]) -> PartedFrame:
        """Segment, CRC-protect, encode and map every part with its own settings (deterministic).

        Input: ``{part: N byte strings}`` (every part one entry per image, in sending order).
        Output: :class:`PartedFrame`.
        """
        sizes = {p: len(s) for p, s in parts.items()}
        if not parts or len(set(sizes.values())) != 1:
            raise ValueError(f"every part needs one stream per image, got {sizes}")
        frames = {p: self.link_for(p).prepare(list(s)) for p, s in parts.items()}
        n = next(iter(sizes.values()))
        first, row = {}, 0
        for p, f in frames.items():
            first[p], row = row, row + f.num_codewords
        if len(frames) == 1:  # exactly DigitalLink's frame
            f = next(iter(frames.values()))
            symbols = f.symbols
        else:
            width = max(f.symbols.shape[1] for f in frames.values())
            symbols = torch.zeros(row, width, dtype=torch.complex64, device=self.device)
            for p, f in frames.items():
                rows = slice(first[p], first[p] + f.num_codewords)
                symbols[rows, : f.symbols.shape[1]] = f.symbols
                f.symbols = symbols[rows, : f.symbols.shape[1]]  # a view: the frame holds one copy
        row_image = torch.as_tensor(np.concatenate([f.block_image for f in frames.values()]), device=self.device)
        return PartedFrame(frames, symbols, row_image, first, n)

    # ---- channel + receiver ---------------------------------------------------------------------
    def transmit(self, frame: PartedFrame, channel: ChannelConfig, esno_db: float, seed: int) -> PartedRx:
        """Send every part over one channel draw and decode each part with its own link.

        Inputs: ``frame`` from :meth:`prepare`; ``channel`` a channel entry; ``esno_db`` Es/N0 in
        dB per complex channel use (the same for every part); ``seed`` (the result depends on it
        alone). Output: :class:`PartedRx`.
        """
        no = esno_db_to_no(esno_db)
        with sionna_seed(seed):
            y, h = self.channel(channel, frame.symbols, no, frame.row_image, frame.num_images)
        out = {}
        for p, f in frame.parts.items():
            link, rows, width = self.link_for(p), frame.rows(p), f.symbols.shape[1]
            y_p = y[rows, :width]
            h_p = None if h is None else h[rows, :width]
            out[p] = link.decode_frame(f, lambda a, b, link=link, y_p=y_p, h_p=h_p:
                                       link.demap(y_p[a:b], None if h_p is None else h_p[a:b], no))
        return self._result(frame, out)

    def decode_llrs(self, frame: PartedFrame, llrs: dict[str, torch.Tensor]) -> PartedRx:
        """Decode given channel LLRs per part (``{part: float32[num_cw_p, n_p]}``, ``log p(1)/p(0)``)
        instead of drawing a channel: for tests and iterative receivers."""
        missing = set(frame.parts) - set(llrs)
        if missing:
            raise ValueError(f"no LLRs for parts {sorted(missing)}")
        return self._result(frame, {p: self.link_for(p).decode_llrs(f, llrs[p]) for p, f in frame.parts.items()})

    def _result(self, frame: PartedFrame, out: dict[str, RxResult]) -> PartedRx:
        image_ok = np.ones(frame.num_images, dtype=bool)
        for r in out.values():
            image_ok &= r.image_ok
        return PartedRx(out, image_ok, frame.channel_uses)
