"""Classic image codecs as digital methods: JPEG, JPEG 2000, WebP, AVIF and HEIF (HEVC intra).

Every method turns each ``uint8[H, W, 3]`` RGB image into one complete, standalone file
(container / codestream headers included), so ``8 * len(stream) / (H * W)`` is the honest
bits-per-pixel figure the sweep reports. Two ways of choosing the rate (exactly one per scenario
entry):

* ``quality: [..]`` — a ladder of codec quality settings, one operating point each;
* ``target_bpp: [..]`` — per image, the highest integer quality whose stream fits in the
  target (bisection over the codec's quality range, see :func:`search_quality`).

Decoding never raises on corrupted streams: each stream's header is checked first against the
expected image size (so a flipped size field cannot trigger a huge allocation or a
multi-second decode), the decoder's exceptions are caught per image, and a wrong output
shape / dtype also marks the image as failed.

Codec notes:

* ``jpeg``: libjpeg-turbo (imagecodecs ``jpeg8``), baseline with optimised Huffman tables.
* ``jpeg2000``: OpenJPEG, raw J2K codestream (no JP2 boxes), irreversible 9/7 wavelet, single
  tile. Its ``quality`` is OpenJPEG's fixed-quality target, the **target PSNR in dB**
  (1..100; above ~55 dB the stream no longer grows). The "Created by OpenJPEG" COM marker the
  library writes is stripped (a comment carries no image data; 39 bytes saved).
* ``webp``: libwebp lossy (VP8, always 4:2:0). imagecodecs' default is *lossless*; lossy is forced.
* ``avif``: libavif with AOM, 8 bit, 4:4:4 by default (100 = lossless).
* ``heif``: libheif + x265 (HEVC Main 4:4:4 intra, BPG-like) through pillow-heif; decoded with
  libde265. No NCLX colour box is written (libheif decodes with the same sRGB / BT.601
  full-range defaults either way; 20 bytes saved). libheif codes images smaller than 64 px
  per side padded to 64 (and odd sizes padded to even) and crops them back with a ``clap``
  box, so tiny images pay for the padding (cheap: edge replication) and ~40 header bytes.
"""

from __future__ import annotations

import io
import struct
from abc import abstractmethod
from typing import Annotated, ClassVar, Literal

import imagecodecs
import numpy as np
import pillow_heif
from pydantic import Field, field_validator, model_validator

from simlink.methods.base import DigitalPayload, ImageKeys, Method, MethodConfig, OperatingPoint, Reception, register_method

# ----------------------------------------------------------------------------------------------
# configuration


