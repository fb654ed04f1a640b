"""Entropy layers and range coding checked against theory (scipy / numpy / information theory)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import norm

from simlink.entropy import (
    GDN,
    LIKELIHOOD_BOUND,
    SCALE_BOUND,
    FactorizedPrior,
    GaussianConditional,
    GaussianMixtureConditional,
    add_noise,
    decode_factorized,
    decode_gaussian,
    decode_mixture,
    encode_factorized,
    encode_gaussian,
    encode_mixture,
    gaussian_support,
)
from simlink.errors import DecodeError

PEDESTAL = 2.0**-36


def _scipy_bin(k, mu, s):
    return norm.cdf(k + 0.5, loc=mu, scale=s) - norm.cdf(k - 0.5, loc=mu, scale=s)


def _as4d(x):
    return torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(1, 1, 1, -1)


# ----------------------------------------------------------------------------- Gaussian / mixture


@pytest.mark.parametrize("mu", [0.0, 0.3, -4.7, 12.25])
@pytest.mark.parametrize("sigma", [0.05, 0.5, 1.3, 7.0, 20.0])
def test_discretised_gaussian_sums_to_one_and_matches_scipy(mu, sigma):
    s_eff = max(sigma, SCALE_BOUND)
    k = np.arange(np.floor(mu - 10 * s_eff) - 3, np.ceil(mu + 10 * s_eff) + 4)
    gc = GaussianConditional()
    p = gc.likelihood(_as4d(k), _as4d(np.full(k.shape, mu)), _as4d(np.full(k.shape, sigma)))
    p = p.numpy().ravel()
    assert abs(p.sum() - 1.0) < 1e-6
    ref = np.maximum(_scipy_bin(k, mu, s_eff), LIKELIHOOD_BOUND)
    np.testing.assert_allclose(p, ref, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_discretised_mixture_sums_to_one_and_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    m = 3
    logits = rng.normal(size=m) * 2
    mus = rng.uniform(-15, 15, size=m)
    sig = rng.uniform(0.2, 6.0, size=m)
    k = np.arange(-90, 91, dtype=np.float64)
    gmm = GaussianMixtureConditional(m)

    def p5(v):  # [M] -> [1, 1, M, 1, K]
        return torch.as_tensor(np.repeat(v[:, None], k.size, axis=1)).reshape(1, 1, m, 1, -1)

    p = gmm.likelihood(_as4d(k), p5(logits), p5(mus), p5(sig)).numpy().ravel()
    assert abs(p.sum() - 1.0) < 1e-6
    w = softmax(logits)
    ref = sum(w[i] * _scipy_bin(k, mus[i], sig[i]) for i in range(m))
    np.testing.assert_allclose(p, np.maximum(ref, LIKELIHOOD_BOUND), rtol=1e-6, atol=1e-12)


def test_mixture_with_one_component_equals_gaussian():
    y = torch.randn(2, 3, 4, 5, dtype=torch.float64) * 3
    mu = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    s = torch.rand(2, 3, 4, 5, dtype=torch.float64) * 4
    p1 = GaussianConditional()(y, mu, s)
    p2 = GaussianMixtureConditional(1)(y, torch.zeros(2, 3, 1, 4, 5, dtype=torch.float64),
                                       mu.unsqueeze(2), s.unsqueeze(2))
    torch.testing.assert_close(p1, p2)


def test_add_noise_is_uniform_half():
    torch.manual_seed(0)
    y = torch.zeros(200_000)
    n = add_noise(y)
    assert n.min() >= -0.5 and n.max() <= 0.5
    assert abs(n.mean().item()) < 5e-3
    assert abs(n.var().item() - 1 / 12) < 2e-3


# ----------------------------------------------------------------------------- factorized prior


def _random_prior(channels=4, seed=0):
    torch.manual_seed(seed)
    prior = FactorizedPrior(channels).double()
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return prior


def test_factorized_likelihood_sums_to_one_and_cdf_monotone():
    prior = _random_prior()
    k = torch.arange(-600, 601, dtype=torch.float64)
    y = k.view(1, 1, 1, -1).expand(1, prior.channels, 1, -1).contiguous()
    p = prior.likelihood(y)[0, :, 0, :]  # [C, K]
    np.testing.assert_allclose(p.sum(dim=1).detach().numpy(), 1.0, atol=1e-5)
    grid = torch.linspace(-300, 300, 20001, dtype=torch.float64).expand(prior.channels, -1)
    c = prior.cdf(grid).detach()
    assert torch.all(c[:, 1:] >= c[:, :-1])
    assert torch.all(c[:, 0] < 1e-3) and torch.all(c[:, -1] > 1 - 1e-3)


def test_factorized_pmf_tables_normalised_and_consistent():
    prior = _random_prior()
    t = prior.pmf_tables()
    np.testing.assert_allclose(t.pmfs.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(t.lengths >= 1) and np.all(t.lengths <= 512)
    for c in range(prior.channels):
        n = int(t.lengths[c])
        sym = torch.arange(t.offsets[c], t.offsets[c] + n, dtype=torch.float64)
        y = torch.zeros(1, prior.channels, 1, n, dtype=torch.float64)
        y[0, c, 0] = sym
        lik = prior.likelihood(y)[0, c, 0].detach().numpy()
        # interior bins are exactly the likelihoods; edge bins only add < 1e-8 of tail
        np.testing.assert_allclose(np.maximum(t.pmfs[c, 1:n - 1], LIKELIHOOD_BOUND), lik[1:n - 1],
                                   rtol=1e-9, atol=1e-12)
        assert t.pmfs[c, 0] - lik[0] < 1e-8 and t.pmfs[c, n - 1] - lik[n - 1] < 1e-8


def test_factorized_max_width_cap():
    prior = FactorizedPrior(2, init_scale=5000.0).double()
    t = prior.pmf_tables(max_width=64)
    assert np.all(t.lengths <= 64)
    np.testing.assert_allclose(t.pmfs.sum(axis=1), 1.0, atol=1e-12)


# ----------------------------------------------------------------------------- GDN


def _gdn_numpy(x, beta, gamma, inverse):
    norm_ = np.sqrt(beta[None, :, None, None] + np.einsum("ij,bjhw->bihw", gamma, x**2))
    return x * norm_ if inverse else x / norm_


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_matches_numpy_formula(inverse):
    torch.manual_seed(3)
    c = 5
    gdn = GDN(c, inverse=inverse).double()
    with torch.no_grad():
        gdn.beta_param.copy_(torch.rand(c, dtype=torch.float64) * 2 - 0.5)  # some below bound
        gdn.gamma_param.copy_(torch.rand(c, c, dtype=torch.float64) * 2 - 1.0)
    bp, gp = gdn.beta_param.detach().numpy(), gdn.gamma_param.detach().numpy()
    beta = np.maximum(bp, np.sqrt(1e-6 + PEDESTAL)) ** 2 - PEDESTAL
    gamma = np.maximum(gp, np.sqrt(PEDESTAL)) ** 2 - PEDESTAL
    x = torch.randn(2, c, 6, 7, dtype=torch.float64) * 3
    y = gdn(x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y.detach().numpy(), _gdn_numpy(x.numpy(), beta, gamma, inverse),
                               rtol=1e-10, atol=1e-12)


def test_gdn_parameters_stay_nonnegative_under_adversarial_training():
    torch.manual_seed(0)
    gdn = GDN(4)
    opt = torch.optim.SGD(gdn.parameters(), lr=10.0)
    x = torch.randn(2, 4, 8, 8)
    for _ in range(20):
        opt.zero_grad()
        # gradients push beta and gamma hard towards -infinity
        loss = 1e3 * (gdn.beta.sum() + gdn.gamma.sum()) + gdn(x).sum()
        loss.backward()
        opt.step()
    assert torch.all(gdn.beta >= 1e-6 * (1 - 1e-4))
    assert torch.all(gdn.gamma >= 0)
    assert torch.all(torch.isfinite(gdn(x)))


def test_gdn_lower_bound_lets_params_recover():
    gdn = GDN(2)
    with torch.no_grad():
        gdn.beta_param.fill_(-5.0)
    gdn.beta.sum().neg().backward()  # wants beta to grow
    assert torch.all(gdn.beta_param.grad < 0)  # gradient descent would move the param up


# ----------------------------------------------------------------------------- coding


def _gauss_case(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-20, 20, n)
    s = np.exp(rng.uniform(np.log(0.05), np.log(30), n))
    s_eff = np.maximum(s, SCALE_BOUND)
    sym = np.round(mu + s_eff * rng.standard_normal(n)).astype(np.int32)
    ideal = -np.sum(np.log2(_scipy_bin(sym, mu, s_eff)))
    return sym, mu, s, ideal


def _mix_case(n=3000, m=3, seed=0):
    rng = np.random.default_rng(seed)
    w = softmax(rng.normal(size=(n, m)) * 2, axis=1)
    mu = rng.uniform(-20, 20, (n, m))
    s = np.exp(rng.uniform(np.log(0.2), np.log(10), (n, m)))
    comp = np.array([rng.choice(m, p=row) for row in w])
    sym = np.round(mu[np.arange(n), comp] + s[np.arange(n), comp] * rng.standard_normal(n))
    sym = sym.astype(np.int32)
    p = sum(w[:, i] * _scipy_bin(sym, mu[:, i], s[:, i]) for i in range(m))
    return sym, w, mu, s, -np.sum(np.log2(p))


def _fact_case(shape=(1, 4, 25, 30), seed=0):
    prior = _random_prior(shape[1], seed)
    t = prior.pmf_tables()
    rng = np.random.default_rng(seed)
    b, c, h, w = shape
    sym = np.zeros(shape, dtype=np.int32)
    for ch in range(c):
        n = int(t.lengths[ch])
        sym[:, ch] = t.offsets[ch] + rng.choice(n, size=(b, h, w), p=t.pmfs[ch, :n])
    lik = prior.likelihood(torch.as_tensor(sym, dtype=torch.float64)).detach().numpy()
    return sym, t, -np.sum(np.log2(lik))


def _check_size(data, ideal, label):
    bits = 8 * len(data)
    print(f"{label}: coded {bits} bits, ideal {ideal:.1f} bits, ratio {bits / ideal:.4f}")
    assert abs(bits - ideal) <= 0.01 * ideal + 64


def test_gaussian_roundtrip_and_size():
    sym, mu, s, ideal = _gauss_case()
    data = encode_gaussian(sym, mu, s)
    out = decode_gaussian(data, mu, s)
    assert out.dtype == np.int32 and np.array_equal(out, sym)
    _check_size(data, ideal, "gaussian")


def test_mixture_roundtrip_and_size():
    sym, w, mu, s, ideal = _mix_case()
    data = encode_mixture(sym, w, mu, s)
    out = decode_mixture(data, w, mu, s)
    assert out.dtype == np.int32 and np.array_equal(out, sym)
    _check_size(data, ideal, "mixture")


def test_factorized_roundtrip_and_size():
    sym, t, ideal = _fact_case()
    data = encode_factorized(sym, t)
    out = decode_factorized(data, t, sym.shape)
    assert out.dtype == np.int32 and np.array_equal(out, sym)
    _check_size(data, ideal, "factorized")


def test_out_of_support_symbols_are_clamped():
    prior = _random_prior(2)
    t = prior.pmf_tables()
    sym = np.zeros((1, 2, 1, 3), dtype=np.int32)
    sym[0, :, 0, 0] = -100_000
    sym[0, :, 0, 2] = 100_000
    out = decode_factorized(encode_factorized(sym, t), t, sym.shape)
    hi = t.offsets + t.lengths - 1
    expected = np.clip(sym, t.offsets[None, :, None, None], hi[None, :, None, None])
    assert np.array_equal(out, expected)
    mu, s = np.array([0.0, 1.0]), np.array([1.0, 2.0])
    lo, hi_g = gaussian_support(mu, s)
    g = decode_gaussian(encode_gaussian(np.array([-10**6, 10**6]), mu, s), mu, s)
    assert g.tolist() == [lo, hi_g]


def test_empty_inputs():
    assert decode_gaussian(encode_gaussian(np.zeros(0, np.int32), [], []), [], []).size == 0


def _corruptions(data, rng):
    yield b""
    yield data[:3]
    yield data[: len(data) // 2]
    yield data[:-1]
    for _ in range(6):
        buf = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            buf[rng.integers(len(buf))] ^= int(rng.integers(1, 256))
        yield bytes(buf)
    yield bytes(rng.integers(0, 256, len(data), dtype=np.uint8))


def _robust(decode, data, n, rng):
    for bad in _corruptions(data, rng):
        try:
            out = decode(bad)
        except DecodeError:
            continue
        assert out.dtype == np.int32 and out.size == n


def test_corrupted_streams_never_crash():
    rng = np.random.default_rng(7)
    sym, mu, s, _ = _gauss_case(200, seed=1)
    _robust(lambda d: decode_gaussian(d, mu, s), encode_gaussian(sym, mu, s), 200, rng)
    sym, w, mu, s, _ = _mix_case(200, seed=1)
    _robust(lambda d: decode_mixture(d, w, mu, s), encode_mixture(sym, w, mu, s), 200, rng)
    sym, t, _ = _fact_case((1, 2, 10, 10), seed=1)
    _robust(lambda d: decode_factorized(d, t, sym.shape), encode_factorized(sym, t), 200, rng)


def test_decode_error_is_raised_for_invalid_stream():
    mu, s = np.zeros(50), np.ones(50)
    with pytest.raises(DecodeError):
        decode_gaussian(b"\xff" * 8, mu, s)


def test_one_stream_holds_several_parts_in_order():
    from simlink.entropy import SymbolReader, SymbolWriter

    fs, t, f_ideal = _fact_case(shape=(1, 3, 4, 5), seed=2)
    gs, gmu, gs_s, g_ideal = _gauss_case(n=500, seed=3)
    ms, mw, mmu, msc, m_ideal = _mix_case(n=400, seed=4)
    w = SymbolWriter()
    w.factorized(fs, t)
    w.gaussian(gs, gmu, gs_s)
    w.mixture(ms, mw, mmu, msc)
    data = w.to_bytes()
    r = SymbolReader(data)
    assert np.array_equal(r.factorized(t, fs.shape), fs)
    assert np.array_equal(r.gaussian(gmu, gs_s), gs)
    assert np.array_equal(r.mixture(mw, mmu, msc), ms)
    # one coder flush for all three parts: no more than the separate streams, close to the ideal
    separate = len(encode_factorized(fs, t)) + len(encode_gaussian(gs, gmu, gs_s)) + len(encode_mixture(ms, mw, mmu, msc))
    assert len(data) <= separate
    _check_size(data, f_ideal + g_ideal + m_ideal, "three parts")


def test_trailing_zero_bytes_are_dropped_and_restored():
    rng = np.random.default_rng(0)
    stripped = 0
    for trial in range(300):
        n = int(rng.integers(1, 40))
        sym = rng.integers(-3, 4, n).astype(np.int32)
        mu, s = rng.normal(0, 1, n), rng.uniform(0.2, 3, n)
        data = encode_gaussian(sym, mu, s)
        assert not data.endswith(b"\x00")
        stripped += len(data) % 4 != 0
        assert np.array_equal(decode_gaussian(data, mu, s), sym), trial
    assert stripped > 0  # the case actually occurs


# ----------------------------------------------------------------------------- fast mixture coder


def _mixture_ideal_bits(sym, w, mu, s):
    """-log2 p of every symbol under the unquantised mixture (scipy, independent of the coder)."""
    s = np.maximum(s, SCALE_BOUND)
    w = w / w.sum(axis=1, keepdims=True)
    p = (w * (norm.cdf(sym[:, None] + 0.5, mu, s) - norm.cdf(sym[:, None] - 0.5, mu, s))).sum(axis=1)
    return -np.log2(p)


def test_mixture_roundtrip_exact_over_random_and_extreme_parameters():
    rng = np.random.default_rng(11)
    for trial in range(40):
        n, m = int(rng.integers(1, 300)), int(rng.integers(1, 4))
        w = rng.random((n, m)) ** 3 + (trial % 2) * 1e-300
        w[rng.random(n) < 0.1, 0] = 0.0
        w[:, -1] += 1e-12
        mu = rng.normal(0, 10.0 ** rng.uniform(-1, 6), (n, m))
        s = 10.0 ** rng.uniform(-3, 3.5, (n, m))  # below the 0.11 bound, and beyond the table's top
        sym = np.round(mu[:, 0] + rng.standard_normal(n) * np.maximum(s[:, 0], SCALE_BOUND))
        far = rng.random(n) < 0.2  # symbols far in the tails, up to the int32 limits
        sym[far] = rng.choice([-1, 1], far.sum()) * rng.integers(0, 2**31 - 1, far.sum())
        sym = np.clip(sym, -2**31, 2**31 - 1).astype(np.int64)
        data = encode_mixture(sym, w, mu, s)
        out = decode_mixture(data, w, mu, s)
        assert out.dtype == np.int32 and np.array_equal(out, sym), trial


def test_mixture_bits_do_not_depend_on_dtype_or_memory_layout():
    rng = np.random.default_rng(5)
    c, h, wd, k = 8, 6, 5, 3
    w = softmax(rng.normal(size=(c, h, wd, k)), axis=-1).astype(np.float32)
    mu = (rng.normal(size=(c, h, wd, k)) * 4).astype(np.float32)
    s = np.exp(rng.normal(size=(c, h, wd, k))).astype(np.float32)
    sym = np.round(mu[..., 0]).astype(np.int32).reshape(-1)
    ref = encode_mixture(sym, w.reshape(-1, k), mu.reshape(-1, k), s.reshape(-1, k))

    def channels_last(x):  # same values, [N, K] view of a (h, w, c, k)-ordered buffer
        return np.ascontiguousarray(x.transpose(1, 2, 0, 3)).transpose(2, 0, 1, 3).reshape(-1, k)

    def fortran(x):
        return np.asfortranarray(x.reshape(-1, k).astype(np.float64))

    for f in (channels_last, fortran, lambda x: x.reshape(-1, k).astype(np.float64)):
        assert encode_mixture(sym, f(w), f(mu), f(s)) == ref
        assert np.array_equal(decode_mixture(ref, f(w), f(mu), f(s)), sym)
    # a batch of images built in one pass gives the same bits as image by image
    from simlink.entropy import SymbolWriter, mixture_models

    models = mixture_models(np.concatenate([w.reshape(-1, k)] * 3), np.concatenate([mu.reshape(-1, k)] * 3),
                            np.concatenate([s.reshape(-1, k)] * 3), counts=[sym.size] * 3)
    for model in models:
        wr = SymbolWriter()
        wr.mixture_model(sym, model)
        assert wr.to_bytes() == ref


def test_mixture_compiled_and_numpy_paths_agree_bit_for_bit():
    """The numba layout kernel (snapping, supports, wide windows, grouping) and row kernel give
    exactly the numpy reference's integers and PMF bits, on scales across the whole grid (and
    beyond it), wide mixtures and several images."""
    import dataclasses

    from simlink.entropy import coder

    rng = np.random.default_rng(2)
    n, k = 1500, 3
    w = softmax(rng.normal(size=(n, k)), axis=1)
    mu = rng.normal(0, 50, (n, k))
    mu[:20, 0] += 40000.0  # components far apart: a MAX_ROW window around the heaviest
    s = np.maximum(10.0 ** rng.uniform(-2, 3.2, (n, k)), SCALE_BOUND)
    s[20:40] = coder.cdf_table().edges[rng.integers(0, coder.cdf_table().edges.size, (20, k))]  # on cell edges
    bounds = np.array([0, 700, 700, 1500])
    lays = [coder._layout(w, mu, s, bounds, use_numba=u) for u in (False, None)]
    for f in dataclasses.fields(lays[0]):
        assert np.array_equal(getattr(lays[0], f.name), getattr(lays[1], f.name)), f.name
    lay = lays[0]
    assert (lay.row == coder.MAX_ROW).sum() >= 20
    rows = [coder._rows_flat(lay.order, lay.dest, lay.width, lay.lo, lay.base, lay.half, lay.start, w,
                             coder.cdf_table().values, int(lay.group_off[-1]), use_numba=u) for u in (False, None)]
    assert rows[0].tobytes() == rows[1].tobytes()


def test_mixture_rate_close_to_ideal():
    rng = np.random.default_rng(3)
    n, k = 20000, 2
    w = softmax(rng.normal(size=(n, k)), axis=1)
    mu = rng.normal(0, 3, (n, k))
    s = np.exp(rng.uniform(np.log(0.08), np.log(20), (n, k)))
    comp = (rng.random(n)[:, None] > np.cumsum(w, axis=1)).sum(axis=1).clip(0, k - 1)
    pick = np.arange(n), comp
    sym = np.round(mu[pick] + np.maximum(s[pick], SCALE_BOUND) * rng.standard_normal(n)).astype(np.int32)
    ideal = _mixture_ideal_bits(sym, w, mu, s).sum()
    bits = 8 * len(encode_mixture(sym, w, mu, s))
    print(f"mixture: coded {bits} bits, ideal {ideal:.1f}, ratio {bits / ideal:.5f}")
    assert ideal <= bits <= 1.004 * ideal + 64
