"""Payload parts with unequal error protection, erasure information and per-part error policy.

The part-level physics is checked against hand computations (bits, channel uses, erased bit
ranges) and against brute force (a per-bit model of which bits sit in failed blocks); the
unequal-protection claim against the channel itself (a rate-1/3 part survives where a rate-2/3
part of the same image, on the same fade, fails); the sweep through a scenario with a two-part
test method (``tests/plugins/layered_toy.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simlink.errors import ScenarioError
from simlink.methods.base import DigitalPayload, PayloadPart
from simlink.phy.channels import AWGNChannel, RayleighBlockChannel
from simlink.phy.code_blocks import failed_bit_ranges, plan_layout
from simlink.phy.config import LinkConfig
from simlink.phy.link import DigitalLink
from simlink.phy.parted import PartedLink
from simlink.plots import link_setting_rows, plot_bler_vs_snr
from simlink.scenario import parse_scenario
from simlink.sweep.runner import run_scenario

from conftest import REPO

PLUGIN = str(REPO / "tests" / "plugins" / "layered_toy.py")


def _link(parts: dict, **base) -> LinkConfig:
    return LinkConfig.model_validate({"code": {"k": 512, "n": 768, "num_iter": 10}, "modulation": 4, **base,
                                      "parts": parts})


def _streams(lengths, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in lengths]


# ---- configuration ----------------------------------------------------------------------------


def test_part_settings_inherit_key_by_key():
    link = _link({"labels": {"code": {"k": 512, "n": 1536}, "crc": None},
                  "features": {"modulation": 16}}, crc="16")
    labels, features, other = link.for_part("labels"), link.for_part("features"), link.for_part("weights")
    assert (labels.code.k, labels.code.n, labels.code.num_iter, labels.modulation, labels.crc) == (512, 1536, 10, 4, None)
    assert (features.code.k, features.code.n, features.modulation, features.crc) == (512, 768, 16, "16")
    assert other.transmitter_key == link.transmitter_key and other.parts == {}
    assert labels.transmitter_key != features.transmitter_key


@pytest.mark.parametrize("parts, expected", [
    ({"labels": {"code": {"k": 100, "n": 1000}}}, "link.parts.labels.code: link.parts.labels.code.k=100"),
    ({"labels": {"modulation": 12}}, "link.parts.labels.modulation: 12 is not one of 4, 16, 64, 256"),
    ({"labels": {"code": {"n": 766}, "modulation": 16}}, "link.parts.labels.code.n=766 is not divisible"),
    ({"labels": {"rate": 0.5}}, "link.parts.labels.rate: unknown key"),
    ({"Labels": {}}, "link.parts.Labels: 'Labels' is not a valid part name"),
    ({"ci": {}}, "link.parts.ci: 'ci' is reserved"),
    ({"stream": {"modulation": 4}}, "link.parts.stream: 'stream' is the one part of a payload without named parts"),
    ({"weights": {"modulation": 4}}, "link.parts.weights: no digital method of this scenario sends a part named "
                                     "'weights' (parts sent: base, detail)"),
])
def test_bad_part_settings_name_the_field(tiny_scenario_dict, parts, expected):
    d = dict(tiny_scenario_dict, plugins=[PLUGIN], methods=[{"name": "layered_toy"}])
    d["link"] = {**d["link"], "parts": parts}
    with pytest.raises(ScenarioError) as e:
        parse_scenario(d)
    assert expected in " ".join(str(e.value).split())


def test_part_names_are_checked_where_declared():
    with pytest.raises(ValueError, match="not a valid part name"):
        PayloadPart("Base")
    with pytest.raises(ValueError, match="either streams"):
        DigitalPayload([b"a"], parts={"a": [b"a"]})
    with pytest.raises(ValueError, match="one stream per image"):
        DigitalPayload(parts={"a": [b"a"], "b": []})
    with pytest.raises(ValueError, match="payload.parts"):
        _ = DigitalPayload(parts={"a": [b"a"], "b": [b""]}).streams


# ---- accounting -------------------------------------------------------------------------------


def test_bits_and_channel_uses_of_a_two_part_payload_with_padding():
    """Hand computation. ``labels``: k = 512, CRC24A -> P = 488 payload bits per block, n = 1536 at
    4-QAM -> 768 channel uses per codeword. ``features``: k = 1024, CRC16 -> P = 1008, n = 1536 at
    16-QAM -> 384 uses per codeword. The last block of a part is padded, and its uses count."""
    link = PartedLink(LinkConfig.model_validate({
        "code": {"k": 1024, "n": 1536}, "modulation": 16, "crc": "16",
        "parts": {"labels": {"code": {"k": 512, "n": 1536}, "modulation": 4, "crc": "24A"}}}))
    labels, features = [10, 0, 70], [200, 1, 0]  # bytes per image
    frame = link.prepare({"labels": _streams(labels, 1), "features": _streams(features, 2)})
    # labels: 80 bits -> 1 block; 0 -> 0; 560 bits -> 2 blocks (488 + 72, 416 padding bits)
    # features: 1600 bits -> 2 blocks (1008 + 592); 8 bits -> 1 block; 0 -> 0
    assert frame.parts["labels"].blocks_per_image.tolist() == [1, 0, 2]
    assert frame.parts["features"].blocks_per_image.tolist() == [2, 1, 0]
    assert frame.parts["labels"].channel_uses.tolist() == [768, 0, 1536]
    assert frame.parts["features"].channel_uses.tolist() == [768, 384, 0]
    assert frame.channel_uses.tolist() == [768 + 768, 384, 1536]
    assert frame.num_bits.tolist() == [8 * 210, 8, 8 * 70]
    assert tuple(frame.symbols.shape) == (3 + 3, 768)  # one row per codeword, padded to the longest
    assert frame.row_image.tolist() == [0, 2, 2, 0, 0, 1]
    rx = link.transmit(frame, AWGNChannel(), 30.0, seed=0)
    assert rx.image_ok.all() and rx.num_blocks == 6 and rx.bit_errors == 0
    assert rx.parts["labels"].streams == _streams(labels, 1) and rx.parts["features"].streams == _streams(features, 2)


def test_one_part_frame_and_draws_are_the_digital_links():
    cfg = LinkConfig.model_validate({"code": {"k": 512, "n": 768, "num_iter": 10}, "modulation": 16})
    streams = _streams([40, 130, 0, 7, 90, 200, 64, 64], 3)
    one = DigitalLink(cfg)
    parted = PartedLink(cfg)
    for channel, snr in ((AWGNChannel(), 9.0), (RayleighBlockChannel(granularity="image"), 14.0)):
        a = one.transmit(one.prepare(streams), channel, snr, seed=11)
        b = parted.transmit(parted.prepare({"stream": streams}), channel, snr, seed=11).parts["stream"]
        assert a.streams == b.streams and np.array_equal(a.block_ok, b.block_ok) and a.bit_errors == b.bit_errors
        assert 0 < a.num_block_errors < a.num_blocks, channel  # mid-waterfall: the comparison means something


# ---- erasure information ----------------------------------------------------------------------


def _brute_force_erased_bits(lengths, payload_bits, block_ok):
    """Per image, a bool mask of its bits that sit in failed blocks, bit by bit."""
    out, block = [], 0
    for n in lengths:
        bits = 8 * n
        mask = np.zeros(bits, dtype=bool)
        for j in range(-(-bits // payload_bits)):
            if not block_ok[block]:
                mask[j * payload_bits: min((j + 1) * payload_bits, bits)] = True
            block += 1
        out.append(mask)
    return out


def _mask(ranges, bits):
    m = np.zeros(bits, dtype=bool)
    for a, b in ranges:
        assert a < b  # a range is never empty
        m[a:b] = True
    return m


@pytest.mark.parametrize("seed", range(5))
def test_failed_bit_ranges_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 400, 12).tolist()
    payload_bits = int(rng.choice([488, 1000, 13]))
    layout = plan_layout(lengths, payload_bits)
    block_ok = rng.random(layout.num_blocks) < 0.5
    ranges = failed_bit_ranges(layout, block_ok)
    for r, expected, n in zip(ranges, _brute_force_erased_bits(lengths, payload_bits, block_ok), lengths):
        assert np.array_equal(_mask(r, 8 * n), expected)
        assert (np.diff(r.reshape(-1)) > 0).all()  # sorted, disjoint, adjacent runs merged


def test_erasure_ranges_match_blocks_corrupted_on_purpose():
    """Perfect LLRs except for chosen code blocks, whose LLRs are random: exactly those blocks fail,
    and the erased ranges are their bits (P = 512 - 24 = 488 bits per block)."""
    link = PartedLink(_link({"labels": {"code": {"k": 512, "n": 1536}}}))
    lengths = {"labels": [125, 61, 125, 0], "features": [125, 125, 3, 30]}  # 1000 bits = 3 blocks, 488 = 1
    sent = {p: _streams(v, i) for i, (p, v) in enumerate(lengths.items())}
    frame = link.prepare(sent)
    corrupt = {"labels": [1, 2, 3, 4, 6], "features": [1, 6, 7]}  # block indices within the part
    expected = {
        "labels": [[[488, 1000]], [[0, 488]], [[0, 488], [976, 1000]], []],  # blocks: img0 0-2, img1 3, img2 4-6
        "features": [[[488, 976]], [], [[0, 24]], [[0, 240]]],  # blocks: img0 0-2, img1 3-5, img2 6, img3 7
    }
    gen = torch.Generator().manual_seed(0)
    llrs = {}
    for p, f in frame.parts.items():
        d = link.link_for(p)
        codewords = d.encoder(d.crc.attach(f.info_bits.to(torch.float32)))
        llr = 20.0 * (2.0 * codewords - 1.0)  # log p(1)/p(0): positive for a 1
        bad = torch.as_tensor(corrupt[p])
        llr[bad] = 20.0 * torch.randn(len(bad), llr.shape[1], generator=gen)
        llrs[p] = llr
    rx = link.decode_llrs(frame, llrs)
    for p, r in rx.parts.items():
        assert np.flatnonzero(~r.block_ok).tolist() == corrupt[p]
        for i, (got, want) in enumerate(zip(r.erasures, expected[p])):
            assert got.tolist() == want, (p, i)
            received = np.unpackbits(np.frombuffer(r.streams[i], np.uint8)).astype(bool)
            original = np.unpackbits(np.frombuffer(sent[p][i], np.uint8)).astype(bool)
            assert np.array_equal(received[~_mask(got, len(received))], original[~_mask(got, len(received))])
    assert rx.image_ok.tolist() == [False, False, False, False]
    payload = DigitalPayload(parts={p: r.streams for p, r in rx.parts.items()},
                             erasures={p: r.erasures for p, r in rx.parts.items()})
    assert payload.erased_bytes("features", 3).tolist() == [True] * 30  # 240 bits = all 30 bytes
    assert payload.erased_bytes("features", 2).tolist() == [True] * 3
    assert payload.erased_bits("labels", 0)[487:489].tolist() == [False, True]


# ---- error policy, part by part ---------------------------------------------------------------


def test_error_policy_per_part():
    """Five images, an essential part ``a`` and a non-essential part ``b``:
    0 intact; 1 ``b`` failed (decodable); 2 ``b`` failed (the decoder gives up); 3 ``a`` failed;
    4 ``a`` passed its CRC with other bytes (an undetected error)."""
    from simlink.sweep.receiver import PartDelivery, apply_error_policy

    n = 5
    sent = [b"s%d" % i for i in range(n)]
    a_rx, b_rx = list(sent), list(sent)
    b_rx[1], b_rx[2], a_rx[3], a_rx[4] = b"xx", b"give-up", b"yy", b"zz"
    parts = {"a": PartDelivery(sent, a_rx, np.array([1, 1, 1, 0, 1], bool), essential=True),
             "b": PartDelivery(sent, b_rx, np.array([1, 0, 0, 1, 1], bool), essential=False)}
    clean, conceal = {"q": np.full(n, 40.0)}, {"q": np.full(n, 5.0)}
    asked = []

    def redecode(idx):
        asked.append(idx.tolist())
        ok = np.array([b_rx[i] != b"give-up" for i in idx])
        return {"q": 20.0 + idx[ok]}, ok

    c = apply_error_policy("conceal", parts, clean, conceal, redecode)
    assert asked[-1] == [1, 2, 4]
    assert c.lost.tolist() == [False, True, True, True, False]
    assert c.concealed.tolist() == [False, False, True, True, False]
    assert c.metrics["q"].tolist() == [40.0, 21.0, 5.0, 5.0, 24.0]
    d = apply_error_policy("decode_anyway", parts, clean, conceal, redecode)
    assert asked[-1] == [1, 2, 3, 4]
    assert d.concealed.tolist() == [False, False, True, False, False]
    assert d.metrics["q"].tolist() == [40.0, 21.0, 5.0, 23.0, 24.0]
    # a failed block with the right bytes (only CRC bits hit) still goes to the decoder: it gets erasures
    parts["b"] = PartDelivery(sent, list(sent), np.array([0, 1, 1, 1, 1], bool), essential=False)
    parts["a"] = PartDelivery(sent, list(sent), np.ones(n, bool))
    apply_error_policy("conceal", parts, clean, conceal, redecode)
    assert asked[-1] == [0]


# ---- unequal error protection on the channel ---------------------------------------------------


def _two_rates(granularity: str, n_images: int = 150):
    """Parts of one 488-bit block each (CRC24A): ``strong`` at rate 1/3, ``weak`` at rate 2/3, 4-QAM."""
    link = PartedLink(_link({"strong": {"code": {"k": 512, "n": 1536}}, "weak": {"code": {"k": 512, "n": 768}}}))
    frame = link.prepare({"strong": _streams([61] * n_images, 5), "weak": _streams([61] * n_images, 6)})
    rx = link.transmit(frame, RayleighBlockChannel(granularity=granularity), 6.0, seed=2)
    return rx.parts["strong"].image_ok, rx.parts["weak"].image_ok


def test_low_rate_part_survives_where_high_rate_part_fails_on_the_same_fade():
    """Block Rayleigh with one fade per image: both parts of an image see the same fade, so the
    rate-1/3 part fails only where the rate-2/3 part fails too (never the other way round), and
    on a clear number of images it survives where the rate-2/3 part fails (sign test)."""
    strong, weak = _two_rates("image")
    only_strong, only_weak = int((strong & ~weak).sum()), int((~strong & weak).sum())
    assert only_weak == 0
    assert only_strong >= 15  # about 0.25 * 150 expected at 6 dB; 15 of 15 discordant: sign test p < 3e-5
    # independent fades per codeword break the pairing: then each part sometimes wins alone
    strong_b, weak_b = _two_rates("block")
    assert int((~strong_b & weak_b).sum()) > 0 and int((strong_b & ~weak_b).sum()) > 0


def test_low_rate_part_survives_awgn_where_high_rate_fails():
    link = PartedLink(_link({"strong": {"code": {"k": 512, "n": 1536}}, "weak": {"code": {"k": 512, "n": 768}}}))
    frame = link.prepare({"strong": _streams([61] * 60, 7), "weak": _streams([61] * 60, 8)})
    rx = link.transmit(frame, AWGNChannel(), 1.0, seed=4)
    assert rx.parts["strong"].image_ok.mean() > 0.95 and rx.parts["weak"].image_ok.mean() < 0.05


# ---- through a scenario -------------------------------------------------------------------------


def _layered_scenario(tiny_scenario_dict, **over):
    d = dict(tiny_scenario_dict, plugins=[PLUGIN], seed=1,
             dataset={"name": "synthetic", "n_images": 6, "image_size": 32},
             methods=[{"name": "layered_toy", "q": [4], "tile": 8}],
             link={"code": {"k": 1024, "n": 1536, "num_iter": 10}, "modulation": 16,
                   "parts": {"base": {"code": {"k": 512, "n": 1536}, "modulation": 4}}},
             snr_db=[4.0, 30.0])
    d.update(over)
    return d


def test_two_part_method_runs_through_a_scenario(tmp_path, tiny_scenario_dict, monkeypatch):
    """32x32 images, tile 8: ``base`` = 48 bytes = 384 bits (1 block of 488 at rate 1/3 QPSK:
    768 uses), ``detail`` = 3072 bytes = 24576 bits (25 blocks of 1000 at rate 2/3 16-QAM, the
    last one padded: 25 x 384 uses). At 4 dB the base survives and the detail fails: images are decoded from what arrived,
    erased detail replaced by the tile mean, between the base-only and the error-free quality."""
    df = run_scenario(parse_scenario(_layered_scenario(tiny_scenario_dict)), tmp_path / "r", quiet=True, plots=False)
    lo, hi = df[df.snr_db == 4.0].iloc[0], df[df.snr_db == 30.0].iloc[0]
    assert lo.bpp == pytest.approx((384 + 24576) / 1024) and lo.bpp_base == pytest.approx(384 / 1024)
    assert lo.cpp == pytest.approx((768 + 25 * 384) / 1024) and lo.cpp_detail == pytest.approx(25 * 384 / 1024)
    assert lo.cpp == pytest.approx(lo.cpp_base + lo.cpp_detail)
    assert (lo.code_rate_base, lo.modulation_base, lo.code_rate_detail, lo.modulation_detail) == (1 / 3, 4, 2 / 3, 16)
    assert math.isnan(lo.code_rate) and math.isnan(lo.modulation)  # the parts differ
    assert (lo.n_blocks_base, lo.n_blocks_detail, lo.n_blocks) == (6, 150, 156)
    assert lo.bler_base == 0.0 and lo.bler_detail > 0.5 and lo.lost_frac_detail == 1.0
    assert lo.lost_frac == 1.0 and lo.concealed_frac == 0.0  # non-essential losses are decoded
    assert lo.bler == pytest.approx(lo.n_block_errors / 156)
    assert hi.bler == 0.0 and hi.psnr == pytest.approx(hi.psnr_clean)
    assert 10.0 < lo.psnr < lo.psnr_clean - 3.0
    # the BLER figure has one curve per (channel, part setting), from the per-part columns
    rows = link_setting_rows(df)
    assert sorted(rows[rows.snr_db == 4.0].n_blocks.tolist()) == [6, 150]
    assert sorted(rows[rows.snr_db == 4.0].modulation.tolist()) == [4, 16]
    import matplotlib.pyplot as plt

    from simlink import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, out, stem: figs.append(fig) or [])
    plot_bler_vs_snr(df, tmp_path)
    labels = [ln.get_label() for ln in figs[0].axes[0].get_lines()]
    plt.close(figs[0])
    assert any("k=512, n=1536, 4-QAM" in x for x in labels) and any("k=1024, n=1536, 16-QAM" in x for x in labels)


def test_erasure_aware_decoding_beats_trusting_corrupted_bytes(tmp_path, tiny_scenario_dict):
    """The same scenario with a decoder that ignores the erasures shows the corrupted residual
    bytes: worse than the erasure-aware one on the same channel draws (same label, same seeds)."""
    aware = run_scenario(parse_scenario(_layered_scenario(tiny_scenario_dict, snr_db=[4.0])), tmp_path / "a",
                         quiet=True, plots=False)
    blind = run_scenario(parse_scenario(_layered_scenario(
        tiny_scenario_dict, snr_db=[4.0], methods=[{"name": "layered_toy", "q": [4], "tile": 8, "use_erasures": False}])),
        tmp_path / "b", quiet=True, plots=False)
    assert aware.n_block_errors.iloc[0] == blind.n_block_errors.iloc[0]  # the same draw
    assert aware.psnr.iloc[0] > blind.psnr.iloc[0] + 1.0


def test_essential_part_loss_conceals_and_decode_anyway_does_not(tmp_path, tiny_scenario_dict):
    """At -3 dB even the rate-1/3 base fails: ``conceal`` shows the concealment image,
    ``decode_anyway`` decodes the corrupted parts."""
    d = _layered_scenario(tiny_scenario_dict, snr_db=[-3.0])
    conceal = run_scenario(parse_scenario(d), tmp_path / "c", quiet=True, plots=False).iloc[0]
    anyway = run_scenario(parse_scenario({**d, "error_policy": "decode_anyway"}), tmp_path / "d", quiet=True,
                          plots=False).iloc[0]
    assert conceal.lost_frac_base == 1.0 and conceal.concealed_frac == 1.0
    assert anyway.lost_frac_base == 1.0 and anyway.concealed_frac == 0.0


def test_validate_and_list_show_the_parts(tmp_path, tiny_scenario_dict, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from simlink.cli import app

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(_layered_scenario(tiny_scenario_dict)))
    r = CliRunner().invoke(app, ["validate", str(f)])
    text = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "part base: 5G LDPC k=512, n=1536 (rate 0.333), 4-QAM, CRC 24A" in text
    bad = _layered_scenario(tiny_scenario_dict)
    bad["link"]["parts"]["details"] = {"modulation": 4}
    f.write_text(yaml.safe_dump(bad))
    r = CliRunner().invoke(app, ["validate", str(f)])
    assert r.exit_code == 2 and "link.parts.details: no digital method of this scenario sends a part named " \
        "'details' (parts sent: base, detail)" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["list"], terminal_width=250)
    assert "parts: base, detail (optional: erased residual bytes show their tile's mean colour)" in \
        " ".join(r.output.split())


def test_two_parts_with_mixed_sizes_and_an_empty_part(tmp_path, tiny_scenario_dict):
    """A folder of 32x32 and 16x24 images at native size, coded per shape; the small images send
    no ``detail`` (``detail_from``). Bits and channel uses are per image, by hand; the per-part
    lost fraction counts only the images that send the part."""
    from PIL import Image

    from simlink.data import load_dataset

    base = load_dataset("synthetic", n_images=4, image_size=32, seed=2).images
    images = [base[0], base[1][:16, :24], base[2], base[3][:16, :24]]
    root = tmp_path / "imgs"
    root.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(np.ascontiguousarray(im)).save(root / f"im{i}.png")
    d = _layered_scenario(tiny_scenario_dict, snr_db=[4.0, 30.0],
                          dataset={"name": "folder", "root": str(root), "n_images": 4, "image_size": None},
                          methods=[{"name": "layered_toy", "q": [4], "tile": 8, "detail_from": 1000}])
    df = run_scenario(parse_scenario(d), tmp_path / "r", quiet=True, plots=False)
    pixels = np.array([1024, 384, 1024, 384])
    base_bits = pixels // 64 * 3 * 8  # one byte per tile and channel
    detail_bits = np.where(pixels >= 1000, pixels * 3 * 8, 0)
    base_uses = -(-base_bits // 488) * 768  # rate 1/3, 4-QAM: 768 uses per codeword
    detail_uses = -(-detail_bits // 1000) * 384  # rate 2/3, 16-QAM: 384 uses per codeword
    for r in df.itertuples():
        assert r.bpp_base == pytest.approx(np.mean(base_bits / pixels))
        assert r.bpp == pytest.approx(np.mean((base_bits + detail_bits) / pixels))
        assert r.cpp_detail == pytest.approx(np.mean(detail_uses / pixels))
        assert r.cpp == pytest.approx(np.mean((base_uses + detail_uses) / pixels))
        assert r.n_blocks_detail == 2 * 25 and r.n_blocks_base == 4
    lo, hi = df[df.snr_db == 4.0].iloc[0], df[df.snr_db == 30.0].iloc[0]
    assert lo.lost_frac_detail == 1.0 and lo.lost_frac == 0.5  # the two small images lose nothing
    assert hi.lost_frac == 0.0 and hi.psnr == pytest.approx(hi.psnr_clean)
