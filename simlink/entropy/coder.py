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
* Mixture (the learned codecs' latents), built vectorised for all elements (and, through
  :func:`mixture_models`, for several images) in one pass:

  1. every component is snapped to a grid: scale to the nearest of ``0.11 * 2**(q/24)``
     (q < 289, up to ~450; larger scales take the top level), mean to a multiple of ``1/F_q``
     (F_q a power of two ~ 32 / s_q, at most 256);
  2. each element codes the symbols ``lo .. lo + row - 3`` directly, where ``[lo, hi]`` is the
     union of its components' ``floor(mean) +- ceil(5 s_q)`` and ``row`` the smallest
     ``ROW_LADDER`` length >= hi - lo + 3 (at most MAX_ROW, then a window around the heaviest
     component); two more bins are escapes (mass below / above) for every other int32 symbol,
     whose excess is then coded Elias-gamma style (bit length, then the bits): decoding is exact;
  3. the row's probabilities are mixture-CDF differences read from one table of Gaussian CDFs
     on the grid, and elements are coded in groups of equal row length with a batched
     ``Categorical(perfect=False)``.

  Why encoder and decoder get identical integer CDFs whatever the device: the parameters are
  the float64 CPU values of :meth:`TrainedCodec.params` (never GPU values); snapping uses only
  exact operations (comparisons with fixed decimal cell edges — the compiled path first looks up
  a lower bound of the cell from the scale's float64 bits, then compares —, a multiply by a
  power of two, round-half-even, integer shifts), so equal values give equal grid indices whatever their
  dtype (float32 is widened exactly) or memory layout; the CDF table is a pure function of the
  grid, computed once per process on the CPU in float64 with scipy's scalar ``ndtr``; a row is
  a fixed sequence of IEEE multiplies/adds/subtractions (components summed in index order, no
  layout-dependent reductions) evaluated by the same code with or without numba (no fast-math;
  a test checks both paths bit for bit); an element's row depends only on its own parameters,
  so batching never changes it; constriction then quantises the float64 rows
  deterministically. What remains assumed is the same scipy ``ndtr`` bits on both ends
  (:meth:`_CdfTable.digest` fingerprints the table).
* Factorized: per-channel tables from :meth:`FactorizedPrior.pmf_tables`.

Gaussian and factorized models: symbols outside the support are clamped into it before coding,
so decoding then returns the clamped symbols (with the default tails this only concerns symbols
the model deems essentially impossible). The mixture model codes every int32 symbol exactly
(escape bins, above).

A corrupted or truncated stream never hangs (the symbol count is fixed by the parameters):
either constriction rejects it, which is re-raised as :class:`simlink.errors.DecodeError`,
or it decodes to in-support symbols of the right count that may be wrong.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import constriction
from scipy.special import ndtr

from simlink.entropy.conditional import SCALE_BOUND
from simlink.entropy.factorized import PmfTables
from simlink.errors import DecodeError
from simlink.numba_setup import import_numba

TAIL_SIGMAS = 16.0

numba = import_numba()  # compiles the model-building kernels; None: the numpy paths (same bits)
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
        _put_mixture_model(self._enc, symbols, mixture_model(weights, means, scales))

    def mixture_model(self, symbols, model: "MixtureModel") -> None:
        """Append int symbols [N] under a prepared :class:`MixtureModel` (e.g. one of a batch
        built by :func:`mixture_models`); same bits as :meth:`mixture` with its parameters."""
        _put_mixture_model(self._enc, symbols, model)

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
        return _get_mixture_model(self, mixture_model(weights, means, scales))

    def mixture_model(self, model: "MixtureModel") -> np.ndarray:
        """int32 [N] symbols under a prepared :class:`MixtureModel`."""
        return _get_mixture_model(self, model)

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
    total = np.zeros(n)
    for m in range(weights.shape[1]):  # a fixed summation order (np.sum's pairwise order depends on layout)
        total = total + weights[:, m]
    if np.any(total <= 0):
        raise ValueError("every mixture needs a positive weight")
    return weights / total[:, None], means, scales



