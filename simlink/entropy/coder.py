"""Real entropy coding of integer symbols with constriction's range coder.

Every ``encode_*`` returns ``bytes`` (the range coder's uint32 words, little-endian, trailing zero
bytes dropped: the decoder pads them back); the
matching ``decode_*`` takes those bytes and the *same* model parameters and returns the
exact symbols as int32. Streams are FIFO (``constriction.stream.queue``).

Finite supports (decoder and encoder derive them identically from the parameters alone):

* Gaussian: one support ``[lo, hi]`` for the whole call,
  ``lo = floor(min(means - tail_sigmas * scales))``, ``hi = ceil(max(means + tail_sigmas * scales))``
  (scales first lower-bounded by SCALE_BOUND = 0.11, as in the likelihood layers). The model
  is constriction's ``QuantizedGaussian`` (Gaussian truncated to the support, renormalised).
* Mixture: a per-element support starting at ``floor(min_m(mu_m - tail_sigmas * s_m))``, of
  common width ``W <= max_width``; element PMFs are mixture-CDF differences with the tail
  mass folded into the two edge bins; coded with a per-element ``Categorical``.
* Factorized: per-channel tables from :meth:`FactorizedPrior.pmf_tables`.

Symbols outside the support are clamped into it before coding, so decoding then returns the
clamped symbols (with the default tails this only concerns symbols the model deems
essentially impossible).

A corrupted or truncated stream never hangs (the symbol count is fixed by the parameters):
either constriction rejects it, which is re-raised as :class:`simlink.errors.DecodeError`,
or it decodes to in-support symbols of the right count that may be wrong.
"""

from __future__ import annotations

import numpy as np
import constriction
from scipy.special import ndtr

from simlink.entropy.conditional import SCALE_BOUND
from simlink.entropy.factorized import PmfTables
from simlink.errors import DecodeError

TAIL_SIGMAS = 16.0
MAX_MIXTURE_WIDTH = 2048
_CHUNK_ELEMENTS = 4096

_model = constriction.stream.model
_queue = constriction.stream.queue


def _to_bytes(words: np.ndarray) -> bytes:
    return np.ascontiguousarray(words, dtype="<u4").tobytes()


def _from_bytes(data: bytes) -> np.ndarray:
    data = bytes(data)
    if len(data) % 4:
        data = data + b"\x00" * (4 - len(data) % 4)
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def _as_params(x, n: int | None = None, name: str = "param") -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows, expected {n}")
    return arr


def _symbols(symbols) -> np.ndarray:
    arr = np.asarray(symbols)
    if arr.ndim != 1:
        raise ValueError(f"symbols must be 1-D, got shape {arr.shape}")
    return arr.astype(np.int64)


# ----------------------------------------------------------------------------- one stream, several parts


class SymbolWriter:
    """Codes several groups of symbols (e.g. a hyper-latent, then a latent) into ONE range-coded
    stream, so a learned codec's per-image bitstream pays the coder's flush overhead once.

    >>> w = SymbolWriter(); w.factorized(z, tables); w.mixture(y, weights, means, scales)
    >>> data = w.to_bytes()
    >>> r = SymbolReader(data); z = r.factorized(tables, z.shape); y = r.mixture(weights, means, scales)

    Each method takes the same arguments as the matching ``encode_*`` function (without the
    stream) and the reader's methods must be called in the same order with the same parameters.
    """

    def __init__(self) -> None:
        self._enc = _queue.RangeEncoder()

    def gaussian(self, symbols, means, scales) -> None:
        """Append int symbols [N] under discretised N(means, scales^2) (see :func:`encode_gaussian`)."""
        _put_gaussian(self._enc, symbols, means, scales)

    def mixture(self, symbols, weights, means, scales) -> None:
        """Append int symbols [N] under discretised mixtures (see :func:`encode_mixture`)."""
        _put_mixture(self._enc, symbols, weights, means, scales)

    def factorized(self, symbols, tables: PmfTables) -> None:
        """Append int symbols [B, C, H, W] under per-channel tables (see :func:`encode_factorized`)."""
        _put_factorized(self._enc, symbols, tables)

    def to_bytes(self) -> bytes:
        """The stream so far, trailing zero bytes removed (the reader pads them back)."""
        return _to_bytes(self._enc.get_compressed()).rstrip(b"\x00")


