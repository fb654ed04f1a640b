"""One payload path per payload kind: how the sweep sends, receives and tabulates a method's output.

A :class:`PayloadPath` is the only place that knows what a payload kind is. The runner calls, per
(method, operating point), :func:`encode_source` (encode every image once, decode the error-free
payload, measure it, then :meth:`PayloadPath.prepare` the transmitter side), and per cell
:meth:`~PayloadPath.transmit`, :meth:`~PayloadPath.outcome` and :meth:`~PayloadPath.row_fields`.
A method says which path it takes by its ``kind``; a third payload kind is one more registered
class in :data:`PAYLOAD_KINDS`, with no edit to the runner.

* ``digital`` (:class:`DigitalPath`): bitstreams over the bit-true link (code-block
  segmentation, CRC, LDPC, QAM, channel, BP decoding), each named payload part in its own code
  blocks with its own link settings (:mod:`simlink.phy.parted`); the error policy decides, part by
  part, what is concealed and what is decoded again (:mod:`simlink.sweep.receiver`).
* ``analog`` (:class:`AnalogPath`): channel symbols over the analog link; every image is decoded
  from what arrived (nothing is lost).

Images of mixed sizes are handled here too: encoding, decoding and measuring run per group of
images of one shape (:meth:`simlink.data.base.ImageSet.shape_groups`), while the per-image results
(and, for the digital link, the one frame of all streams) are kept in the image set's order.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, ClassVar

import numpy as np

from simlink.errors import SimlinkError
from simlink.hashing import derive_seed
from simlink.methods.base import (DEFAULT_PART, AnalogPayload, DigitalPayload, ImageKeys, Method, OperatingPoint, Payload,
                                  PayloadPart, Reception)
from simlink.metrics.stats import proportion_ci
from simlink.registry import Registry
from simlink.sweep.receiver import Outcome, PartDelivery, apply_error_policy, concealment_images

#: Payload paths by payload kind (a method's ``kind``).
PAYLOAD_KINDS: Registry[type["PayloadPath"]] = Registry("payload kind")


def register_payload_kind(cls: type["PayloadPath"]) -> type["PayloadPath"]:
    """Class decorator: add a :class:`PayloadPath` under its ``kind`` (twice is an error)."""
    return PAYLOAD_KINDS.add(cls.kind, cls)


# ---------------------------------------------------------------------------------------------
# what is computed once per (method, operating point)


@dataclass
class ShapeGroup:
    """Images of one shape within the sent set.

    Attributes:
        index: ``int64[k]`` positions in the image set.
        images: ``uint8[k, H, W, 3]``.
        keys: the images' :class:`~simlink.methods.base.ImageKeys` for this (method, op).
    """

    index: np.ndarray
    images: np.ndarray
    keys: ImageKeys

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


@dataclass
class SourceSide:
    """Everything computed once per (method, operating point) and reused for every cell.

    Attributes:
        method, op: what encoded.
        groups: the images by shape; ``payloads[g]`` is group ``g``'s encoded payload.
        clean: ``{name: float64[N]}`` metrics of the error-free reception (analog: a noiseless
            channel), in image-set order.
        pixels: ``int64[N]`` pixels per image (the denominator of bpp and cpp).
        meta: the payloads' side information; per-image sequences are in image-set order.
        outputs: names of the receiver outputs its receptions carry (``class_logits`` ...).
        tx: what the payload path prepared for transmission (digital: :class:`DigitalTx`).
    """

    method: Method
    op: OperatingPoint
    groups: list[ShapeGroup]
    payloads: list[Payload]
    clean: dict[str, np.ndarray]
    pixels: np.ndarray
    meta: dict = field(default_factory=dict)
    outputs: frozenset = frozenset()
    tx: Any = None

    @property
    def num_images(self) -> int:
        return int(len(self.pixels))

    @cached_property
    def group_of(self) -> tuple[np.ndarray, np.ndarray]:
        """``(group, position)`` ``int64[N]`` each: the group of every image and its place in it."""
        group, pos = np.zeros(self.num_images, np.int64), np.zeros(self.num_images, np.int64)
        for g, grp in enumerate(self.groups):
            group[grp.index], pos[grp.index] = g, np.arange(len(grp.index))
        return group, pos


def _gather_meta(groups: list[ShapeGroup], payloads: list[Payload], n: int) -> dict:
    """Merge the groups' payload meta: a value holding one entry per image of its group is put
    in image-set order, anything else is taken from the first group."""
    if len(payloads) == 1:
        return dict(payloads[0].meta)
    out: dict = {}
    for key in dict.fromkeys(k for p in payloads for k in p.meta):
        vals = [p.meta.get(key) for p in payloads]
        per_image = [isinstance(v, (list, tuple, np.ndarray)) and len(v) == len(g.index) for v, g in zip(vals, groups)]
        if any(per_image):
            merged = np.full(n, None, dtype=object)  # groups without the key: None per image
            for v, g, ok in zip(vals, groups, per_image):
                if ok:
                    merged[g.index] = list(v)
            out[key] = merged.tolist()
        else:
            out[key] = next(v for v in vals if v is not None)
    return out


def encode_source(method: Method, op: OperatingPoint, data, base_seed: int, path: "PayloadPath", measure,
                  stopwatch: Callable[[str], Any] | None = None) -> SourceSide:
    """Encode every image of ``data`` (an :class:`~simlink.data.base.ImageSet`) once, decode the
    error-free payloads, measure them and prepare the transmitter side.

    Args:
        method, op: what to run.
        data: the sent images (any sizes; coded per shape group).
        base_seed: the scenario seed (the images' keys derive from it, the method's display name,
            ``op`` and each image's index).
        path: the :class:`PayloadPath` of ``method.kind``.
        measure: a :class:`~simlink.metrics.measure.Measure` of ``data``.
        stopwatch: ``stopwatch(stage)`` context manager accumulating wall time (optional).
    """
    sw = stopwatch or (lambda stage: nullcontext())
    name = method.config.display_name
    groups, payloads, clean, outputs = [], [], {}, set()
    n = len(data)
    for index, subset in data.shape_groups():
        g = ShapeGroup(index, subset.images, ImageKeys.derive(index, base_seed, name, op.label))
        with sw("encode"):
            payload = method.encode(g.images, op, g.keys)
        path.check_payload(method, op, payload, len(index))
        with sw("decode"):
            rec = method.decode(path.error_free(payload), op, g.shape, g.keys)
        path.check_clean(method, op, rec, index)
        with sw("metrics"):
            metrics = measure(rec.images, index, rec.outputs)
        for k, v in metrics.items():
            clean.setdefault(k, per_image_array(n, v))[index] = v
        outputs |= set(rec.outputs)
        groups.append(g)
        payloads.append(payload)
    pixels = np.asarray(data.pixels, dtype=np.int64)
    src = SourceSide(method, op, groups, payloads, clean, pixels, _gather_meta(groups, payloads, n),
                     frozenset(outputs))
    with sw("link_prepare"):
        src.tx = path.prepare(src)
    return src


def decode_and_measure(src: SourceSide, measure, idx: np.ndarray,
                       payload_of: Callable[[int, np.ndarray], Payload]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Decode what arrived for the images at ``idx`` and measure them, group by group.

    Args:
        src: the source side.
        measure: the :class:`~simlink.metrics.measure.Measure`.
        idx: ``int64[m]`` image-set positions to decode.
        payload_of: ``payload_of(g, pos)`` the received payload of group ``g``'s images at
            positions ``pos`` (``int64[k]``, in the group's order).
    Returns:
        ``(metrics, ok)``: ``ok bool[m]`` where an image came out; ``metrics`` ``{name:
        float64[ok.sum()]}`` of those, in ``idx`` order.
    """
    idx = np.asarray(idx, dtype=np.int64)
    group, pos = src.group_of
    ok = np.zeros(len(idx), dtype=bool)
    parts = []
    for g, grp in enumerate(src.groups):
        mask = group[idx] == g
        if not mask.any():
            continue
        sel, p = idx[mask], pos[idx[mask]]
        rec = src.method.decode(payload_of(g, p), src.op, grp.shape, grp.keys.take(p))
        ok[mask] = rec.ok
        if rec.ok.any():
            good = rec.take(rec.ok)
            parts.append((np.flatnonzero(mask)[rec.ok], measure(good.images, sel[rec.ok], good.outputs)))
    rank = np.cumsum(ok) - 1
    out: dict[str, np.ndarray] = {}
    for where, metrics in parts:
        for k, v in metrics.items():
            out.setdefault(k, per_image_array(int(ok.sum()), v))[rank[where]] = v
    return out, ok


def conceal_metrics(data, measure) -> dict[str, np.ndarray]:
    """``{name: float64[N]}`` metrics of the concealment image in place of every image (per shape)."""
    out: dict[str, np.ndarray] = {}
    for index, subset in data.shape_groups():
        for k, v in measure(concealment_images(len(index), subset.image_shape), index).items():
            out.setdefault(k, per_image_array(len(data), v))[index] = v
    return out


def per_image_array(n: int, like) -> np.ndarray:
    """``float64[n, ...]`` of NaN shaped like ``like``'s per-image values (``like`` is
    ``float[k]`` for a per-image metric, ``float[k, ...]`` for a per-image aggregate such as a
    confusion matrix)."""
    return np.full((n, *np.shape(like)[1:]), np.nan)


def rate_ci(k: int, n: int) -> tuple[float, float]:
    """``(k / n, half the width of the 95 % Wilson interval)``; ``(nan, nan)`` when n = 0."""
    if n == 0:
        return math.nan, math.nan
    p, low, high = proportion_ci(k, n)
    return float(p), float((high - low) / 2)


# ---------------------------------------------------------------------------------------------
# the paths


class PayloadPath(ABC):
    """Everything the sweep does with one payload kind.

    Args:
        scenario: the validated scenario (link settings, error policy).
        device: torch device string.
    """

    kind: ClassVar[str]

    def __init__(self, scenario, device: str) -> None:
        self.scenario, self.device = scenario, device

    def check_payload(self, method: Method, op: OperatingPoint, payload: Payload, n: int) -> None:
        """Raise :class:`SimlinkError` if ``encode`` did not return this kind's payload for ``n`` images."""

    def check_clean(self, method: Method, op: OperatingPoint, rec: Reception, index: np.ndarray) -> None:
        """Raise :class:`SimlinkError` if the error-free payload did not decode."""

    def error_free(self, payload: Payload) -> Payload:
        """What an error-free (noiseless) link delivers for ``payload`` (the ``*_clean`` columns)."""
        return payload

    @abstractmethod
    def prepare(self, src: SourceSide) -> Any:
        """The transmitter side, computed once per (method, op) (stored as ``src.tx``)."""

    @abstractmethod
    def transmit(self, src: SourceSide, channel, snr_db: float, seed: int) -> Any:
        """One transmission over ``channel`` at Es/N0 ``snr_db`` whose draws depend on ``seed`` alone."""

    @abstractmethod
    def outcome(self, src: SourceSide, rx: Any, measure, conceal: dict[str, np.ndarray]) -> Outcome:
        """Per-image metrics of what the receiver shows after ``rx``."""

    @abstractmethod
    def row_fields(self, src: SourceSide, rx: Any, outcome: Outcome, snr_db: float) -> dict:
        """The link columns of the cell's row at Es/N0 ``snr_db``: ``bpp``, ``cpp``, ``ebno_db``, ``modulation``,
        ``code_k``, ``code_n``, ``code_rate``, ``bler``, ``bler_ci``, ``ber``, ``n_blocks``,
        ``n_block_errors`` (NaN / 0 where they do not apply)."""


@dataclass
class DigitalTx:
    """The digital transmitter side of one (method, op): every part's streams per image
    (``parts``, image-set order), the method's part declarations (``specs``) and their link
    ``frame`` (:class:`~simlink.phy.parted.PartedFrame`)."""

    parts: dict[str, list[bytes]]
    specs: dict[str, PayloadPart]
    frame: Any


#: Per-part columns of a payload with named parts: ``<column>_<part>``.
PART_COLUMNS = ("bpp", "cpp", "modulation", "code_k", "code_n", "code_rate", "bler", "bler_ci", "ber", "lost_frac",
                "n_blocks", "n_block_errors")


@register_payload_kind
class DigitalPath(PayloadPath):
    """Bitstreams (one or more named parts) through :class:`~simlink.phy.parted.PartedLink`; the
    scenario's error policy, part by part."""

    kind = "digital"

    def __init__(self, scenario, device: str) -> None:
        from simlink.phy.parted import PartedLink

        super().__init__(scenario, device)
        self.link = PartedLink(scenario.link, device=device)

    def check_payload(self, method, op, payload, n):
        if not isinstance(payload, DigitalPayload) or len(payload) != n:
            raise SimlinkError(f"{method.name} {op.label}: encode must return one bitstream per image")
        declared = [part.name for part in method.payload_parts()]
        if len(set(declared)) != len(declared):
            raise SimlinkError(f"{method.name}: payload_parts() names a part twice: {declared}")
        if sorted(payload.parts) != sorted(declared):
            raise SimlinkError(f"{method.name} {op.label}: encode returned parts {list(payload.parts)}, "
                               f"the method declares {declared} (Method.payload_parts)")

    def check_clean(self, method, op, rec, index):
        if not np.all(rec.ok):
            bad = index[~rec.ok].tolist()
            raise SimlinkError(f"{method.name} {op.label}: cannot decode its own error-free streams for images {bad}")

    def prepare(self, src) -> "DigitalTx":
        """Every part's streams in image-set order (the method's part order), and their frame."""
        specs = {part.name: part for part in src.method.payload_parts()}
        parts: dict[str, list[bytes]] = {name: [b""] * src.num_images for name in specs}
        for g, p in zip(src.groups, src.payloads):
            for name, streams in p.parts.items():
                for i, stream in zip(g.index, streams):
                    parts[name][i] = stream
        return DigitalTx(parts, specs, self.link.prepare(parts))

    def transmit(self, src, channel, snr_db, seed):
        return self.link.transmit(src.tx.frame, channel, snr_db, seed)

    def outcome(self, src, rx, measure, conceal):
        tx = src.tx
        deliveries = {name: PartDelivery(tx.parts[name], rx.parts[name].streams, rx.parts[name].image_ok,
                                         tx.specs[name].essential) for name in tx.parts}

        def received(g: int, pos: np.ndarray) -> DigitalPayload:
            images = src.groups[g].index[pos].tolist()
            return DigitalPayload(parts={name: [r.streams[i] for i in images] for name, r in rx.parts.items()},
                                  erasures={name: [r.erasures[i] for i in images] for name, r in rx.parts.items()})

        return apply_error_policy(self.scenario.error_policy, deliveries, src.clean,
                                  _complete(conceal, src, measure),
                                  lambda idx: decode_and_measure(src, measure, idx, received))

    def row_fields(self, src, rx, outcome, snr_db):
        from simlink.phy.snr import ebno_db

        frame = src.tx.frame
        bits, uses = frame.num_bits, np.asarray(rx.channel_uses, dtype=np.int64)
        total_bits, total_uses = int(bits.sum()), int(uses.sum())
        bler, bler_ci = rate_ci(int(rx.num_block_errors), int(rx.num_blocks))
        per_part = {name: self._part_fields(src, name, rx.parts[name]) for name in frame.parts}
        shared = {k: _same([f[k] for f in per_part.values()]) for k in ("modulation", "code_k", "code_n", "code_rate")}
        row = {
            "bpp": float(np.mean(bits / src.pixels)),
            "cpp": float(np.mean(uses / src.pixels)),
            "ebno_db": float(ebno_db(snr_db, total_bits, total_uses)) if total_bits and total_uses else math.nan,
            **shared,
            "bler": bler,
            "bler_ci": bler_ci,
            "ber": rx.bit_errors / total_bits if total_bits else math.nan,
            "n_blocks": int(rx.num_blocks),
            "n_block_errors": int(rx.num_block_errors),
        }
        if list(frame.parts) != [DEFAULT_PART]:
            for name, fields in per_part.items():
                row.update({f"{k}_{name}": fields[k] for k in PART_COLUMNS})
        return row

    def _part_fields(self, src, name: str, r) -> dict:
        """The :data:`PART_COLUMNS` of part ``name`` (without the suffix)."""
        link = self.link.link_for(name).config  # resolved once per part, not per cell
        f = src.tx.frame.parts[name]
        bits = int(f.num_bits.sum())
        sends = f.blocks_per_image > 0  # images that send this part at all
        bler, bler_ci = rate_ci(int(r.num_block_errors), int(r.num_blocks))
        return {
            "bpp": float(np.mean(f.num_bits / src.pixels)),
            "cpp": float(np.mean(f.channel_uses / src.pixels)),
            "modulation": int(link.modulation),
            "code_k": int(link.code.k),
            "code_n": int(link.code.n),
            "code_rate": link.code.k / link.code.n,
            "bler": bler,
            "bler_ci": bler_ci,
            "ber": r.bit_errors / bits if bits else math.nan,
            "lost_frac": float(np.mean(~r.image_ok[sends])) if sends.any() else math.nan,
            "n_blocks": int(r.num_blocks),
            "n_block_errors": int(r.num_block_errors),
        }


def _same(values: list):
    """The common value of a link setting over the parts, NaN where the parts differ."""
    return values[0] if all(v == values[0] for v in values) else math.nan


def _complete(conceal: dict[str, np.ndarray], src: SourceSide, measure) -> dict[str, np.ndarray]:
    """Metrics of a concealed image for every column of ``src.clean``, for this method's receiver
    (:meth:`~simlink.metrics.measure.Measure.concealed`: a head scores a lost image as a failure)."""
    values = measure.concealed(conceal, src.outputs, src.num_images)
    unknown = [k for k in src.clean if k not in values]
    if unknown:
        raise SimlinkError(f"{src.method.name} {src.op.label}: no value for concealed images in columns {unknown}")
    return {k: values[k] for k in src.clean}


@register_payload_kind
class AnalogPath(PayloadPath):
    """Channel symbols through :class:`~simlink.phy.analog.AnalogLink`; every image is decoded."""

    kind = "analog"

    def __init__(self, scenario, device: str) -> None:
        from simlink.phy.analog import AnalogLink

        super().__init__(scenario, device)
        self.link = AnalogLink(device)

    def check_payload(self, method, op, payload, n):
        syms = getattr(payload, "symbols", None)
        if not isinstance(payload, AnalogPayload) or syms is None or syms.ndim != 3 or len(syms) != n:
            raise SimlinkError(f"{method.name} {op.label}: encode must return complex symbols [N, users, S] for the N images")

    def error_free(self, payload):
        """The symbols the link sends (each user's power normalised), without noise."""
        from simlink.phy.analog import unit_power

        return AnalogPayload(unit_power(payload.symbols), payload.meta)

    def prepare(self, src):
        return None

    def transmit(self, src, channel, snr_db, seed):
        """One :class:`~simlink.phy.analog.AnalogRx` per shape group (group 0 uses ``seed``, the
        others seeds derived from it)."""
        return [self.link.transmit(p.symbols, channel, snr_db, seed if g == 0 else derive_seed(seed, "group", g))
                for g, p in enumerate(src.payloads)]

    def outcome(self, src, rx, measure, conceal):
        import torch

        n = src.num_images

        def received(g, pos):
            y = rx[g].symbols
            if len(pos) == len(y) and np.array_equal(pos, np.arange(len(y))):
                return AnalogPayload(y)
            return AnalogPayload(y[torch.as_tensor(pos, device=y.device)])

        fresh, ok = decode_and_measure(src, measure, np.arange(n), received)
        concealed = ~ok
        metrics = {}
        conc = _complete(conceal, src, measure)
        for k in src.clean:
            metrics[k] = conc[k].copy()
            if k in fresh:
                metrics[k][ok] = fresh[k]
        return Outcome(metrics=metrics, lost=np.zeros(n, dtype=bool), concealed=concealed, decoded_again=n)

    def row_fields(self, src, rx, outcome, snr_db):
        uses = np.zeros(src.num_images, dtype=np.int64)
        for g, r in zip(src.groups, rx):
            uses[g.index] = r.channel_uses
        nan = math.nan
        return {"bpp": nan, "cpp": float(np.mean(uses / src.pixels)), "ebno_db": nan, "modulation": nan,
                "code_k": nan, "code_n": nan, "code_rate": nan, "bler": nan, "bler_ci": nan, "ber": nan,
                "n_blocks": 0, "n_block_errors": 0}