#: Scale grid: ``SCALE_BOUND * 2**(q / SCALE_STEPS_PER_OCTAVE)`` for q = 0 .. SCALE_LEVELS-1.
SCALE_STEPS_PER_OCTAVE = 24
SCALE_LEVELS = 12 * SCALE_STEPS_PER_OCTAVE + 1  # up to 0.11 * 2**12 ~ 450.6
#: Means are snapped to multiples of 1/F_q, F_q the power of two nearest MEAN_STEPS_PER_SCALE / s_q
#: (between 1 and MAX_MEAN_STEPS): a mean error of at most s_q / (2 MEAN_STEPS_PER_SCALE).
MEAN_STEPS_PER_SCALE = 32
MAX_MEAN_STEPS = 256
#: Component support: the mean's integer part +- ceil(MIXTURE_TAIL_SIGMAS * s_q) (+1 above).
MIXTURE_TAIL_SIGMAS = 5.0
MEAN_BOUND = 2.0**30
_ESC_CLASSES = 41
#: Longest coded row: an element whose components lie further apart gets a window of this many
#: bins around its heaviest component (the others' mass then sits in the escapes).
MAX_ROW = 2**14  # bit lengths 0..40 of an escape's excess


#: The scale-index lookup keys on a double's exponent and top 7 mantissa bits (2^(1/128) cells,
#: finer than the grid's 2^(1/24)).
Q_KEY_SHIFT = 45


def _decimal(x: float) -> float:
    """x rounded to 12 significant digits: grid constants that do not depend on libm's last ulp."""
    return float(f"{x:.12g}")