class SymbolReader:
    """Reads what a :class:`SymbolWriter` wrote, part by part, in the same order.

    Each method raises :class:`simlink.errors.DecodeError` when constriction rejects the data;
    a corrupted stream otherwise decodes to in-support symbols (possibly wrong), never hangs.
    """

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        try:
            self._dec = _queue.RangeDecoder(_from_bytes(self._data))
        except Exception as exc:
            raise DecodeError(f"entropy decoding failed (corrupted or truncated stream): {exc}") from exc

    def _run(self, fn):
        try:
            return fn(self._dec)
        except DecodeError:
            raise
        except Exception as exc:  # constriction raises AssertionError/ValueError/... on bad data
            raise DecodeError(f"entropy decoding failed (corrupted or truncated stream): {exc}") from exc

    def gaussian(self, means, scales) -> np.ndarray:
        """int32 [N] symbols, N = len(means)."""
        return _get_gaussian(self, means, scales)

    def mixture(self, weights, means, scales) -> np.ndarray:
        """int32 [N] symbols, N = len(weights)."""
        return _get_mixture(self, weights, means, scales)

    def factorized(self, tables: PmfTables, shape: tuple[int, int, int, int]) -> np.ndarray:
        """int32 symbols of ``shape`` [B, C, H, W]."""
        return _get_factorized(self, tables, shape)


# ----------------------------------------------------------------------------- Gaussian


def gaussian_support(means, scales, tail_sigmas: float = TAIL_SIGMAS) -> tuple[int, int]:
    """Inclusive integer support ``(lo, hi)`` used by the Gaussian coder (module docstring)."""
    means = _as_params(means, name="means").ravel()
    scales = np.maximum(_as_params(scales, name="scales").ravel(), SCALE_BOUND)
    if means.size == 0:
        return 0, 0
    lo = int(np.floor(np.min(means - tail_sigmas * scales)))
    hi = int(np.ceil(np.max(means + tail_sigmas * scales)))
    return lo, hi


def _put_gaussian(enc, symbols, means, scales) -> None:
    sym = _symbols(symbols)
    n = sym.size
    means = _as_params(means, n, "means").ravel()
    scales = np.maximum(_as_params(scales, n, "scales").ravel(), SCALE_BOUND)
    if n:
        lo, hi = gaussian_support(means, scales)
        enc.encode(np.clip(sym, lo, hi).astype(np.int32), _model.QuantizedGaussian(lo, hi), means, scales)


def _get_gaussian(reader: "SymbolReader", means, scales) -> np.ndarray:
    means = _as_params(means, name="means").ravel()
    scales = np.maximum(_as_params(scales, means.size, "scales").ravel(), SCALE_BOUND)
    if means.size == 0:
        return np.zeros(0, dtype=np.int32)
    lo, hi = gaussian_support(means, scales)
    out = reader._run(lambda d: d.decode(_model.QuantizedGaussian(lo, hi), means, scales))
    return np.asarray(out, dtype=np.int32)


def encode_gaussian(symbols, means, scales) -> bytes:
    """Code int symbols [N] under N(means[i], scales[i]^2) discretised to the integers.

    means, scales: float [N] (scales in symbol units, lower-bounded by 0.11).
    Returns the compressed bytes.
    """
    w = SymbolWriter()
    w.gaussian(symbols, means, scales)
    return w.to_bytes()


def decode_gaussian(data: bytes, means, scales) -> np.ndarray:
    """Inverse of :func:`encode_gaussian`; returns int32 [N] with N = len(means)."""
    if np.asarray(means).size == 0:
        return np.zeros(0, dtype=np.int32)
    return SymbolReader(data).gaussian(means, scales)


# ----------------------------------------------------------------------------- mixture


def _mixture_params(weights, means, scales, n: int | None):
    weights = _as_params(weights, n, "weights")
    n = weights.shape[0]
    means = _as_params(means, n, "means")
    scales = np.maximum(_as_params(scales, n, "scales"), SCALE_BOUND)
    if weights.ndim != 2 or means.shape != weights.shape or scales.shape != weights.shape:
        raise ValueError("weights, means and scales must all be [N, M]")
    if np.any(weights < 0):
        raise ValueError("mixture weights must be non-negative (pass softmax(logits))")
    weights = weights / weights.sum(axis=1, keepdims=True)
    return weights, means, scales


def mixture_support(means, scales, tail_sigmas: float = TAIL_SIGMAS,
                    max_width: int = MAX_MIXTURE_WIDTH) -> tuple[np.ndarray, int]:
    """Per-element support start (int64 [N]) and common width W for the mixture coder."""
    means = _as_params(means, name="means")
    scales = np.maximum(_as_params(scales, name="scales"), SCALE_BOUND)
    lo = np.floor(np.min(means - tail_sigmas * scales, axis=1)).astype(np.int64)
    hi = np.ceil(np.max(means + tail_sigmas * scales, axis=1)).astype(np.int64)
    width = int(min(max(int(np.max(hi - lo + 1)) if lo.size else 1, 1), max_width))
    return lo, width


def mixture_pmfs(offsets: np.ndarray, width: int, weights: np.ndarray, means: np.ndarray,
                 scales: np.ndarray) -> np.ndarray:
    """PMF rows float64 [N, width] for symbols offsets[i] + k; edge bins hold the tails."""
    k = np.arange(width, dtype=np.float64)
    sym = offsets[:, None].astype(np.float64) + k[None, :]  # [N, W]
    mu = means[:, None, :]
    s = scales[:, None, :]
    w = weights[:, None, :]
    c_hi = (w * ndtr((sym[:, :, None] + 0.5 - mu) / s)).sum(axis=2)
    c_lo = (w * ndtr((sym[:, :, None] - 0.5 - mu) / s)).sum(axis=2)
    c_lo[:, 0] = 0.0
    c_hi[:, -1] = 1.0
    pmf = np.clip(c_hi - c_lo, 0.0, None)
    return pmf / pmf.sum(axis=1, keepdims=True)


