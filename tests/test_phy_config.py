"""simlink.phy: configuration validation, channel entries and SNR bookkeeping (no decoding)."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from simlink.phy import CHANNELS, AWGNChannel, ChannelConfig, CodeConfig, LinkConfig, RayleighBlockChannel
from simlink.errors import ScenarioError
from simlink.phy.channels import Channel, register_channel
from simlink.scenario import parse_scenario
from conftest import REPO
from simlink.phy.snr import (
    ebno_db,
    esno_db_from_ebno,
    esno_db_to_no,
    nominal_ebno_db,
    nominal_spectral_efficiency,
)


def _error(**kwargs) -> str:
    with pytest.raises(ValidationError) as e:
        LinkConfig(**kwargs)
    return str(e.value)


def test_defaults():
    cfg = LinkConfig()
    assert (cfg.code.k, cfg.code.n, cfg.code.num_iter, cfg.modulation, cfg.crc) == (1024, 1536, 20, 16, "24A")
    assert cfg.code.early_stop and cfg.code.cn_update == "boxplus-phi"
    assert cfg.bits_per_symbol == 4 and cfg.crc_length == 24 and cfg.payload_bits_per_block == 1000
    assert cfg.symbols_per_codeword == 384


def test_modulation_error_names_allowed_values():
    assert "12 is not one of 4, 16, 64, 256" in _error(modulation=12)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"code": {"k": 1536, "n": 1024}}, ["link.code.k", "link.code.n"]),
        ({"code": {"k": 100, "n": 1000}}, ["link.code.k=100", "link.code.n=1000", "5G"]),
        ({"code": {"k": 9000, "n": 9600}}, ["link.code.k=9000", "5G"]),
        ({"code": {"k": 1000, "n": 1530}}, ["link.code.n=1530", "divisible", "4"]),
        ({"code": {"k": 20, "n": 48}}, ["link.code.k=20", "CRC length 24"]),
        ({"code": {"name": "turbo"}}, ["ldpc5g"]),
        ({"code": {"cn_update": "sum"}}, ["boxplus-phi", "minsum"]),
        ({"crc": "32"}, ["24A", "6"]),
        ({"foo": 1}, ["foo"]),
    ],
)
def test_invalid_link_configs(kwargs, words):
    msg = _error(**kwargs)
    for w in words:
        assert w in msg, msg


def test_valid_variants():
    LinkConfig(code=CodeConfig(k=64, n=96), modulation=4, crc=None)
    LinkConfig(code=CodeConfig(k=8448, n=9216), modulation=256, crc="16")
    LinkConfig(code=CodeConfig(k=40, n=72), modulation=64, crc="6")


def test_channel_configs_and_labels():
    ta = TypeAdapter(ChannelConfig)
    assert isinstance(ta.validate_python({"name": "awgn"}), AWGNChannel)
    blk = ta.validate_python({"name": "rayleigh_block"})
    assert isinstance(blk, RayleighBlockChannel) and blk.granularity == "block"
    assert ta.validate_python({"name": "rayleigh_block", "granularity": "image"}).label == "rayleigh_block(image)"
    assert blk.label == "rayleigh_block(block)"
    assert ta.validate_python({"name": "rayleigh_fast"}).label == "rayleigh_fast"
    for bad in ({"name": "rician"}, {"name": "awgn", "k": 3}, {"name": "rayleigh_block", "granularity": "frame"}):
        with pytest.raises(ValidationError):
            ta.validate_python(bad)
    assert {"awgn", "rayleigh_block", "rayleigh_fast"} <= set(CHANNELS)
    assert all(isinstance(c.description, str) and c.description for c in CHANNELS.values())


class _ConstantGain(Channel):
    """A test channel: every symbol scaled by a fixed real gain (defined here only)."""

    description: ClassVar[str] = "test: constant gain"
    name: Literal["test_constant_gain"] = "test_constant_gain"
    gain: float = 0.5

    @property
    def label(self) -> str:
        return f"gain({self.gain:g})"

    def fading(self, rows, row_len, row_image, num_images, device):
        import torch

        return torch.full((rows, row_len), self.gain, dtype=torch.complex64, device=device)


register_channel(_ConstantGain)


def test_a_new_channel_is_one_class(tiny_scenario_dict):
    """Registering one Channel subclass makes it a scenario entry, a label and a simulated channel
    of both links; registering its name again is an error."""
    import torch

    from simlink.phy.analog import AnalogLink
    from simlink.registry import DuplicateName

    with pytest.raises(DuplicateName):
        register_channel(_ConstantGain)
    tiny_scenario_dict["channels"] = [{"name": "test_constant_gain", "gain": 0.25}, {"name": "awgn"}]
    sc = parse_scenario(tiny_scenario_dict)
    assert sc.channel_labels() == ["gain(0.25)", "awgn"]
    assert sc.to_yaml_dict()["channels"][0] == {"name": "test_constant_gain", "gain": 0.25}
    tiny_scenario_dict["channels"] = [{"name": "test_constant_gain", "gain": "high"}]
    with pytest.raises(ScenarioError, match=r"channels\.0\.gain"):
        parse_scenario(tiny_scenario_dict)
    # analog link: y = g x + w, equalised y / g has noise variance N0 / g^2 = 16 N0
    x = torch.ones(2000, 1, 8, dtype=torch.complex64)
    rx = AnalogLink("cpu").transmit(x, sc.channels[0], 10.0, seed=1)
    resid = (rx.symbols - x).abs().square().mean().item()
    assert resid == pytest.approx(0.1 / 0.25**2, rel=0.05)
    assert float(rx.noise_var.mean()) == pytest.approx(0.1 / 0.25**2, rel=1e-5)


def test_ebno_bookkeeping_by_hand():
    # Es/N0 = 10 dB, 8000 payload bits over 3072 complex symbols:
    # 10 * log10(8000 / 3072) = 10 * log10(2.6041667) = 4.156687 dB  ->  Eb/N0 = 5.843313 dB
    assert ebno_db(10.0, 8000, 3072) == pytest.approx(5.843313, abs=1e-6)
    assert esno_db_from_ebno(5.843313, 8000, 3072) == pytest.approx(10.0, abs=1e-6)
    # one bit per channel use: Eb/N0 == Es/N0; two bits: 3.0103 dB less
    assert ebno_db(7.0, 100, 100) == pytest.approx(7.0)
    assert ebno_db(7.0, 200, 100) == pytest.approx(7.0 - 3.0103, abs=1e-4)
    np.testing.assert_allclose(ebno_db(np.array([0.0, 10.0]), 2, 1), [-3.0103, 6.9897], atol=1e-4)
    assert esno_db_to_no(10.0) == pytest.approx(0.1) and esno_db_to_no(0.0) == 1.0


def test_nominal_values():
    cfg = LinkConfig()  # 16-QAM, k=1024, n=1536, CRC24A -> 4 * 1000 / 1536 payload bits per symbol
    assert nominal_spectral_efficiency(cfg) == pytest.approx(4 * 1000 / 1536)
    assert nominal_spectral_efficiency(cfg, include_crc=True) == pytest.approx(4 * 1024 / 1536)
    assert nominal_ebno_db(10.0, cfg) == pytest.approx(10.0 - 10 * math.log10(4000 / 1536))


def _sionna_verdict(k: int, n: int):
    """``(valid, parameters)`` by building Sionna's encoder (the reference)."""
    import warnings

    from sionna.phy.fec.ldpc import LDPC5GEncoder

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = LDPC5GEncoder(k, n, device="cpu")
    except ValueError:
        return False, None
    params = {"z": enc.z, "k_ldpc": enc.k_ldpc, "n_ldpc": enc.n_ldpc, "n_cb_comp": enc.n_cb_comp}
    return n <= enc.n_cb_comp, params


