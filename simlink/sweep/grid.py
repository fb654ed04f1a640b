"""Expansion of a scenario into cells: method × operating point × channel × SNR × repeat."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from simlink.methods.base import Method, OperatingPoint


@dataclass(frozen=True)
class Cell:
    """One row of the results table.

    Attributes:
        method: the method's display name (unique within a scenario).
        op: the operating point's label (e.g. ``"q=50"``).
        channel: the channel's label (e.g. ``"awgn"``, ``"rayleigh_block(image)"``).
        snr_db: Es/N0 per complex channel use, dB.
        repeat: index of the independent channel draw, ``0 .. repeats-1``.
    """

    method: str
    op: str
    channel: str
    snr_db: float
    repeat: int

    @property
    def key(self) -> tuple:
        return cell_key(self.method, self.op, self.channel, self.snr_db, self.repeat)


def cell_key(method: str, op: str, channel: str, snr_db: float, repeat: int) -> tuple:
    """The identity of a cell in the table (SNR rounded to 1e-6 dB so float noise cannot split it)."""
    return (method, op, channel, round(float(snr_db), 6), int(repeat))


def cell_seed(base_seed: int, cell: Cell) -> int:
    """Seed of a cell's channel draws: a hash of the scenario seed and the cell's identity.

    Independent of execution order, so a resumed sweep reproduces an uninterrupted one.
    """
    text = f"{base_seed}|{cell.key!r}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") % (2**63)


def expand_grid(
    methods: list[tuple[str, Method, list[OperatingPoint]]],
    channels: list[str],
    snrs: list[float],
    repeats: int,
) -> list[Cell]:
    """All cells in table order: method, operating point, channel, SNR, repeat.

    Args:
        methods: ``(display_name, method, operating_points)`` per scenario entry, in order.
        channels: channel labels, in scenario order.
        snrs: Es/N0 values in dB, ascending.
        repeats: channel draws per point.
    """
    return [
        Cell(name, op.label, ch, float(snr), r)
        for name, _, ops in methods
        for op in ops
        for ch in channels
        for snr in snrs
        for r in range(repeats)
    ]