class _CdfTable:
    """Gaussian CDFs on the parameter grid, computed once per process (float64, CPU, scipy ndtr).

    Row (q, f) holds ``ndtr((r - 1/2 - f / F_q) / s_q)`` for r = -R_q .. R_q + 2: the CDF at
    the bin edges of the symbols ``base + r`` of a Gaussian with mean ``base + f / F_q`` and
    scale ``s_q`` (R_q = ceil(MIXTURE_TAIL_SIGMAS * s_q)).
    """

    def __init__(self) -> None:
        octave = [_decimal(2.0 ** (r / SCALE_STEPS_PER_OCTAVE)) for r in range(SCALE_STEPS_PER_OCTAVE)]
        half = _decimal(2.0 ** (0.5 / SCALE_STEPS_PER_OCTAVE))
        q = np.arange(SCALE_LEVELS)
        self.scales = np.array([_decimal(SCALE_BOUND * math.ldexp(octave[i % SCALE_STEPS_PER_OCTAVE],
                                                                   int(i) // SCALE_STEPS_PER_OCTAVE)) for i in q])
        #: upper edges of the scale cells (geometric midpoints): s -> q by comparisons only
        self.edges = np.array([_decimal(s * half) for s in self.scales[:-1]])
        # scale -> q in O(1): q_guess[(bits of s >> Q_KEY_SHIFT) - q_key0] = the number of edges
        # below the smallest double of that key, a lower bound that exact comparisons then raise
        self.q_key0 = int(np.array([SCALE_BOUND]).view(np.int64)[0] >> Q_KEY_SHIFT)
        top = int(np.array([self.edges[-1]]).view(np.int64)[0] >> Q_KEY_SHIFT) + 1
        keys = np.arange(self.q_key0, top + 1, dtype=np.int64) << Q_KEY_SHIFT
        self.q_guess = np.searchsorted(self.edges, keys.view(np.float64), side="left").astype(np.int64)
        steps = np.array([min(MAX_MEAN_STEPS, max(1, 2 ** round(math.log2(MEAN_STEPS_PER_SCALE / s))))
                          for s in self.scales], dtype=np.int64)
        self.shift = np.array([int(s).bit_length() - 1 for s in steps], dtype=np.int64)
        self.steps = steps.astype(np.float64)  # F_q: powers of two, so mean * F_q is exact
        self.half_width = np.ceil(MIXTURE_TAIL_SIGMAS * self.scales).astype(np.int64)
        self.row_len = 2 * self.half_width + 3
        sizes = steps * self.row_len
        self.start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        parts = []
        for s, f_steps, rr in zip(self.scales, steps, self.half_width):
            r = np.arange(-rr, rr + 3, dtype=np.float64)
            f = np.arange(f_steps, dtype=np.float64) / f_steps
            parts.append(ndtr((r[None, :] - 0.5 - f[:, None]) / s).ravel())
        self.values = np.concatenate(parts)

    def digest(self) -> str:
        """sha256 of the table (what encoder and decoder must share bit for bit)."""
        return hashlib.sha256(self.values.tobytes() + self.scales.tobytes()).hexdigest()


_TABLE: _CdfTable | None = None


def cdf_table() -> _CdfTable:
    """The process-wide CDF table (built on first use, ~20 ms)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _CdfTable()
    return _TABLE


def _ladder() -> np.ndarray:
    out = [4, 6]
    while out[-1] < MAX_ROW:
        out += [out[-2] * 2, out[-1] * 2]
    return np.array([r for r in out if r <= MAX_ROW], dtype=np.int64)


#: Row lengths of the coded distributions (escape-low, symbols, escape-high): an element's row
#: length is the smallest of these that holds its support plus the two escapes.
ROW_LADDER = _ladder()


@dataclass(frozen=True)
class MixtureModel:
    """Quantised distributions of N mixture elements, ready for the range coder.

    lo: int64 [N], the first symbol of each element's support; row: int64 [N], each element's
    row length (a ROW_LADDER entry); symbols lo .. lo + row - 3 are coded directly, others
    through an escape. groups: (row length, element indices ascending, float64 [n, row] PMF
    rows) in coding order (ascending row length).
    """

    lo: np.ndarray
    row: np.ndarray
    groups: tuple[tuple[int, np.ndarray, np.ndarray], ...]

    @property
    def size(self) -> int:
        return int(self.lo.size)


def _snap_numpy(means, scales):
    """Grid indices of every component: (base, table row start, half width), int64 [N, K].

    Only exact operations: comparisons with the grid's cell edges (scale index q), a multiply
    by a power of two and round-half-even (mean in 1/F_q steps), integer shifts."""
    t = cdf_table()
    q = np.searchsorted(t.edges, scales, side="left")
    shift = t.shift[q]
    mq = np.rint(np.clip(means, -MEAN_BOUND, MEAN_BOUND) * t.steps[q]).astype(np.int64)
    base = mq >> shift
    frac = mq & ((np.int64(1) << shift) - 1)
    half = t.half_width[q]
    start = t.start[q] + frac * t.row_len[q]
    return base, start, half


def _rows_numpy(width, lo, base, half, start, weights, values, out=None):
    """PMF rows float64 [n, width] (escape-low, symbols lo .. lo + width - 3, escape-high):
    row[0] = C(0), row[1 + j] = C(j + 1) - C(j), row[-1] = max(1 - C(width - 2), 0), where
    C(j) = sum_m weights[m] * table(component m, edge lo + j - 1/2), the sum in the order m = 0, 1, ...
    and the table position clipped to the component's row. Works in chunks that fit the cache."""
    n, k = weights.shape
    out = np.empty((n, width)) if out is None else out
    chunk = max(1, 16384 // width)
    j = np.arange(width - 1, dtype=np.int64)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        cdf = np.zeros((b - a, width - 1))
        for m in range(k):
            pos = (lo[a:b] - base[a:b, m] + half[a:b, m])[:, None] + j
            np.clip(pos, 0, (2 * half[a:b, m] + 2)[:, None], out=pos)
            pos += start[a:b, m][:, None]
            cdf += weights[a:b, m][:, None] * values[pos]
        rows = out[a:b]
        rows[:, 0] = cdf[:, 0]
        np.subtract(cdf[:, 1:], cdf[:, :-1], out=rows[:, 1:-1])
        rows[:, -1] = np.maximum(1.0 - cdf[:, -1], 0.0)
    return out


def _row_kernel(width, lo, base, half, start, weights, values, cdf, out):  # pragma: no cover - compiled
    """One element's PMF row (:func:`_rows_numpy`) into ``out[:width]``; ``cdf`` is scratch.
    Written with slices so that the loops vectorise (element-wise IEEE operations only, in the
    same order as numpy's and without fast-math, so vectorising changes no bit)."""
    k = weights.shape[0]
    e = width - 1  # edges
    for m in range(k):
        a = lo - base[m] + half[m]  # table position of edge 0 (<= 0)
        top = 2 * half[m] + 2
        s0 = start[m]
        w = weights[m]
        j0 = max(0, min(-a, e))  # edges before the component's row take its first entry,
        j1 = max(j0, min(top - a + 1, e))  # edges after it its last (so 0 <= a + j <= top)
        v_lo = w * values[s0]
        v_hi = w * values[s0 + top]
        src = values[s0 + a + j0:s0 + a + j1]
        mid = cdf[j0:j1]
        if m == 0:
            for j in range(j0):
                cdf[j] = v_lo
            for j in range(j1 - j0):
                mid[j] = w * src[j]
            for j in range(j1, e):
                cdf[j] = v_hi
        else:
            for j in range(j0):
                cdf[j] += v_lo
            for j in range(j1 - j0):
                mid[j] += w * src[j]
            for j in range(j1, e):
                cdf[j] += v_hi
    out[0] = cdf[0]
    head, tail, body = cdf[:e - 1], cdf[1:e], out[1:e]
    for j in range(e - 1):
        body[j] = tail[j] - head[j]
    last = 1.0 - cdf[e - 1]
    out[e] = last if last > 0.0 else 0.0


def _rows_flat_kernel(order, dest, width, lo, base, half, start, weights, values, max_width, flat):  # pragma: no cover
    """Rows of the elements ``order[p]`` (``width[p]`` bins each) into ``flat[dest[p]:]``;
    chunks of positions in parallel (every row depends on its own element only)."""
    n = order.size
    chunk = 256
    for c in numba.prange((n + chunk - 1) // chunk):
        cdf = np.empty(max_width)
        for p in range(c * chunk, min(n, (c + 1) * chunk)):
            i = order[p]
            w = width[p]
            _row(w, lo[i], base[i], half[i], start[i], weights[i], values, cdf, flat[dest[p]:dest[p] + w])


if numba is not None:
    _row = numba.njit(cache=True, nogil=True, inline="always")(_row_kernel)
    _rows_flat_compiled = numba.njit(cache=True, nogil=True, parallel=True)(_rows_flat_kernel)


def _rows_flat(order, dest, width, lo, base, half, start, weights, values, total: int, use_numba: bool | None = None):
    """float64 [total]: the PMF row of element ``order[p]`` (``width[p]`` bins) at ``dest[p]``,
    for every p; compiled when numba is installed, else :func:`_rows_numpy` per row length (the
    same bits: tests/test_entropy.py checks it)."""
    flat = np.empty(total)
    if numba is None or use_numba is False:
        for w in np.unique(width):
            sel = np.flatnonzero(width == w)
            ids = order[sel]
            rows = _rows_numpy(int(w), lo[ids], base[ids], half[ids], start[ids], weights[ids], values)
            flat[(dest[sel][:, None] + np.arange(w)).ravel()] = rows.ravel()
    elif order.size:
        _rows_flat_compiled(order, dest, width, lo, base, half, start, weights, values, int(width.max()), flat)
    return flat


@dataclass(frozen=True)
class _Layout:
    """Where every element's PMF row goes (built by :func:`_layout`).

    base, start, half: int64 [N, K] grid indices of the components (:func:`_snap_numpy`);
    lo, row: int64 [N] (:class:`MixtureModel`); groups ``g = image * len(ROW_LADDER) + rung``
    hold an image's elements of row length ``ROW_LADDER[rung]`` in index order: positions
    ``group_first[g] .. group_first[g + 1]`` of ``order`` (element indices, int64 [N]), rows at
    ``group_off[g]`` of the flat row buffer; ``dest`` / ``width`` (int64 [N]): the row offset
    and length of the element at each position."""

    base: np.ndarray
    start: np.ndarray
    half: np.ndarray
    lo: np.ndarray
    row: np.ndarray
    order: np.ndarray
    dest: np.ndarray
    width: np.ndarray
    group_first: np.ndarray
    group_off: np.ndarray


def _layout_numpy(weights, means, scales, bounds) -> _Layout:
    """:func:`_layout` with numpy (the reference the compiled kernel is tested against)."""
    n, k = weights.shape
    base, start, half = _snap_numpy(means, scales)
    lo = base[:, 0] - half[:, 0]
    hi = base[:, 0] + half[:, 0]
    for m in range(1, k):
        np.minimum(lo, base[:, m] - half[:, m], out=lo)
        np.maximum(hi, base[:, m] + half[:, m], out=hi)
    hi += 1
    wide = hi - lo + 3 > MAX_ROW
    if wide.any():  # a window of MAX_ROW bins around the (first) heaviest component
        heavy = np.argmax(weights[wide], axis=1)
        b, h = base[wide, heavy], half[wide, heavy]
        lo[wide] = b - h - (MAX_ROW - 3 - (2 * h + 2)) // 2
        hi[wide] = lo[wide] + MAX_ROW - 4
    bucket = np.searchsorted(ROW_LADDER, hi - lo + 3, side="left")
    row = ROW_LADDER[bucket]
    images, rungs = bounds.size - 1, ROW_LADDER.size
    key = np.repeat(np.arange(images, dtype=np.int64) * rungs, np.diff(bounds)) + bucket
    order = np.argsort(key, kind="stable")
    group_size = np.bincount(key, minlength=images * rungs)
    group_first = np.concatenate([[0], np.cumsum(group_size)]).astype(np.int64)
    group_off = np.concatenate([[0], np.cumsum(group_size * np.tile(ROW_LADDER, images))]).astype(np.int64)
    sorted_key = key[order]
    width = row[order]
    dest = group_off[sorted_key] + (np.arange(n) - group_first[sorted_key]) * width
    return _Layout(base, start, half, lo, row, order, dest, width, group_first, group_off)


def _layout_kernel(means, scales, scale_bits, q_guess, q_key0, weights, bounds, edges, shift_t, steps_t, half_t,
                   start_t, len_t, ladder, mean_bound, max_row,
                   base, start, half, lo, row, order, dest, width, group_first, group_off):  # pragma: no cover
    """:func:`_layout_numpy` as one pass per element (threads; ``scale_bits`` = the scales'
    float64 bits as int64, ``q_guess`` / ``q_key0`` the table's cell lookup) and a counting sort,
    into the preallocated outputs."""
    n, k = means.shape
    num_edges, rungs = edges.size, ladder.size
    bucket = np.empty(n, dtype=np.int64)
    for i in numba.prange(n):  # every element on its own (threads), then the grouping (sequential)
        heavy = 0
        lo_i, hi_i = np.int64(0), np.int64(0)
        for m in range(k):
            s = scales[i, m]
            # q = the number of edges < s (= searchsorted side="left"): a lower bound looked up
            # from the bits of s, raised by exact comparisons (at most a few)
            q = q_guess[min(max((scale_bits[i, m] >> Q_KEY_SHIFT) - q_key0, 0), q_guess.size - 1)]
            while q < num_edges and edges[q] < s:
                q += 1
            sh = shift_t[q]
            mu = min(max(means[i, m], -mean_bound), mean_bound)
            mq = np.int64(np.rint(mu * steps_t[q]))
            b, h = mq >> sh, half_t[q]
            base[i, m], half[i, m] = b, h
            start[i, m] = start_t[q] + (mq & ((np.int64(1) << sh) - 1)) * len_t[q]
            if m == 0 or b - h < lo_i:
                lo_i = b - h
            if m == 0 or b + h > hi_i:
                hi_i = b + h
            if weights[i, m] > weights[i, heavy]:
                heavy = m
        hi_i += 1
        if hi_i - lo_i + 3 > max_row:
            b, h = base[i, heavy], half[i, heavy]
            lo_i = b - h - (max_row - 3 - (2 * h + 2)) // 2
            hi_i = lo_i + max_row - 4
        need = hi_i - lo_i + 3
        r = 0
        while ladder[r] < need:
            r += 1
        lo[i], row[i], bucket[i] = lo_i, ladder[r], r
    # counting sort by (image, rung), stable
    images = bounds.size - 1
    size = np.zeros(images * rungs, dtype=np.int64)
    for img in range(images):
        for i in range(bounds[img], bounds[img + 1]):
            size[img * rungs + bucket[i]] += 1
    group_first[0], group_off[0] = 0, 0
    for g in range(images * rungs):
        group_first[g + 1] = group_first[g] + size[g]
        group_off[g + 1] = group_off[g] + size[g] * ladder[g % rungs]
    fill = group_first[:-1].copy()
    for img in range(images):
        for i in range(bounds[img], bounds[img + 1]):
            g = img * rungs + bucket[i]
            p = fill[g]
            fill[g] = p + 1
            order[p] = i
            width[p] = row[i]
            dest[p] = group_off[g] + (p - group_first[g]) * row[i]


if numba is not None:
    _layout_compiled = numba.njit(cache=True, nogil=True, parallel=True)(_layout_kernel)


def _layout(weights, means, scales, bounds, use_numba: bool | None = None) -> _Layout:
    """Snap every component to the grid, give every element its support and row length, and
    group the elements of each image by row length (:class:`_Layout`); ``bounds`` int64
    [images + 1]. Compiled when numba is installed (integer results, identical to
    :func:`_layout_numpy`: tests/test_entropy.py checks it)."""
    if numba is None or use_numba is False:
        return _layout_numpy(weights, means, scales, bounds)
    t = cdf_table()
    n, k = weights.shape
    scales = np.ascontiguousarray(scales, dtype=np.float64)  # read as int64 bits too
    base, start, half = (np.empty((n, k), dtype=np.int64) for _ in range(3))
    lo, row, order, dest, width = (np.empty(n, dtype=np.int64) for _ in range(5))
    groups = (bounds.size - 1) * ROW_LADDER.size + 1
    group_first, group_off = np.empty(groups, dtype=np.int64), np.empty(groups, dtype=np.int64)
    _layout_compiled(means, scales, scales.view(np.int64), t.q_guess, t.q_key0, weights, bounds, t.edges, t.shift,
                     t.steps, t.half_width, t.start, t.row_len, ROW_LADDER, MEAN_BOUND, MAX_ROW,
                     base, start, half, lo, row, order, dest, width, group_first, group_off)
    return _Layout(base, start, half, lo, row, order, dest, width, group_first, group_off)


def mixture_model(weights, means, scales) -> MixtureModel:
    """The coded distributions of N elements (see the module docstring): weights, means,
    scales float [N, K] (weights non-negative, rows renormalised; scales lower-bounded by 0.11)."""
    return mixture_models(weights, means, scales, None)[0]


def mixture_models(weights, means, scales, counts=None) -> list[MixtureModel]:
    """Like :func:`mixture_model` for the concatenated elements of several images, built in one
    vectorised pass and split into one model per image (``counts`` elements each; None: one).

    Every element's distribution depends on its own parameters only, so the result equals
    calling :func:`mixture_model` per image, bit for bit.
    """
    weights, means, scales = _mixture_params(weights, means, scales, None)
    n, k = weights.shape
    counts = [n] if counts is None else [int(c) for c in counts]
    if sum(counts) != n:
        raise ValueError(f"counts sum to {sum(counts)}, parameters have {n} rows")
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    lay = _layout(weights, means, scales, bounds)
    flat = _rows_flat(lay.order, lay.dest, lay.width, lay.lo, lay.base, lay.half, lay.start, weights,
                      cdf_table().values, int(lay.group_off[-1]))
    rungs, group_first, group_off = ROW_LADDER.size, lay.group_first, lay.group_off
    group_size = np.diff(group_first)
    models = []
    for i in range(len(counts)):
        groups = []
        for g in np.flatnonzero(group_size[i * rungs:(i + 1) * rungs]) + i * rungs:
            w, a, b = int(ROW_LADDER[g % rungs]), int(group_first[g]), int(group_first[g + 1])
            rows = flat[group_off[g]:group_off[g + 1]].reshape(b - a, w)
            groups.append((w, lay.order[a:b] - bounds[i], rows))
        models.append(MixtureModel(lo=lay.lo[bounds[i]:bounds[i + 1]], row=lay.row[bounds[i]:bounds[i + 1]],
                                   groups=tuple(groups)))
    return models


def _esc_model():
    p = 0.75 ** np.arange(_ESC_CLASSES, dtype=np.float64)
    return _model.Categorical(p / p.sum(), perfect=False)


_ESC_MODEL = _esc_model()
_ROWS = _model.Categorical(perfect=False)
_UNIFORM = _model.Uniform()
_I32 = np.iinfo(np.int32)


def _bit_length(e: np.ndarray) -> np.ndarray:
    nb = np.zeros(e.shape, dtype=np.int64)
    rest = e.copy()
    while rest.any():
        nb += rest > 0
        rest >>= 1
    return nb


def _put_mixture_model(enc, symbols, model: MixtureModel) -> None:
    sym = _symbols(symbols)
    if sym.size != model.size:
        raise ValueError(f"{sym.size} symbols for a model of {model.size} elements")
    if sym.size and (sym.min() < _I32.min or sym.max() > _I32.max):
        raise ValueError("mixture symbols must fit in int32")
    off = sym - model.lo
    idx = np.where(off < 0, 0, np.minimum(off + 1, model.row - 1)).astype(np.int32)
    for width, ids, rows in model.groups:
        enc.encode(idx[ids], _ROWS, rows)
    # escapes, in element order: which side (from the row), then the excess d >= 1 Elias-gamma style
    hi = model.lo + model.row - 3
    low, high = sym < model.lo, sym > hi
    esc = low | high
    if not esc.any():
        return
    e = np.where(low, model.lo - sym, sym - hi)[esc] - 1
    nb = _bit_length(e)
    enc.encode(nb.astype(np.int32), _ESC_MODEL)
    bits = np.maximum(nb - 1, 0)
    mant = e - np.where(nb > 0, np.int64(1) << bits, 0)
    b1 = np.minimum(bits, 16)
    sel = b1 > 0
    if sel.any():
        enc.encode((mant[sel] & ((1 << b1[sel]) - 1)).astype(np.int32), _UNIFORM, (1 << b1[sel]).astype(np.int32))
    sel = bits > 16
    if sel.any():
        enc.encode((mant[sel] >> 16).astype(np.int32), _UNIFORM, (1 << (bits[sel] - 16)).astype(np.int32))


def _get_mixture_model(reader: "SymbolReader", model: MixtureModel) -> np.ndarray:
    def run(decoder):
        idx = np.zeros(model.size, dtype=np.int64)
        for width, ids, rows in model.groups:
            idx[ids] = np.asarray(decoder.decode(_ROWS, rows), dtype=np.int64)
        out = model.lo + idx - 1
        low, high = idx == 0, idx == model.row - 1
        esc = low | high
        if esc.any():
            nb = np.asarray(decoder.decode(_ESC_MODEL, int(esc.sum())), dtype=np.int64)
            bits = np.maximum(nb - 1, 0)
            mant = np.zeros(nb.size, dtype=np.int64)
            b1 = np.minimum(bits, 16)
            sel = b1 > 0
            if sel.any():
                mant[sel] = np.asarray(decoder.decode(_UNIFORM, (1 << b1[sel]).astype(np.int32)), dtype=np.int64)
            sel = bits > 16
            if sel.any():
                mant[sel] += np.asarray(decoder.decode(_UNIFORM, (1 << (bits[sel] - 16)).astype(np.int32)),
                                        dtype=np.int64) << 16
            d = mant + np.where(nb > 0, np.int64(1) << bits, 0) + 1
            hi = model.lo + model.row - 3
            out[esc] = np.where(low[esc], model.lo[esc] - d, hi[esc] + d)
        return np.clip(out, _I32.min, _I32.max)

    if model.size == 0:
        return np.zeros(0, dtype=np.int32)
    return reader._run(run).astype(np.int32)


def mixture_support(weights, means, scales) -> tuple[np.ndarray, np.ndarray]:
    """Per-element directly coded symbols ``lo[i] .. hi[i]`` (int64 [N] each) of the mixture
    coder; other symbols go through an escape (module docstring)."""
    m = mixture_model(weights, means, scales)
    return m.lo, m.lo + m.row - 3


def encode_mixture(symbols, weights, means, scales) -> bytes:
    """Code int32 symbols [N] under discretised Gaussian mixtures (exact for every int32 value).

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
