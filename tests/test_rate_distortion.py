"""Classic and task-extended Blahut-Arimoto (simlink.theory.rate_distortion) against closed-form
rate-distortion functions and the properties of the TOSC-SR semantic trade-off."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simlink.theory import blahut_arimoto, extended_blahut_arimoto, mutual_information, rd_curve


def h2(p) -> np.ndarray:
    """Binary entropy in bits."""
    p = np.asarray(p, dtype=np.float64)
    return -(p * np.log2(p) + (1.0 - p) * np.log2(1.0 - p))


def hamming(m: int) -> np.ndarray:
    return 1.0 - np.eye(m)


TOY_LAMS = np.geomspace(0.02, 5.0, 12)
TOY_BETAS = (0.0, 2.0)


def toy_source() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8 equiprobable grey levels, squared-error pixel distortion (scaled by 1/10), and a task
    label that is the level's parity seen through a 5 % label noise (simlink.theory.toy)."""
    from simlink.theory.toy import parity_source

    return parity_source(8, 0.05)


@pytest.fixture(scope="module")
def toy_curves():
    p_x, p_yx, d_r = toy_source()
    return {beta: rd_curve(p_x, p_yx, d_r, TOY_LAMS, beta) for beta in TOY_BETAS}


@pytest.mark.parametrize("m", [2, 4, 8])
def test_uniform_hamming_closed_form(m):
    """Uniform M-ary source, Hamming distortion: R(D) = log2 M - h(D) - D log2(M - 1) for
    D <= 1 - 1/M (binary: 1 - h(D)). The fixed point is p(x_hat != x | x) = D / (M - 1) with
    D = (M - 1) e^(-1/lam) / (1 + (M - 1) e^(-1/lam))."""
    errors = []
    for lam in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0):
        point = extended_blahut_arimoto(np.full(m, 1.0 / m), np.eye(m), hamming(m), lam)
        e = (m - 1) * math.exp(-1.0 / lam)
        assert point.converged
        assert point.d_r == pytest.approx(e / (1.0 + e), abs=1e-12)
        assert point.d_r <= 1.0 - 1.0 / m
        closed = math.log2(m) - h2(point.d_r) - point.d_r * math.log2(m - 1)
        errors.append(abs(point.rate - closed))
    print(f"M = {m}: max |BA rate - closed-form R(D)| = {max(errors):.2e} bits")
    assert max(errors) < 1e-4


def test_classic_ba_nonuniform_binary_source():
    """Bernoulli(0.2) source, Hamming distortion: R(D) = h(0.2) - h(D) for D <= 0.2. Unlike the
    uniform case the reconstruction marginal is not uniform, so this exercises the iteration."""
    p = 0.2
    errors = []
    for s in (2.0, 3.0, 5.0, 8.0):
        point = blahut_arimoto([1.0 - p, p], hamming(2), s)
        assert point.converged and point.iterations > 2
        assert point.d_r < p
        assert point.d_t == pytest.approx(0.0, abs=1e-12)  # a single task label carries nothing
        # at slope -s the optimal distortion is D = 1 / (1 + e^s)
        assert point.d_r == pytest.approx(1.0 / (1.0 + math.exp(s)), abs=1e-9)
        errors.append(abs(point.rate - (h2(p) - h2(point.d_r))))
    print(f"Bernoulli(0.2): max |BA rate - (h(p) - h(D))| = {max(errors):.2e} bits")
    assert max(errors) < 1e-8


def test_rate_falls_and_distortion_rises_with_lam(toy_curves):
    curve = toy_curves[0.0]
    assert curve.converged.all()
    assert np.all(np.diff(curve.rate) < 0.0)
    assert np.all(np.diff(curve.d_r) > 0.0)
    assert curve.rate[0] <= 3.0 + 1e-12 and curve.rate[-1] >= 0.0


