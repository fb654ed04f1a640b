"""The numba BP decoder (simlink.phy.ldpc_numba) against Sionna's LDPC5GDecoder on the same LLRs:
hard decisions and iteration counts across the waterfall; `link.decoder` selection and hashing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simlink.phy.ldpc import BPDecoder
from simlink.phy.ldpc_numba import NumbaBPDecoder


def _qam_llrs(k: int, n: int, m: int, esno_db: list[float], per_snr: int, seed: int = 0):
    """Random codewords through 16-QAM (or ``2**m``) and AWGN: ``(info bits [B, k], llr [B, n])``,
    LLRs from Sionna's APP demapper (``log p(1)/p(0)``)."""
    from sionna.phy.fec.ldpc import LDPC5GEncoder
    from sionna.phy.mapping import Demapper, Mapper

    g = torch.Generator().manual_seed(seed)
    enc = LDPC5GEncoder(k, n, num_bits_per_symbol=m)
    mapper, demapper = Mapper("qam", m), Demapper("app", "qam", m)
    bits, llrs = [], []
    for snr in esno_db:
        u = torch.randint(0, 2, (per_snr, k), generator=g).float()
        x = mapper(enc(u))
        no = 10 ** (-snr / 10)
        noise = torch.complex(torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)) * np.sqrt(no / 2)
        llrs.append(demapper(x + noise, torch.tensor(no)))
        bits.append(u)
    return enc, torch.cat(bits), torch.cat(llrs)


@pytest.mark.slow
def test_hard_decisions_equal_sionnas_across_the_waterfall():
    """2000 codewords (k=1024, n=1536, 16-QAM, 20 iterations, early stop) at Es/N0 below, in and
    above the waterfall: decisions and iterations equal Sionna's on >= 99.9 % of codewords."""
    enc, u, llr = _qam_llrs(1024, 1536, 4, [8.4, 8.9, 9.2, 9.5, 10.5], 400)
    ref_bits, ref_iters = BPDecoder(enc, 20, early_stop=True)(llr)
    bits, iters = NumbaBPDecoder(enc, 20, early_stop=True)(llr)
    fail = (ref_bits != u).any(dim=1)
    assert 0.2 < float(fail.float().mean()) < 0.8  # the grid spans the waterfall
    same = (bits == ref_bits).all(dim=1)
    assert float(same.float().mean()) >= 0.999, f"{int((~same).sum())} of {len(same)} codewords differ"
    assert float((iters == ref_iters).float().mean()) >= 0.999
    assert int(iters.min()) >= 1 and int(iters.max()) == 20


def test_full_iterations_match():
    enc, u, llr = _qam_llrs(1024, 1536, 4, [9.0, 9.4], 100, seed=1)
    ref, ref_iters = BPDecoder(enc, 20, early_stop=False)(llr)
    bits, iters = NumbaBPDecoder(enc, 20, early_stop=False)(llr)
    assert (iters == 20).all() and (ref_iters == 20).all()
    assert float((bits == ref).all(dim=1).float().mean()) >= 0.99


def test_quasi_cyclic_structure_rebuilds_sionnas_pruned_matrix():
    """The base edges, shifts and row masks give back exactly the matrix Sionna decodes on
    (pruned rows and columns cut through the last blocks), and a non-circulant block is refused."""
    import scipy.sparse as sp
    from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder

    from simlink.phy.ldpc_numba import qc_structure

    for k, n in [(1024, 1536), (500, 1000), (2000, 2502)]:
        enc = LDPC5GEncoder(k, n)
        h = sp.csr_matrix(LDPC5GDecoder(enc, num_iter=1).pcm)
        g = qc_structure(h, int(enc.z))
        z = g["z"]
        e, r = np.nonzero(g["valid"])
        rebuilt = sp.csr_matrix((np.ones(e.size), (g["row"][e] * z + r, g["col"][e] * z + (r + g["shift"][e]) % z)),
                                shape=h.shape)
        assert (rebuilt != h).nnz == 0, (k, n)
    bad = sp.csr_matrix(np.array([[1, 0, 0, 1], [1, 0, 0, 1]]))  # block (0, 0) has two rows in one column
    with pytest.raises(ValueError, match="not quasi-cyclic"):
        qc_structure(bad, 2)


@pytest.mark.parametrize("k,n,m", [(500, 1000, 2), (2000, 2502, 6), (100, 300, 2)])
def test_other_codes_filler_bits_and_base_graphs(k, n, m):
    """Shortening (filler bits), both base graphs and other interleavers: same decisions."""
    from simlink.phy.config import ldpc5g_parameters

    p = ldpc5g_parameters(k, n)
    snr = {2: 2.0, 6: 14.5}[m] if (k, n) != (100, 300) else -1.0
    enc, u, llr = _qam_llrs(k, n, m, [snr], 120, seed=2)
    ref, _ = BPDecoder(enc, 15, early_stop=True)(llr)
    bits, _ = NumbaBPDecoder(enc, 15, early_stop=True)(llr)
    assert float((bits == ref).all(dim=1).float().mean()) >= 0.99, p
    assert int(enc.k_ldpc) - k == p["k_ldpc"] - k