def _grid():
    rng = np.random.default_rng(0)
    edges = [(292, 600), (293, 600), (3824, 5700), (3825, 5700), (3840, 15360), (3841, 15400), (640, 1000),
             (641, 1000), (560, 900), (561, 900), (192, 400), (193, 400), (12, 60), (11, 40), (8448, 8900),
             (8449, 9000), (1000, 5000), (1000, 5001), (1000, 1052), (1000, 1053), (2000, 2999), (2000, 6001),
             (4000, 11999), (4000, 12001), (100, 101), (512, 768), (512, 1536), (1024, 1536), (8448, 25344)]
    ks = rng.integers(12, 8449, 70)
    rates = rng.uniform(0.15, 0.97, 70)
    return edges + [(int(k), max(int(k) + 1, int(round(k / r)))) for k, r in zip(ks, rates)]


def test_5g_ldpc_rules_agree_with_sionna():
    """The plain-Python TS 38.212 rules (base graph, lifting size, rate limits, circular buffer)
    decide validity and parameters exactly as Sionna's encoder on a grid of (k, n)."""
    from simlink.phy.config import ldpc5g_parameters, ldpc5g_problem

    disagree = []
    for k, n in _grid():
        valid, params = _sionna_verdict(k, n)
        ours = ldpc5g_problem(k, n) is None
        if ours != valid:
            disagree.append((k, n, valid, ldpc5g_problem(k, n)))
        if params is not None:
            mine = ldpc5g_parameters(k, n)
            if {key: mine[key] for key in params} != params:
                disagree.append((k, n, params, mine))
    assert not disagree, disagree
    verdicts = [ldpc5g_problem(k, n) is None for k, n in _grid()]
    assert 10 < sum(verdicts) < len(verdicts) - 10  # the grid has both kinds


def test_validate_imports_neither_torch_nor_sionna(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from simlink.cli import app; "
            "r = CliRunner().invoke(app, ['validate', 'scenarios/quickstart.yaml']); "
            "print(r.exit_code, 'torch' in sys.modules, 'sionna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.split()[-3:] == ["0", "False", "False"], out.stdout + out.stderr