class ClassicConfig(MethodConfig):
    """Scenario entry of a classic codec: exactly one of ``quality`` or ``target_bpp``.

    Attributes:
        quality: ladder of integer codec quality settings (range depends on the codec, see
            ``quality_range``); one operating point each.
        target_bpp: ladder of bits-per-pixel targets (> 0); one operating point each.
    """

    quality_range: ClassVar[tuple[int, int]] = (1, 100)

    quality: list[int] | None = Field(default=None, min_length=1)
    target_bpp: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = Field(default=None, min_length=1)

    @field_validator("quality")
    @classmethod
    def _quality_in_range(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        lo, hi = cls.quality_range
        bad = [q for q in v if not lo <= q <= hi]
        if bad:
            raise ValueError(f"quality values must be integers in {lo}..{hi} for this codec; got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"quality values must be distinct; got {v}")
        return v

    @field_validator("target_bpp")
    @classmethod
    def _bpp_distinct(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"target_bpp values must be distinct; got {v}")
        return v

    @model_validator(mode="after")
    def _exactly_one_knob(self) -> ClassicConfig:
        if (self.quality is None) == (self.target_bpp is None):
            given = "both" if self.quality is not None else "neither"
            raise ValueError(
                f"give exactly one of 'quality' (a list of codec quality settings) or "
                f"'target_bpp' (a list of bits-per-pixel targets); {given} given"
            )
        return self


# ----------------------------------------------------------------------------------------------
# target-bpp search (shared by all codecs)


def _bpp(stream: bytes, h: int, w: int) -> float:
    return 8.0 * len(stream) / (h * w)


def search_quality(encode_one, img: np.ndarray, target_bpp: float, q_range: tuple[int, int]) -> tuple[int, bytes, bool]:
    """Highest integer quality whose stream fits in ``target_bpp``.

    Bisection over ``q_range`` assuming the stream size grows with quality. The invariant is
    kept on actually encoded streams, so the result is always verified: the returned stream
    has ``bpp <= target_bpp`` and (unless it is the top of the range) quality ``q + 1`` was
    encoded and exceeded the target.

    Args:
        encode_one: ``(img uint8[H, W, 3], quality int) -> bytes``.
        img: one ``uint8[H, W, 3]`` image.
        target_bpp: bits per pixel, > 0.
        q_range: inclusive ``(lowest, highest)`` quality.

    Returns:
        ``(quality, stream, met)``; ``met`` is False when even the lowest quality exceeds the
        target (that lowest-quality stream is then returned).
    """
    h, w = img.shape[:2]
    lo, hi = q_range
    s_lo = encode_one(img, lo)
    if _bpp(s_lo, h, w) > target_bpp:
        return lo, s_lo, False
    s_hi = encode_one(img, hi)
    if _bpp(s_hi, h, w) <= target_bpp:
        return hi, s_hi, True
    # invariant: quality lo fits (stream s_lo), quality hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        s_mid = encode_one(img, mid)
        if _bpp(s_mid, h, w) <= target_bpp:
            lo, s_lo = mid, s_mid
        else:
            hi = mid
    return lo, s_lo, True


# ----------------------------------------------------------------------------------------------
# header probes: declared image size, read without decoding


def _u16be(b: bytes, i: int) -> int:
    return struct.unpack_from(">H", b, i)[0]


def _u32be(b: bytes, i: int) -> int:
    return struct.unpack_from(">I", b, i)[0]


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_declared_size(b: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from a JPEG's SOF segment, or None if the marker chain is broken."""
    if b[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers
            i += 2
            continue
        if marker in _JPEG_SOF:
            if i + 9 > len(b):
                return None
            return _u16be(b, i + 5), _u16be(b, i + 7)
        if marker in (0xDA, 0xD9):  # scan / end before any frame header
            return None
        i += 2 + _u16be(b, i + 2)
    return None


def j2k_declared_size(b: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from a J2K codestream's SIZ segment, or None unless it declares a
    single-tile, 3-component, zero-offset image (what :class:`JPEG2000` writes)."""
    if len(b) < 42 or b[:4] != b"\xff\x4f\xff\x51":
        return None
    x, y, x0, y0, xt, yt, xt0, yt0 = struct.unpack_from(">8I", b, 8)
    if x0 or y0 or xt0 or yt0 or xt < x or yt < y or _u16be(b, 40) != 3:
        return None
    return y, x


def webp_declared_size(b: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from a simple lossy WebP file's VP8 frame header, or None."""
    if len(b) < 30 or b[:4] != b"RIFF" or b[8:16] != b"WEBPVP8 " or b[23:26] != b"\x9d\x01\x2a":
        return None
    w, h = struct.unpack_from("<HH", b, 26)
    return h & 0x3FFF, w & 0x3FFF


def isobmff_declared_size(b: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from the first ``ispe`` box of an AVIF file, or None.

    (Not for HEIF: libheif codes small images padded to 64 px and crops with a ``clap`` box,
    so ``ispe`` there is the padded size; see :func:`heif_declared_size`.)"""
    i = b.find(b"ispe")
    if i < 4 or i + 16 > len(b):
        return None
    return _u32be(b, i + 12), _u32be(b, i + 8)


def heif_declared_size(b: bytes) -> tuple[int, int] | None:
    """``(height, width)`` of a HEIF file's primary image after cropping, read by libheif
    without decoding (libheif applies its security limits while parsing). Raises on a broken
    container (callers guard it)."""
    heif = pillow_heif.open_heif(io.BytesIO(b), convert_hdr_to_8bit=True)
    w, h = heif.size
    return h, w


# ----------------------------------------------------------------------------------------------
# the shared method


class ClassicCodec(Method):
    """A classic image codec: one standalone file per image, quality ladder or target bpp.

    Subclasses set ``name``, ``description``, ``Config`` (a :class:`ClassicConfig` with its
    ``quality_range`` and codec options) and implement :meth:`_encode_one`,
    :meth:`_decode_one` and :meth:`_declared_size`.
    """

    kind = "digital"
    Config: ClassVar[type[ClassicConfig]] = ClassicConfig
    config: ClassicConfig

    @property
    def quality_range(self) -> tuple[int, int]:
        """Inclusive ``(lowest, highest)`` integer quality of this codec."""
        return self.Config.quality_range

    # ---- per-codec hooks ----

    @abstractmethod
    def _encode_one(self, img: np.ndarray, quality: int) -> bytes:
        """Encode one ``uint8[H, W, 3]`` image at integer ``quality`` into a complete file."""

    @abstractmethod
    def _decode_one(self, stream: bytes) -> np.ndarray:
        """Decode one stream into an array (expected ``uint8[H, W, 3]``); may raise on corrupt data."""

    @staticmethod
    @abstractmethod
    def _declared_size(stream: bytes) -> tuple[int, int] | None:
        """``(height, width)`` the stream's header declares, read without decoding; None if the
        header is unreadable or not of the form this codec writes (may also raise then)."""

    # ---- Method API ----

    def operating_points(self) -> list[OperatingPoint]:
        """One point per ladder entry, ascending: ``q=50`` ``{"quality": 50}`` or
        ``bpp=0.50`` ``{"target_bpp": 0.5}``."""
        if self.config.quality is not None:
            return [OperatingPoint(f"q={q}", {"quality": q}) for q in sorted(self.config.quality)]
        return [OperatingPoint(f"bpp={_fmt_bpp(t)}", {"target_bpp": t}) for t in sorted(self.config.target_bpp)]

    def encode(self, images: np.ndarray, op: OperatingPoint, keys: ImageKeys | None = None) -> DigitalPayload:
        """Encode ``uint8[N, H, W, 3]`` images at ``op`` (``keys`` unused: deterministic).

        Returns:
            :class:`DigitalPayload` with one standalone file per image; ``meta["quality"]`` is the
            ``list[int]`` of qualities used per image, and in target-bpp mode
            ``meta["target_met"]`` is a ``list[bool]`` (False where even the lowest quality
            exceeded the target and the lowest quality was used).
        """
        images = _check_images(images)
        streams: list[bytes] = []
        qualities: list[int] = []
        if "quality" in op.params:
            q = int(op.params["quality"])
            for img in images:
                streams.append(self._encode_one(img, q))
                qualities.append(q)
            return DigitalPayload(streams=streams, meta={"quality": qualities})
        target = float(op.params["target_bpp"])
        met: list[bool] = []
        for img in images:
            q, s, ok = search_quality(self._encode_one, img, target, self.quality_range)
            streams.append(s)
            qualities.append(q)
            met.append(ok)
        return DigitalPayload(streams=streams, meta={"quality": qualities, "target_met": met})

    def decode(self, payload: DigitalPayload, op: OperatingPoint, image_shape: tuple[int, int, int],
               keys: ImageKeys | None = None) -> Reception:
        """Decode each (possibly corrupted) stream; never raises because of stream contents.

        Args:
            payload: the received streams.
            op: the operating point (unused: every stream is self-describing).
            image_shape: ``(H, W, 3)`` of the original images.
            keys: unused (deterministic decoder).

        Returns:
            :class:`Reception` with ``images uint8[N, H, W, 3]`` and ``ok bool[N]``. ``ok[i]`` is
            False when the header of stream ``i`` does not declare an ``H x W`` image, the decoder
            raised, or it returned anything but ``uint8[H, W, 3]``; ``images[i]`` is then zeros.
        """
        h, w, c = (int(v) for v in image_shape)
        if c != 3:
            raise ValueError(f"image_shape must be (H, W, 3); got {tuple(image_shape)}")
        n = len(payload.streams)
        out = np.zeros((n, h, w, 3), dtype=np.uint8)
        ok = np.zeros(n, dtype=bool)
        for i, stream in enumerate(payload.streams):
            img = self._safe_decode(bytes(stream), h, w)
            if img is not None:
                out[i] = img
                ok[i] = True
        return Reception(out, ok)

    def _safe_decode(self, stream: bytes, h: int, w: int) -> np.ndarray | None:
        try:
            if self._declared_size(stream) != (h, w):
                return None
            img = self._decode_one(stream)
        except Exception:  # noqa: BLE001 - any decoder failure on corrupt data means "no image"
            return None
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.shape != (h, w, 3):
            return None
        return img


def _fmt_bpp(t: float) -> str:
    return f"{t:.2f}" if round(t, 2) == t else f"{t:g}"


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8[N, H, W, 3]; got {images.dtype}{list(images.shape)}")
    return np.ascontiguousarray(images)


# ----------------------------------------------------------------------------------------------
# the codecs


@register_method
class JPEG(ClassicCodec):
    """JPEG (libjpeg-turbo), baseline, optimised Huffman tables."""

    name = "jpeg"
    description = "JPEG (libjpeg-turbo), quality 1..100, 4:2:0 or 4:4:4 chroma"

    class Config(ClassicConfig):
        """``subsampling``: chroma ``"420"`` (default) or ``"444"``; ``optimize``: optimised Huffman tables."""

        quality_range: ClassVar[tuple[int, int]] = (1, 100)
        subsampling: Literal["420", "444"] = "420"
        optimize: bool = True

    def _encode_one(self, img: np.ndarray, quality: int) -> bytes:
        return bytes(imagecodecs.jpeg8_encode(img, quality, subsampling=self.config.subsampling, optimize=self.config.optimize))

    def _decode_one(self, stream: bytes) -> np.ndarray:
        return imagecodecs.jpeg8_decode(stream)

    _declared_size = staticmethod(jpeg_declared_size)


def _strip_j2k_comments(cs: bytes) -> bytes:
    """Remove COM (0xFF64) segments from a J2K main header; the codestream stays valid."""
    out = bytearray(cs[:2])
    i = 2
    while i + 4 <= len(cs):
        marker = _u16be(cs, i)
        if marker == 0xFF90:  # SOT: end of main header
            break
        seg_end = i + 2 + _u16be(cs, i + 2)
        if marker != 0xFF64:
            out += cs[i:seg_end]
        i = seg_end
    out += cs[i:]
    return bytes(out)


@register_method
class JPEG2000(ClassicCodec):
    """JPEG 2000 (OpenJPEG), raw J2K codestream; quality = target PSNR in dB."""

    name = "jpeg2000"
    description = "JPEG 2000 (OpenJPEG) J2K codestream, quality = target PSNR in dB (1..100)"

    class Config(ClassicConfig):
        """``quality`` here is OpenJPEG's fixed-quality target PSNR in dB, 1..100."""

        quality_range: ClassVar[tuple[int, int]] = (1, 100)

    def _encode_one(self, img: np.ndarray, quality: int) -> bytes:
        cs = imagecodecs.jpeg2k_encode(img, quality, codecformat="J2K", reversible=False)
        return _strip_j2k_comments(bytes(cs))

    def _decode_one(self, stream: bytes) -> np.ndarray:
        return imagecodecs.jpeg2k_decode(stream)

    _declared_size = staticmethod(j2k_declared_size)


@register_method
class WebP(ClassicCodec):
    """WebP lossy (libwebp, VP8 intra, 4:2:0)."""

    name = "webp"
    description = "WebP lossy (libwebp), quality 0..100"

    class Config(ClassicConfig):
        """``method``: libwebp effort 0 (fast) .. 6 (best), default 4."""

        quality_range: ClassVar[tuple[int, int]] = (0, 100)
        method: int = Field(default=4, ge=0, le=6)

    def _encode_one(self, img: np.ndarray, quality: int) -> bytes:
        return bytes(imagecodecs.webp_encode(img, quality, lossless=False, method=self.config.method))

    def _decode_one(self, stream: bytes) -> np.ndarray:
        return imagecodecs.webp_decode(stream)

    _declared_size = staticmethod(webp_declared_size)


@register_method
class AVIF(ClassicCodec):
    """AVIF (libavif + AOM AV1 intra), 8 bit."""

    name = "avif"
    description = "AVIF (libavif/AOM), quality 0..100 (100 lossless), 4:4:4 or 4:2:0"

    class Config(ClassicConfig):
        """``pixelformat``: ``"444"`` (default) or ``"420"``; ``speed``: 0 (slowest) .. 10 (fastest), default 6."""

        quality_range: ClassVar[tuple[int, int]] = (0, 100)
        pixelformat: Literal["444", "420"] = "444"
        speed: int = Field(default=6, ge=0, le=10)

    def _encode_one(self, img: np.ndarray, quality: int) -> bytes:
        return bytes(imagecodecs.avif_encode(img, quality, pixelformat=self.config.pixelformat, speed=self.config.speed))

    def _decode_one(self, stream: bytes) -> np.ndarray:
        return imagecodecs.avif_decode(stream)

    _declared_size = staticmethod(isobmff_declared_size)


@register_method
class HEIF(ClassicCodec):
    """HEIF with HEVC intra (x265 encoder, libde265 decoder) through pillow-heif."""

    name = "heif"
    description = "HEIF / HEVC intra (x265, BPG-like), quality 0..100, 4:4:4 or 4:2:0"

    class Config(ClassicConfig):
        """``chroma``: ``"444"`` (default, like BPG) or ``"420"``."""

        quality_range: ClassVar[tuple[int, int]] = (0, 100)
        chroma: Literal["444", "420"] = "444"

    def _encode_one(self, img: np.ndarray, quality: int) -> bytes:
        h, w = img.shape[:2]
        heif = pillow_heif.from_bytes("RGB", (w, h), np.ascontiguousarray(img).tobytes())
        buf = io.BytesIO()
        heif.save(buf, quality=quality, chroma=int(self.config.chroma), save_nclx_profile=False)
        return buf.getvalue()

    def _decode_one(self, stream: bytes) -> np.ndarray:
        heif = pillow_heif.open_heif(io.BytesIO(stream), convert_hdr_to_8bit=True)
        return np.asarray(heif[heif.primary_index])

    _declared_size = staticmethod(heif_declared_size)
