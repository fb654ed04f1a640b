"""Golden tests (CompressAI-style): bitstream md5s and a per-cell table that must not change.

``tests/expected/`` holds what the code produced when these tests were written:

* ``golden_streams.json`` — md5 of every bitstream of a seeded, *untrained* TOSC-SR network and
  of JPEG on the embedded synthetic images (trained weights differ across CPUs and GPUs, initial
  weights do not); ``golden_decoded_psnr.json`` — the PSNR of what that network decodes from them;
* ``golden_table.json`` — the per-cell PSNR, SSIM, BLER, lost_frac, bpp, cpp (and accuracy where
  a receiver head scores it) of ``golden_scenario.yaml``: classic codecs, an untrained learned
  codec and the untrained analog JSCC through the real link, compared with a tolerance;
* ``golden_table_decode_anyway.json`` — *every* column of the same scenario's table under
  ``error_policy: decode_anyway`` (the column list and order included), so the link columns
  (``ebno_db``, ``ber``, ``n_blocks`` ...) and the other policy are pinned too.

Regenerate only on purpose, when a change is *meant* to alter results:
``SIMLINK_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py`` (then say why in the
commit message).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from simlink.scenario import load_scenario, parse_scenario

EXPECTED = Path(__file__).resolve().parent / "expected"
SCENARIO = EXPECTED / "golden_scenario.yaml"
REGEN = os.environ.get("SIMLINK_REGEN_GOLDEN") == "1"
KEYS = ["method", "op", "channel", "snr_db", "repeat"]
VALUES = ["psnr", "ssim", "bler", "lost_frac", "bpp", "cpp", "accuracy"]
RTOL, ATOL = 1e-5, 1e-6


def _golden(name: str, actual):
    """``actual`` written to ``expected/name`` under SIMLINK_REGEN_GOLDEN=1, else the stored value."""
    path = EXPECTED / name
    if REGEN:
        path.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    if not path.is_file():
        pytest.fail(f"{path} is missing; create it with SIMLINK_REGEN_GOLDEN=1")
    return json.loads(path.read_text())


def _streams(method_entry: dict, images, tmp_path) -> dict[str, list[str]]:
    from simlink.learned.context import TrainingContext
    from simlink.methods import build_method

    sc = parse_scenario({**_scenario_dict(), "methods": [method_entry]})
    m = build_method(sc.methods[0])
    m.fit(TrainingContext(dataset=sc.dataset, seed=sc.seed, device="cpu", cache_root=tmp_path, log=lambda s: None))
    out = {}
    for op in m.operating_points():
        payload = m.encode(images, op)
        out[op.label] = [hashlib.md5(s).hexdigest() for s in payload.streams]
    return out


def _scenario_dict() -> dict:
    import yaml

    return yaml.safe_load(SCENARIO.read_text())


def _tosc_sr_streams(images) -> dict[str, list[str]]:
    """md5 per stream of the TOSC-SR codec with seeded, untrained weights. Freshly initialised
    latents all round to 0, so the last layers of the two analysis transforms are scaled up
    (x10, x20) until about half of the symbols are non-zero."""
    import torch

    from simlink.methods import build_method

    sc = parse_scenario({**_scenario_dict(), "methods": [{"name": "rrd", "lmbda": [0.01], "network": NETWORK}]})
    m = build_method(sc.methods[0])
    (op,) = m.operating_points()
    net = m.build_network(sc.seed)
    with torch.no_grad():
        net.g_a[-1].weight.mul_(10.0)
        net.g_a[-1].bias.mul_(10.0)
        net.h_a[-1].weight.mul_(20.0)
    m.set_network(op, net, "cpu")
    payload = m.encode(images, op)
    rec = m.decode(payload, op, images.shape[1:])
    assert rec.ok.all()
    from simlink.metrics import psnr

    return ({op.label: [hashlib.md5(s).hexdigest() for s in payload.streams]},
            {op.label: [float(v) for v in psnr(images, rec.images)]})


NETWORK = {"channels": 16, "latent_channels": 24, "mixtures": 3}


def test_bitstream_md5s(tmp_path):
    from simlink.data import load_dataset

    sc = load_scenario(SCENARIO)
    d = sc.dataset
    images = load_dataset(d.name, split=d.split, n_images=d.n_images, image_size=d.image_size, seed=sc.seed).images
    tosc_streams, tosc_psnr = _tosc_sr_streams(images)
    actual = {"tosc_sr_network": tosc_streams, "jpeg": _streams({"name": "jpeg", "quality": [25, 75]}, images, tmp_path)}
    expected = _golden("golden_streams.json", actual)
    assert actual == expected
    assert len(set(actual["tosc_sr_network"]["λ=0.01"])) == len(images)  # the streams do depend on the image
    # what the decoder makes of them (float32 synthesis: compared with a tolerance)
    decoded = _golden("golden_decoded_psnr.json", {"tosc_sr_network": tosc_psnr})
    np.testing.assert_allclose(tosc_psnr["λ=0.01"], decoded["tosc_sr_network"]["λ=0.01"], rtol=RTOL, atol=1e-4)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(np.isclose(a, b, rtol=RTOL, atol=ATOL))


def _encoded(value):
    """A table value as JSON: NaN as the string "nan" (so it never compares equal to a number)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        return "nan" if math.isnan(v) else v
    return value