def _put_mixture(enc, symbols, weights, means, scales) -> None:
    sym = _symbols(symbols)
    weights, means, scales = _mixture_params(weights, means, scales, sym.size)
    offsets, width = mixture_support(means, scales)
    family = _model.Categorical(perfect=False)
    for start in range(0, sym.size, _CHUNK_ELEMENTS):
        sl = slice(start, start + _CHUNK_ELEMENTS)
        pmf = mixture_pmfs(offsets[sl], width, weights[sl], means[sl], scales[sl])
        idx = np.clip(sym[sl] - offsets[sl], 0, width - 1).astype(np.int32)
        enc.encode(idx, family, pmf)


def _get_mixture(reader: "SymbolReader", weights, means, scales) -> np.ndarray:
    weights, means, scales = _mixture_params(weights, means, scales, None)
    offsets, width = mixture_support(means, scales)
    if offsets.size == 0:
        return np.zeros(0, dtype=np.int32)
    family = _model.Categorical(perfect=False)

    def run(decoder):
        out = np.empty(offsets.size, dtype=np.int64)
        for start in range(0, offsets.size, _CHUNK_ELEMENTS):
            sl = slice(start, start + _CHUNK_ELEMENTS)
            pmf = mixture_pmfs(offsets[sl], width, weights[sl], means[sl], scales[sl])
            out[sl] = np.asarray(decoder.decode(family, pmf), dtype=np.int64) + offsets[sl]
        return out

    return reader._run(run).astype(np.int32)


def encode_mixture(symbols, weights, means, scales) -> bytes:
    """Code int symbols [N] under discretised Gaussian mixtures.

    weights: float [N, M] non-negative mixture weights (e.g. softmax of logits; rows are
    renormalised); means, scales: float [N, M]. Returns the compressed bytes.
    """
    w = SymbolWriter()
    w.mixture(symbols, weights, means, scales)
    return w.to_bytes()


def decode_mixture(data: bytes, weights, means, scales) -> np.ndarray:
    """Inverse of :func:`encode_mixture`; returns int32 [N]."""
    if np.asarray(weights).size == 0:
        return np.zeros(0, dtype=np.int32)
    return SymbolReader(data).mixture(weights, means, scales)


# ----------------------------------------------------------------------------- factorized


def _check_tables(tables: PmfTables, channels: int) -> None:
    if tables.offsets.shape[0] != channels:
        raise ValueError(f"tables have {tables.offsets.shape[0]} channels, symbols have {channels}")


def _put_factorized(enc, symbols, tables: PmfTables) -> None:
    sym = np.asarray(symbols)
    if sym.ndim != 4:
        raise ValueError(f"symbols must be [B, C, H, W], got shape {sym.shape}")
    _check_tables(tables, sym.shape[1])
    per_channel = np.moveaxis(sym, 1, 0).reshape(sym.shape[1], -1).astype(np.int64)
    for c in range(sym.shape[1]):
        length = int(tables.lengths[c])
        model = _model.Categorical(tables.pmfs[c, :length], perfect=False)
        idx = np.clip(per_channel[c] - tables.offsets[c], 0, length - 1).astype(np.int32)
        if idx.size:
            enc.encode(idx, model)


def _get_factorized(reader: "SymbolReader", tables: PmfTables, shape) -> np.ndarray:
    b, c, h, w = (int(s) for s in shape)
    _check_tables(tables, c)
    n = b * h * w

    def run(decoder):
        out = np.zeros((c, n), dtype=np.int64)
        for ch in range(c):
            length = int(tables.lengths[ch])
            model = _model.Categorical(tables.pmfs[ch, :length], perfect=False)
            if n:
                out[ch] = np.asarray(decoder.decode(model, n), dtype=np.int64) + tables.offsets[ch]
        return out

    out = reader._run(run)
    return np.moveaxis(out.reshape(c, b, h, w), 0, 1).astype(np.int32)


def encode_factorized(symbols, tables: PmfTables) -> bytes:
    """Code int symbols [B, C, H, W] with per-channel tables (channel-major order).

    Symbols outside channel c's support are clamped into it (decoding returns the clamped
    values). Returns the compressed bytes.
    """
    w = SymbolWriter()
    w.factorized(symbols, tables)
    return w.to_bytes()


def decode_factorized(data: bytes, tables: PmfTables, shape: tuple[int, int, int, int]) -> np.ndarray:
    """Inverse of :func:`encode_factorized`; returns int32 symbols of ``shape`` [B, C, H, W]."""
    return SymbolReader(data).factorized(tables, shape)
