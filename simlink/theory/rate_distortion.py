"""Rate-distortion theory for discrete sources: classic and task-extended Blahut-Arimoto.

The extended problem is the one of TOSC-SR (Theorem 1): a source ``X`` is reconstructed as
``X_hat`` while a task variable ``Y`` depends on ``X`` only (Markov chain ``Y - X - X_hat``).
With the pixel distortion ``d_R(x, x_hat)`` and the semantic distortion

    ``d_S(x, x_hat) = d_R(x, x_hat) + beta * KL(p(y|x) || p(y|x_hat))``,

the stationary points of ``I(X; X_hat) + E[d_S] / lam`` satisfy the self-consistent equations

    ``p(x_hat|x) = p(x_hat) exp(-d_S(x, x_hat) / lam) / Z(x)``,
    ``p(x_hat) = sum_x p(x) p(x_hat|x)``,
    ``p(y|x_hat) = sum_x p(y|x) p(x|x_hat)``, ``p(x|x_hat) = p(x) p(x_hat|x) / p(x_hat)``,

which :func:`extended_blahut_arimoto` iterates to a fixed point. Because
``E[KL(p(y|X) || p(y|X_hat))] = I(X; Y) - I(X_hat; Y)``, the task distortion is the information
about ``Y`` lost by the reconstruction, ``D_T = I(X; Y) - I(X_hat; Y) >= 0`` (data processing).
With ``beta = 0`` this is the classic Blahut-Arimoto algorithm (:func:`blahut_arimoto`).

Units: probabilities are float arrays; KL inside ``d_S`` and the objective use natural logs
(nats); the reported rate and ``D_T`` are in **bits**; ``D_R`` is in the units of ``d_R``.
All computations are in log space, so tiny probabilities neither underflow nor produce NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_LOG_FLOOR = math.log(np.finfo(np.float64).tiny)
"""Floor (about -708) for ``log p(y|x_hat)`` inside the KL term: a task label that ``x_hat``
deems impossible costs a large but finite penalty instead of ``inf`` (which would give NaN)."""

_PROB_ATOL = 1e-9
"""Tolerance on probability vectors summing to one."""


@dataclass(frozen=True)
class RDPoint:
    """One operating point found by (extended) Blahut-Arimoto.

    Attributes:
        rate: ``I(X; X_hat)`` in bits.
        d_r: ``E[d_R(X, X_hat)]`` in the units of ``d_R``.
        d_t: ``I(X; Y) - I(X_hat; Y)`` in bits (0 up to rounding for the classic problem).
        p_xhat_given_x: ``float64[nx, nxhat]`` the test channel ``p(x_hat|x)``.
        p_xhat: ``float64[nxhat]`` the reconstruction marginal.
        iterations: fixed-point iterations run.
        converged: whether the change of ``p(x_hat|x)`` fell below ``tol`` within ``max_iter``.
    """

    rate: float
    d_r: float
    d_t: float
    p_xhat_given_x: np.ndarray
    p_xhat: np.ndarray
    iterations: int
    converged: bool


@dataclass(frozen=True)
class RDCurve:
    """Operating points over a sweep of ``lam`` (all arrays ``[n_lam]``, in the order given).

    Attributes: ``lam``, ``rate`` (bits), ``d_r``, ``d_t`` (bits), ``iterations`` (int),
    ``converged`` (bool), with the meanings of :class:`RDPoint`.
    """

    lam: np.ndarray
    rate: np.ndarray
    d_r: np.ndarray
    d_t: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray


def _log(p: np.ndarray) -> np.ndarray:
    """Natural log with ``log 0 = -inf`` and no warning."""
    with np.errstate(divide="ignore"):
        return np.log(p)


def _logsumexp(a: np.ndarray, axis: int, keepdims: bool = False) -> np.ndarray:
    """``log(sum(exp(a), axis))`` with max subtraction; all ``-inf`` slices give ``-inf``.

    (scipy.special.logsumexp does the same with a per-call overhead that dominates the
    thousands of iterations on tiny arrays that Blahut-Arimoto needs.)
    """
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axis)


def _probabilities(p, name: str, axis: int = -1) -> np.ndarray:
    """Validate a (conditional) probability array: non-negative, summing to one along ``axis``."""
    p = np.asarray(p, dtype=np.float64)
    if np.any(~np.isfinite(p)) or np.any(p < 0.0):
        raise ValueError(f"{name} must be finite and non-negative")
    if not np.allclose(p.sum(axis=axis), 1.0, rtol=0.0, atol=_PROB_ATOL):
        raise ValueError(f"{name} must sum to 1 along axis {axis}")
    return p


def mutual_information(p_a, p_b_given_a) -> float:
    """``I(A; B)`` in bits from ``p(a)`` ``[na]`` and ``p(b|a)`` ``[na, nb]`` (zeros allowed)."""
    p_a = np.asarray(p_a, dtype=np.float64)
    p_ba = np.asarray(p_b_given_a, dtype=np.float64)
    joint = p_a[:, None] * p_ba
    p_b = joint.sum(axis=0)
    mask = joint > 0.0
    ratio = p_ba[mask] / np.broadcast_to(p_b, joint.shape)[mask]
    return float(np.sum(joint[mask] * np.log2(ratio)))


def extended_blahut_arimoto(
    p_x,
    p_y_given_x,
    d_r,
    lam: float,
    beta: float = 0.0,
    max_iter: int = 100_000,
    tol: float = 1e-12,
) -> RDPoint:
    """Extended Blahut-Arimoto (TOSC-SR, Theorem 1): one point of the semantic R-D trade-off.

    Starts from a uniform ``p(x_hat)`` (so ``p(y|x_hat) = p(y)``) and iterates the
    self-consistent equations of the module docstring until the largest absolute change of
    ``p(x_hat|x)`` between two iterations is below ``tol``. The problem with ``beta > 0`` is
    not convex: the result is a stationary point (a local optimum from this start).

    Inputs:
        p_x: ``[nx]`` source distribution (sums to 1; zeros allowed).
        p_y_given_x: ``[nx, ny]`` task variable given the source (rows sum to 1).
        d_r: ``[nx, nxhat]`` finite pixel distortion ``d_R(x, x_hat)``.
        lam: ``> 0`` trade-off (temperature); larger ``lam`` gives lower rate, larger distortion.
        beta: ``>= 0`` weight of the task KL term (nats) in ``d_S``.
        max_iter: iteration cap; tol: convergence threshold on ``p(x_hat|x)``.
    Output: :class:`RDPoint` (rate and ``D_T`` in bits, ``D_R`` in units of ``d_r``).
    """
    p_x = _probabilities(p_x, "p_x")
    p_yx = _probabilities(p_y_given_x, "p_y_given_x", axis=1)
    d_r = np.asarray(d_r, dtype=np.float64)
    if p_x.ndim != 1 or p_yx.ndim != 2 or p_yx.shape[0] != p_x.size:
        raise ValueError(f"need p_x [nx] and p_y_given_x [nx, ny]; got {p_x.shape}, {p_yx.shape}")
    if d_r.ndim != 2 or d_r.shape[0] != p_x.size or not np.all(np.isfinite(d_r)):
        raise ValueError(f"d_r must be a finite [nx, nxhat] array with nx = {p_x.size}; got {d_r.shape}")
    if not lam > 0.0:
        raise ValueError(f"lam must be > 0; got {lam}")
    if not beta >= 0.0:
        raise ValueError(f"beta must be >= 0; got {beta}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}")

    nxhat = d_r.shape[1]
    log_px = _log(p_x)
    log_pyx = _log(p_yx)  # [nx, ny]
    log_py = _logsumexp(log_px[:, None] + log_pyx, axis=0)  # [ny]
    neg_entropy = np.sum(p_yx * np.where(p_yx > 0.0, log_pyx, 0.0), axis=1)  # sum_y p log p, [nx]
    log_q = np.full(nxhat, -math.log(nxhat))
    log_pyxh = np.broadcast_to(log_py, (nxhat, log_py.size))  # p(y|x_hat) = p(y) at the start

    cond = None
    converged = False
    iterations = 0
    for iterations in range(1, max_iter + 1):
        d_s = d_r
        if beta > 0.0:
            kl = neg_entropy[:, None] - p_yx @ np.maximum(log_pyxh, _LOG_FLOOR).T  # [nx, nxhat]
            d_s = d_r + beta * kl
        log_cond = log_q[None, :] - d_s / lam
        log_cond = log_cond - _logsumexp(log_cond, axis=1, keepdims=True)  # log p(x_hat|x)
        log_joint = log_px[:, None] + log_cond
        log_q = _logsumexp(log_joint, axis=0)
        used = np.isfinite(log_q)  # an unused x_hat keeps p(y|x_hat) = p(y) (it has no posterior)
        log_post = np.where(used[None, :], log_joint - np.where(used, log_q, 0.0)[None, :], -np.inf)
        log_pyxh = _logsumexp(log_post[:, :, None] + log_pyx[:, None, :], axis=0)  # [nxhat, ny]
        log_pyxh = np.where(used[:, None], log_pyxh, log_py[None, :])
        new_cond = np.exp(log_cond)
        if cond is not None and np.max(np.abs(new_cond - cond)) < tol:
            cond = new_cond
            converged = True
            break
        cond = new_cond

    p_xhat = np.exp(log_q)
    d_t = mutual_information(p_x, p_yx) - mutual_information(p_xhat, np.exp(log_pyxh))
    return RDPoint(
        rate=mutual_information(p_x, cond),
        d_r=float(np.sum(p_x[:, None] * cond * d_r)),
        d_t=float(d_t),
        p_xhat_given_x=cond,
        p_xhat=p_xhat,
        iterations=iterations,
        converged=converged,
    )


def rd_curve(p_x, p_y_given_x, d_r, lams, beta: float = 0.0, **kwargs) -> RDCurve:
    """Run :func:`extended_blahut_arimoto` for every ``lam`` in ``lams`` (each from its own
    uniform start, so the points do not depend on the sweep order).

    Inputs: as :func:`extended_blahut_arimoto`, with ``lams`` a 1-D array of ``lam > 0``;
    ``kwargs`` (``max_iter``, ``tol``) are passed through.
    Output: :class:`RDCurve` with arrays ``[len(lams)]``.
    """
    lams = np.atleast_1d(np.asarray(lams, dtype=np.float64))
    points = [extended_blahut_arimoto(p_x, p_y_given_x, d_r, float(lam), beta, **kwargs) for lam in lams]
    return RDCurve(
        lam=lams,
        rate=np.array([p.rate for p in points]),
        d_r=np.array([p.d_r for p in points]),
        d_t=np.array([p.d_t for p in points]),
        iterations=np.array([p.iterations for p in points], dtype=np.int64),
        converged=np.array([p.converged for p in points], dtype=bool),
    )


def blahut_arimoto(p_x, d, s: float, **kwargs) -> RDPoint:
    """Classic Blahut-Arimoto: the point of the rate-distortion function ``R(D)`` at slope ``-s``.

    The ``beta = 0`` case of :func:`extended_blahut_arimoto` with ``lam = 1 / s``:
    ``p(x_hat|x) ∝ p(x_hat) exp(-s d(x, x_hat))``; at the fixed point ``dR/dD = -s`` nats per
    unit distortion (``-s / ln 2`` bits).

    Inputs: ``p_x`` ``[nx]`` source distribution; ``d`` ``[nx, nxhat]`` distortion;
    ``s > 0`` slope parameter; ``kwargs`` (``max_iter``, ``tol``) passed through.
    Output: :class:`RDPoint` with ``rate = R(D)`` in bits, ``d_r = D``, ``d_t = 0`` (up to rounding).
    """
    if not s > 0.0:
        raise ValueError(f"s must be > 0; got {s}")
    p_x = np.asarray(p_x, dtype=np.float64)
    return extended_blahut_arimoto(p_x, np.ones((p_x.size, 1)), d, 1.0 / s, 0.0, **kwargs)
