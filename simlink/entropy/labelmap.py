"""Lossless coding of label maps (``uint8[H, W]`` segmentation maps) with constriction's range coder.

Why a coder of its own: PNG / zlib see a label map as bytes and find its long runs, but not
that a boundary in one row is almost always continued in the next. This coder is
context-adaptive, as JBIG and the lossless modes of image coders are. Rows are coded top to
bottom. For each pixel but the first of a row, a binary flag says "same label as the pixel on
the left". Its probability is adapted per context, and the context is read from the row above
(is there a label change above-left, above-right). Only where the flag is 0 (a boundary) is a
label coded, under an adaptive distribution conditioned on the left and upper labels, with the
left label excluded (it cannot occur there). The first pixel of a row is coded conditioned on
the pixel above it. All counts start at 1 and are updated after each row, identically at both
ends; no table is sent. Flags are coded one row per batched call, boundary labels one by one
(they are few).

Stream: a 5-byte header (``H``, ``W`` as uint16, the label count ``K``) and the range coder's
words. A corrupted stream never crashes or hangs: the symbol count is fixed by the header
(bounded), and whatever constriction rejects raises :class:`~simlink.errors.DecodeError`.
"""

from __future__ import annotations

import struct

import numpy as np
import constriction

from simlink.errors import DecodeError

__all__ = ["encode_label_map", "decode_label_map"]

_HEADER = struct.Struct("<HHB")
_MAX_PIXELS = 1 << 24
#: One model family for every call (its probabilities are passed per call).
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def _flag_contexts(above: np.ndarray | None, w: int) -> np.ndarray:
    """``int64[W - 1]`` flag contexts for pixels ``1 .. W-1`` of a row, from the row above (``None``:
    the first row, context 4). 0..3: (change above-left) + 2 (change above-right)."""
    if above is None:
        return np.full(w - 1, 4, np.int64)
    change = np.concatenate([above[1:] != above[:-1], [False]])  # change[c] = above[c+1] != above[c]
    left_change = change[:-1]  # between c-1 and c, for c = 1 .. W-1
    right_change = change[1:]  # between c and c+1
    return left_change.astype(np.int64) + 2 * right_change.astype(np.int64)


class _Model:
    """The adaptive counts both ends keep (pure functions of what was coded so far)."""

    def __init__(self, k: int) -> None:
        k = max(k, 2)  # constriction's categorical needs two symbols at least
        self.k = k
        self.flag = np.ones((5, 2))  # [context, (boundary, same)]
        self.label = np.ones((k + 1, k + 1, k))  # [left (k: none), up (k: none), label]
        self.first = np.ones((k + 1, k))  # [up (k: none), label]

    def flag_probs(self, ctx: np.ndarray) -> np.ndarray:
        p = self.flag[ctx]
        return p / p.sum(axis=1, keepdims=True)

    def label_probs(self, left: int, up: int) -> np.ndarray:
        p = self.label[left, up].copy()
        if left < self.k:
            p[left] = 0.0  # a boundary never repeats the left label
        return p / p.sum()

    def first_probs(self, up: int) -> np.ndarray:
        p = self.first[up]
        return p / p.sum()

    def update(self, row: np.ndarray, above: np.ndarray | None, ctx: np.ndarray) -> None:
        same = (row[1:] == row[:-1]).astype(np.int64)
        np.add.at(self.flag, (ctx, same), 1.0)
        up_row = np.full(len(row), self.k) if above is None else above.astype(np.int64)
        self.first[up_row[0], row[0]] += 1.0
        b = np.flatnonzero(same == 0) + 1
        np.add.at(self.label, (row[b - 1].astype(np.int64), up_row[b], row[b].astype(np.int64)), 1.0)


def encode_label_map(labels: np.ndarray) -> bytes:
    """Losslessly code ``labels`` (``uint8[H, W]``, ``1 <= H, W <= 65535``); returns the stream."""
    m = np.asarray(labels)
    if m.ndim != 2 or m.dtype != np.uint8 or m.size == 0 or max(m.shape) > 0xFFFF:
        raise ValueError(f"encode_label_map: expected a non-empty uint8[H, W] with H, W <= 65535, "
                         f"got {m.dtype}{list(m.shape)}")
    h, w = m.shape
    k = int(m.max()) + 1
    model, enc = _Model(k), constriction.stream.queue.RangeEncoder()
    above = None
    for row in m:
        up0 = model.k if above is None else int(above[0])
        enc.encode(np.array([row[0]], np.int32), _CATEGORICAL, model.first_probs(up0)[None])
        ctx = _flag_contexts(above, w)
        if w > 1:
            same = (row[1:] == row[:-1]).astype(np.int32)
            enc.encode(same, _CATEGORICAL, model.flag_probs(ctx))
            for c in np.flatnonzero(same == 0) + 1:
                up = model.k if above is None else int(above[c])
                enc.encode(np.array([row[c]], np.int32), _CATEGORICAL,
                           model.label_probs(int(row[c - 1]), up)[None])
        model.update(row, above, ctx)
        above = row
    words = np.asarray(enc.get_compressed(), dtype="<u4")
    return _HEADER.pack(h, w, k - 1) + words.tobytes()


def decode_label_map(data: bytes) -> np.ndarray:
    """The ``uint8[H, W]`` label map of a :func:`encode_label_map` stream.

    Raises:
        DecodeError: a stream too short for its header, an impossible size, or one the range
            decoder rejects (a corrupted stream may also decode to a wrong map of the right size).
    """
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise DecodeError(f"label map: {len(data)} bytes is shorter than its {_HEADER.size}-byte header")
    h, w, k1 = _HEADER.unpack_from(data)
    if h == 0 or w == 0 or h * w > _MAX_PIXELS:
        raise DecodeError(f"label map: header says {h}x{w}, not a valid size")
    body = data[_HEADER.size:]
    body += b"\x00" * (-len(body) % 4)
    try:
        dec = constriction.stream.queue.RangeDecoder(np.frombuffer(body, dtype="<u4").astype(np.uint32))
        model, out = _Model(k1 + 1), np.empty((h, w), np.uint8)
        above = None
        for r in range(h):
            row = out[r]
            up0 = model.k if above is None else int(above[0])
            row[0] = dec.decode(_CATEGORICAL, model.first_probs(up0)[None])[0]
            ctx = _flag_contexts(above, w)
            if w > 1:
                same = dec.decode(_CATEGORICAL, model.flag_probs(ctx))
                for c in range(1, w):
                    if same[c - 1]:
                        row[c] = row[c - 1]
                    else:
                        up = model.k if above is None else int(above[c])
                        row[c] = dec.decode(_CATEGORICAL, model.label_probs(int(row[c - 1]), up)[None])[0]
            model.update(row, above, ctx)
            above = row
    except (ValueError, RuntimeError, AssertionError, IndexError) as exc:
        raise DecodeError(f"label map: corrupt stream ({exc})") from None
    return out
