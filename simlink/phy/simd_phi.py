"""The sum-product ``phi`` function, float32, written so that numba's compiler vectorises it.

``phi(x) = log((e^x + 1) / (e^x - 1)) = -log(tanh(x / 2))`` is the check-node function of the
log-domain sum-product rule (Sionna's ``boxplus-phi``). It is where the decoder spends its time,
and the libraries at hand do not fit: numba calls the C library's scalar ``expf`` / ``logf`` per
element, numpy's ``log1p`` is scalar on AVX2 machines (~16 ns per element here) and a numpy
expression cannot be fused into the decoder's loops. So it is written here from elementary
operations (``+ - * /``, comparisons, float ↔ int conversions and bit casts), which LLVM turns into
8-lane AVX2 code inside any loop that calls :func:`phi`:

* the argument is clamped to Sionna's float32 range ``[8.5e-8, 16.635532]``;
* ``em = e^x - 1``: ``x = n ln2 + r`` with ``n = round(x / ln2)``, ``|r| <= ln2 / 2`` (``ln2``
  split in a short high part and a correction, so ``n ln2`` is exact); ``e^r - 1`` by its Taylor
  polynomial to degree 7 (truncation < 2e-8 relative); ``2^n`` by writing ``n + 127`` into the
  exponent bits; ``em = 2^n (e^r - 1) + (2^n - 1)``, which is also exact for small ``x`` (``n = 0``);
* ``q = 2 / em`` and ``phi = log1p(q)``: ``w = 1 + q`` rounded, with the rounding error
  ``q - (w - 1)`` added back when ``w < 2`` (exact there by Sterbenz; negligible above);
  ``log w = e ln2 + log m`` from the exponent bits ``e`` and the mantissa ``m`` brought to
  ``[sqrt(2)/2, sqrt(2))``, ``log m = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, ``|s| < 0.1716``,
  odd series to ``s^9`` (truncation < 1e-9).

Accuracy: within 4e-7 relative of the exact value over the whole clamped range (a test checks it
against float64 numpy on a dense grid). Sionna's own float32 ``log(e^x + 1) - log(e^x - 1)`` is
much coarser for large ``x`` (``e^x ± 1`` round to neighbours), so the decoders' messages differ
by Sionna's rounding, not by this function's.
"""

from __future__ import annotations

import math

import numpy as np

from simlink.numba_setup import import_numba

numba = import_numba()

f32 = np.float32
PHI_MIN = f32(8.5e-8)
PHI_MAX = f32(16.635532)
_INV_LN2 = f32(1.0 / math.log(2.0))
_LN2_HI = f32(0.693359375)  # 0x3f318000: few mantissa bits, so n * _LN2_HI is exact for |n| < 2^10
_LN2_LO = f32(math.log(2.0) - 0.693359375)
_ONE, _TWO, _HALF = f32(1.0), f32(2.0), f32(0.5)
_SQRT2 = f32(math.sqrt(2.0))
_E3, _E4, _E5, _E6, _E7 = (f32(1.0 / math.factorial(k)) for k in range(3, 8))
_L3, _L5, _L7, _L9 = (f32(2.0 / k) for k in (3, 5, 7, 9))
_MANTISSA = np.int32(0x007FFFFF)
_EXP_ONE = np.int32(0x3F800000)


def phi_reference(x: np.ndarray) -> np.ndarray:
    """``phi`` in float64 numpy (``log1p(2 / expm1(x))`` on the clamped argument), for tests."""
    c = np.clip(np.asarray(x, dtype=np.float64), float(PHI_MIN), float(PHI_MAX))
    return np.log1p(2.0 / np.expm1(c))


if numba is not None:
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def _bits(typingctx, x):
        """The IEEE bits of a float32 as int32 (a register bit cast)."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))
        return types.int32(types.float32), codegen

    @intrinsic
    def _float(typingctx, x):
        """The float32 whose IEEE bits are the int32 ``x``."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())
        return types.float32(types.int32), codegen

    @numba.njit(inline="always", fastmath={"contract"}, error_model="numpy", cache=True)
    def phi(x):
        """``phi(clamp(x))`` of one float32 (module doc); inline it into vectorisable loops."""
        x = min(max(x, PHI_MIN), PHI_MAX)
        ni = np.int32(x * _INV_LN2 + _HALF)  # x >= 0: truncation rounds to nearest
        n = np.float32(ni)
        r = (x - n * _LN2_HI) - n * _LN2_LO
        r2 = r * r
        em = r + r2 * ((_HALF + r * _E3) + r2 * ((_E4 + r * _E5) + r2 * (_E6 + r * _E7)))
        p2 = _float((ni + np.int32(127)) << np.int32(23))
        em = p2 * em + (p2 - _ONE)
        q = _TWO / em
        w = _ONE + q
        corr = q - (w - _ONE) if w < _TWO else f32(0.0)
        bits = _bits(w)
        e = np.float32(bits >> np.int32(23)) - f32(127.0)
        m = _float((bits & _MANTISSA) | _EXP_ONE)
        big = m > _SQRT2
        m = m * _HALF if big else m
        e = e + _ONE if big else e
        f = m - _ONE
        s = f / (_TWO + f)
        z = s * s
        log_m = s * (_TWO + z * ((_L3 + z * _L5) + z * z * (_L7 + z * _L9)))
        return (e * _LN2_LO + corr) + log_m + e * _LN2_HI

    @numba.njit(fastmath={"contract"}, error_model="numpy", cache=True, nogil=True)
    def phi_array(x, out):
        """``out[i] = phi(x[i])`` over 1-D float32 arrays (tests and benchmarks)."""
        for i in range(x.shape[0]):
            out[i] = phi(x[i])
