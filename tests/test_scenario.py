"""Scenario schema: valid files load; every kind of bad input names file, field and allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simlink.errors import ScenarioError
from simlink.scenario import load_scenario, parse_scenario

from conftest import REPO


def _write(tmp_path: Path, data) -> Path:
    p = tmp_path / "x.yaml"
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


@pytest.mark.parametrize("path", sorted((REPO / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_validate(path):
    sc = load_scenario(path)
    assert sc.methods and sc.channels and sc.snr_values


def test_quickstart_values():
    sc = load_scenario(REPO / "scenarios" / "quickstart.yaml")
    assert sc.snr_values == [0.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert sc.link.modulation == 16 and sc.link.code.k * 3 == sc.link.code.n * 2
    assert sc.dataset.name == "synthetic"


def test_bad_modulation_message(tmp_path, tiny_scenario_dict):
    tiny_scenario_dict["link"]["modulation"] = 12
    p = _write(tmp_path, tiny_scenario_dict)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert str(e.value) == f"{p}: link.modulation: 12 is not one of 4, 16, 64, 256"


def test_unknown_keys_are_errors(tmp_path, tiny_scenario_dict):
    tiny_scenario_dict["snr_dB"] = [1]
    tiny_scenario_dict["methods"][0]["qualty"] = [3]
    tiny_scenario_dict["link"]["code"]["iterations"] = 3
    p = _write(tmp_path, tiny_scenario_dict)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    msg = str(e.value)
    assert f"{p}: snr_dB: unknown key" in msg
    assert "link.code.iterations: unknown key" in msg
    assert "methods.0.qualty: unknown key" in msg


def test_unknown_method_lists_allowed(tiny_scenario_dict):
    tiny_scenario_dict["methods"].append({"name": "vvc", "quality": [1]})
    with pytest.raises(ScenarioError) as e:
        parse_scenario(tiny_scenario_dict, "s.yaml")
    msg = str(e.value)
    assert "s.yaml: methods.1.name: 'vvc' is not one of" in msg
    assert "jpeg" in msg and "heif" in msg


def test_unknown_channel_and_dataset(tiny_scenario_dict):
    tiny_scenario_dict["channels"] = [{"name": "rician"}]
    tiny_scenario_dict["dataset"]["name"] = "imagenet"
    with pytest.raises(ScenarioError) as e:
        parse_scenario(tiny_scenario_dict, "s.yaml")
    msg = str(e.value)
    assert "channels.0" in msg and "'rician' is not one of awgn, rayleigh_block, rayleigh_fast" in msg
    assert "dataset.name" in msg and "'imagenet' is not one of" in msg and "synthetic" in msg


def test_error_policy_and_granularity(tiny_scenario_dict):
    tiny_scenario_dict["error_policy"] = "retransmit"
    tiny_scenario_dict["channels"] = [{"name": "rayleigh_block", "granularity": "frame"}]
    with pytest.raises(ScenarioError) as e:
        parse_scenario(tiny_scenario_dict, "s.yaml")
    msg = str(e.value)
    assert "error_policy: 'retransmit' is not one of conceal, decode_anyway" in msg
    assert "granularity" in msg and "'frame' is not one of block, image" in msg


def test_snr_range_and_duplicates(tiny_scenario_dict):
    tiny_scenario_dict["snr_db"] = {"start": 0, "stop": 10, "step": 2.5}
    assert parse_scenario(tiny_scenario_dict).snr_values == [0.0, 2.5, 5.0, 7.5, 10.0]
    tiny_scenario_dict["snr_db"] = [1, 1]
    with pytest.raises(ScenarioError, match="duplicate SNR"):
        parse_scenario(tiny_scenario_dict)


def test_duplicate_method_needs_label(tiny_scenario_dict):
    tiny_scenario_dict["methods"].append({"name": "jpeg", "quality": [50]})
    with pytest.raises(ScenarioError, match="label"):
        parse_scenario(tiny_scenario_dict)
    tiny_scenario_dict["methods"][1]["label"] = "jpeg-b"
    assert [m.display_name for m in parse_scenario(tiny_scenario_dict).methods] == ["jpeg", "jpeg-b"]


def test_yaml_syntax_error_has_line(tmp_path):
    p = _write(tmp_path, "name: x\nmethods: [\n  {name: jpeg\n")
    with pytest.raises(ScenarioError, match=r"x\.yaml: not valid YAML \(line \d+"):
        load_scenario(p)


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_scenario(tmp_path / "nope.yaml")


def test_context_hash_ignores_grid_extensions(tiny_scenario_dict):
    a = parse_scenario(tiny_scenario_dict)
    tiny_scenario_dict["snr_db"] = [0.0, 10.0, 30.0]
    tiny_scenario_dict["methods"].append({"name": "webp", "quality": [50]})
    b = parse_scenario(tiny_scenario_dict)
    assert a.context_hash() == b.context_hash()
    tiny_scenario_dict["seed"] = 4
    assert parse_scenario(tiny_scenario_dict).context_hash() != a.context_hash()