def test_task_distortion_is_lost_task_information(toy_curves):
    """D_T = I(X;Y) - I(X_hat;Y) = E[KL(p(y|X) || p(y|X_hat))], within [0, I(X;Y)] (data processing).
    p(y|x_hat) is recomputed here by Bayes from the returned test channel."""
    p_x, p_yx, d_r = toy_source()
    i_xy = mutual_information(p_x, p_yx)
    for beta in TOY_BETAS:
        for lam in TOY_LAMS[::3]:
            point = extended_blahut_arimoto(p_x, p_yx, d_r, lam, beta)
            joint = p_x[:, None] * point.p_xhat_given_x
            q = joint.sum(axis=0)
            p_y_xhat = (joint.T @ p_yx) / q[:, None]
            kl = np.sum(p_yx[:, None, :] * np.log2(p_yx[:, None, :] / p_y_xhat[None, :, :]), axis=2)
            assert point.d_t == pytest.approx(float(np.sum(joint * kl)), abs=1e-10)
            assert -1e-12 <= point.d_t <= i_xy + 1e-12
            assert mutual_information(q, p_y_xhat) <= i_xy + 1e-12
    for curve in toy_curves.values():
        assert np.all(curve.d_t >= -1e-12) and np.all(curve.d_t <= i_xy + 1e-12)


def test_extended_fixed_point_equations():
    """The returned channel satisfies p(x_hat|x) ∝ p(x_hat) exp(-d_S / lam) with d_S built from
    its own p(x_hat) and p(y|x_hat)."""
    p_x, p_yx, d_r = toy_source()
    lam, beta = 0.3, 2.0
    point = extended_blahut_arimoto(p_x, p_yx, d_r, lam, beta)
    assert point.converged
    joint = p_x[:, None] * point.p_xhat_given_x
    q = joint.sum(axis=0)
    np.testing.assert_allclose(q, point.p_xhat, atol=1e-14)
    p_y_xhat = (joint.T @ p_yx) / q[:, None]
    kl = np.sum(p_yx[:, None, :] * np.log(p_yx[:, None, :] / p_y_xhat[None, :, :]), axis=2)
    target = q[None, :] * np.exp(-(d_r + beta * kl) / lam)
    target /= target.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(point.p_xhat_given_x, target, atol=1e-9)


def test_larger_beta_keeps_more_task_information(toy_curves):
    """At equal rate, the beta > 0 curve loses less task information than pixel-only coding."""
    common = np.array([0.5, 1.0, 1.5, 2.0])
    d_t = {}
    for beta, curve in toy_curves.items():
        order = np.argsort(curve.rate)
        d_t[beta] = np.interp(common, curve.rate[order], curve.d_t[order])
    print("D_T at rates", common.tolist(), "bits:", {b: np.round(v, 4).tolist() for b, v in d_t.items()})
    assert np.all(d_t[2.0] < d_t[0.0] - 0.1)


def test_degenerate_inputs():
    # an unreachable task label for some x_hat (zeros in p(y|x_hat)) stays finite
    p_x = np.array([0.5, 0.5, 0.0])
    p_yx = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    point = extended_blahut_arimoto(p_x, p_yx, hamming(3), 0.5, beta=3.0)
    assert np.isfinite([point.rate, point.d_r, point.d_t]).all()
    assert np.all(np.isfinite(point.p_xhat_given_x))
    with pytest.raises(ValueError, match="lam"):
        extended_blahut_arimoto(p_x, p_yx, hamming(3), 0.0)
    with pytest.raises(ValueError, match="beta"):
        extended_blahut_arimoto(p_x, p_yx, hamming(3), 1.0, beta=-1.0)
    with pytest.raises(ValueError, match="p_x"):
        extended_blahut_arimoto([0.5, 0.6, 0.0], p_yx, hamming(3), 1.0)
    with pytest.raises(ValueError, match="d_r"):
        extended_blahut_arimoto(p_x, p_yx, hamming(2), 1.0)


def test_rd_toy_command_draws_the_surface(tmp_path):
    from typer.testing import CliRunner

    from simlink.cli import app
    from simlink.theory.toy import rd_surface

    s = rd_surface([0.0, 2.0], [0.3, 1.0, 3.0])
    assert s["rate"].shape == (2, 3) and np.all(s["d_t"] >= -1e-12)
    assert np.all(np.diff(s["rate"], axis=1) < 0)  # larger lam, lower rate
    r = CliRunner().invoke(app, ["rd-toy", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    for name in ("rd_surface", "rd_curves"):
        for ext in ("pdf", "png"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 1000