@pytest.mark.slow
def test_golden_table_every_column_decode_anyway(tmp_path):
    from simlink.sweep import run_scenario

    sc = load_scenario(SCENARIO).model_copy(update={"error_policy": "decode_anyway"})
    df = run_scenario(sc, tmp_path / "out", quiet=True, plots=False, cache_root=tmp_path / "cache")
    timing = ["wall_s"]  # wall-clock seconds per cell: never the same twice, so not golden
    assert set(timing) <= set(df.columns) and (df["wall_s"] > 0).all()
    df = df.drop(columns=timing)
    actual = {"columns": list(df.columns), "rows": [{k: _encoded(v) for k, v in r.items()}
                                                    for r in df.drop(columns=["method_hash"]).to_dict("records")]}
    expected = _golden("golden_table_decode_anyway.json", actual)
    assert actual["columns"] == expected["columns"], "the table's columns changed"
    assert len(actual["rows"]) == len(expected["rows"])
    bad = []
    for got, want in zip(actual["rows"], expected["rows"]):
        for k, w in want.items():
            g = got[k]
            same = g == w if isinstance(w, (str, bool)) or isinstance(g, (str, bool)) else _same(g, w)
            if not same:
                bad.append(f"{got['method']} {got['op']} {got['channel']} {got['snr_db']} dB: {k} {g} != {w}")
    assert not bad, "golden table changed:\n" + "\n".join(bad)
    assert any(r["error_policy"] == "decode_anyway" and r["lost_frac"] not in (0.0, "nan") for r in actual["rows"])


@pytest.mark.slow
def test_golden_table(tmp_path):
    from simlink.sweep import run_scenario

    df = run_scenario(load_scenario(SCENARIO), tmp_path / "out", quiet=True, plots=False, cache_root=tmp_path / "cache")
    rows = []
    for r in df.to_dict("records"):
        row = {k: r[k] for k in KEYS}
        row.update({k: (None if k not in r else float(r[k])) for k in VALUES})
        rows.append(row)
    # JSON has no NaN: store it as null-free strings so a NaN never silently compares equal to a number
    encoded = [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]
    expected = _golden("golden_table.json", encoded)
    assert len(expected) == len(encoded), f"{len(encoded)} cells, expected {len(expected)}"
    bad = []
    for got, want in zip(encoded, expected):
        assert [got[k] for k in KEYS] == [want[k] for k in KEYS], "cells in another order or with other keys"
        for k in VALUES:
            g = float("nan") if got.get(k) == "nan" else got.get(k)
            w = float("nan") if want.get(k) == "nan" else want.get(k)
            if not _same(g, w):
                bad.append(f"{got['method']} {got['op']} {got['channel']} {got['snr_db']} dB: {k} {g} != {w}")
    assert not bad, "golden table changed:\n" + "\n".join(bad)
    # the scenario exercises what it is meant to: a waterfall, a cliff, analog rows
    bler = np.array([r["bler"] for r in rows if r["bler"] is not None and not math.isnan(r["bler"])])
    assert (bler > 0).any() and (bler == 0).any() and ((bler > 0) & (bler < 1)).any()
    assert any(r["method"] == "jscc" and math.isnan(r["bpp"]) for r in rows)