def test_noiseless_llrs_decode_in_one_iteration():
    enc, u, _ = _qam_llrs(1024, 1536, 4, [9.0], 8)
    c = enc(u)
    bits, iters = NumbaBPDecoder(enc, 20)(20.0 * (2 * c - 1))  # log p1/p0: +20 for a one
    assert torch.equal(bits, u) and (iters == 1).all()
    assert NumbaBPDecoder(enc, 20)(torch.zeros(0, 1536))[0].shape == (0, 1024)


def test_link_decoder_setting_resolves_validates_and_hashes(tiny_scenario_dict):
    from simlink.errors import ScenarioError
    from simlink.phy.config import LinkConfig
    from simlink.scenario import parse_scenario

    assert LinkConfig().resolved_decoder("cpu") == "numba"
    assert LinkConfig().resolved_decoder("cuda:0") == "sionna"
    assert LinkConfig(decoder="sionna").resolved_decoder("cpu") == "sionna"
    assert LinkConfig(code={"cn_update": "minsum"}).resolved_decoder("cpu") == "sionna"
    with pytest.raises(ValueError, match="numba implements cn_update boxplus-phi only"):
        LinkConfig(decoder="numba", code={"cn_update": "minsum"})
    with pytest.raises(ScenarioError, match="link.decoder"):
        parse_scenario({**tiny_scenario_dict, "link": {**tiny_scenario_dict.get("link", {}), "decoder": "fast"}})

    base = parse_scenario(tiny_scenario_dict)
    pinned = parse_scenario({**tiny_scenario_dict, "link": {**tiny_scenario_dict.get("link", {}), "decoder": "sionna"}})
    # Sionna (and no device) hash as before decoders could be chosen; numba is part of the context
    assert base.context_hash() == pinned.context_hash() == pinned.context_hash("cpu") == base.context_hash("cuda:0")
    assert base.context_hash("cpu") != base.context_hash()
    assert base.context_hash("cpu") in base.context_hashes_any_decoder()


def test_a_folder_decoded_by_sionna_does_not_resume_with_numba(tmp_path, tiny_scenario_dict):
    from simlink.errors import SimlinkError
    from simlink.scenario import parse_scenario
    from simlink.sweep import run_scenario

    d = {**tiny_scenario_dict, "snr_db": [30.0], "device": "cpu"}
    link = d.get("link", {})
    run_scenario(parse_scenario({**d, "link": {**link, "decoder": "sionna"}}), tmp_path / "out", quiet=True,
                 plots=False, cache_root=tmp_path / "cache")
    with pytest.raises(SimlinkError, match="decoded by Sionna.s LDPC decoder and this run would use the numba decoder"):
        run_scenario(parse_scenario({**d, "link": {**link, "decoder": "numba"}}), tmp_path / "out", quiet=True,
                     plots=False, cache_root=tmp_path / "cache")
    df = run_scenario(parse_scenario(d), tmp_path / "numba", quiet=True, plots=False, cache_root=tmp_path / "cache")
    import json

    assert json.loads((tmp_path / "numba" / "manifest.json").read_text())["ldpc_decoder"] == ["numba"]
    assert len(df) > 0


def test_simd_phi_is_within_4e_7_of_exact_over_sionnas_range():
    """The vectorised float32 phi against float64 numpy on a dense log grid (and beyond the
    clamp), and the self-inverse property phi(phi(x)) = x where float32 can hold it."""
    from simlink.phy.simd_phi import PHI_MAX, PHI_MIN, phi_array, phi_reference

    x = np.concatenate([np.geomspace(1e-9, 30.0, 400_001), np.linspace(0.0, 17.0, 100_001), [-1.0]]).astype(np.float32)
    out = np.empty_like(x)
    phi_array(x, out)
    ref = phi_reference(x)
    rel = np.abs(out.astype(np.float64) - ref) / ref
    assert rel.max() < 4e-7, (x[rel.argmax()], rel.max())
    assert out[x <= PHI_MIN].min() == out[x <= PHI_MIN].max()  # the clamp
    assert out[x >= PHI_MAX].min() == out[x >= PHI_MAX].max()
    mid = np.linspace(0.05, 8.0, 1001, dtype=np.float32)
    once, twice = np.empty_like(mid), np.empty_like(mid)
    phi_array(mid, once)
    phi_array(once, twice)
    np.testing.assert_allclose(twice, mid, rtol=2e-6)
