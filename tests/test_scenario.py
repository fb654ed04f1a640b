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


def _v1_context_hash(sc) -> str:
    """The context hash as simlink computed it before hash version 2 (every field it had then dumped;
    ``link.parts`` and ``link.decoder`` came later)."""
    from simlink.hashing import stable_hash

    ctx = {"dataset": sc.dataset.model_dump(exclude={"download", "skip_unreadable"}),
           "link": sc.link.model_dump(exclude={"max_codewords_per_batch", "parts", "decoder"}), "seed": sc.seed,
           "error_policy": sc.error_policy}
    if sc.task is not None:
        # keys task.train gained after version 1 (segmentation training) are not in a v1 dump
        ctx["task"] = sc.task.model_dump(exclude={"train": {"class_weights", "options"}})
    return stable_hash(ctx)


def test_context_hash_survives_a_new_key_with_default(tiny_scenario_dict):
    """A key added to the schema later, with a default, leaves the context hash (and the
    version-1 hash old folders carry) of scenarios that do not set it unchanged."""
    from pydantic import Field, create_model

    from simlink.phy.config import LinkConfig
    from simlink.scenario import DatasetConfig, Scenario, TaskConfig

    tiny_scenario_dict["task"] = {"model": "small_cnn", "train": {"epochs": 1}}
    a = parse_scenario(tiny_scenario_dict)
    assert a.legacy_context_hashes() == [_v1_context_hash(a)]
    Dataset2 = create_model("Dataset2", __base__=DatasetConfig, dummy=(int, 0))
    Link2 = create_model("Link2", __base__=LinkConfig, dummy_knob=(int, 0))
    Task2 = create_model("Task2", __base__=TaskConfig, dummy_task=(float, 1.0))
    Scenario2 = create_model("Scenario2", __base__=Scenario, dataset=(Dataset2, Dataset2()),
                             link=(Link2, Field(default_factory=Link2)), task=(Task2 | None, None))
    b = Scenario2.model_validate(tiny_scenario_dict)
    assert b.context_hash() == a.context_hash()
    assert b.legacy_context_hashes() == a.legacy_context_hashes()
    tiny_scenario_dict["dataset"]["dummy"] = 0  # set to its default: the same results, the same hash
    assert Scenario2.model_validate(tiny_scenario_dict).context_hash() == a.context_hash()
    for where, key in (("dataset", "dummy"), ("link", "dummy_knob"), ("task", "dummy_task")):
        d = {**tiny_scenario_dict, where: {**tiny_scenario_dict[where], key: 7}}
        c = Scenario2.model_validate(d)
        assert c.context_hash() != a.context_hash(), where
        assert c.legacy_context_hashes() == [], where  # such a scenario cannot have a version-1 folder
    # a value that differs from the default still changes the hash
    tiny_scenario_dict["dataset"].pop("dummy")
    tiny_scenario_dict["link"]["crc"] = "16"
    assert parse_scenario(tiny_scenario_dict).context_hash() != a.context_hash()


def test_task_kind_is_a_registry_entry(tiny_scenario_dict):
    tiny_scenario_dict["task"] = {"kind": "regression", "model": "small_cnn"}
    with pytest.raises(ScenarioError, match=r"task\.kind: 'regression' is not one of classification"):
        parse_scenario(tiny_scenario_dict, "s.yaml")


def test_schema_imports_without_torch_or_sionna():
    import subprocess
    import sys

    code = ("import sys; import simlink.scenario, simlink.methods, simlink.phy, simlink.tasks, simlink.learned; "
            "from simlink.methods import METHODS; from simlink.phy.channels import CHANNELS; "
            "from simlink.tasks.kinds import TASK_KINDS; names = list(METHODS) + list(CHANNELS) + list(TASK_KINDS); "
            "print(len(names), 'torch' in sys.modules, 'sionna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) >= 13 and out[1:] == ["False", "False"], out


def test_registry_refuses_duplicates_and_lists_names(tmp_path, monkeypatch):
    from simlink.registry import DuplicateName, Registry, UnknownName

    calls = []
    r = Registry("widget")
    r.add("a", 1)

    @r.register("b")
    def b():
        calls.append(1)

    with pytest.raises(DuplicateName, match="widget 'a' registered twice"):
        r.add("a", 2)
    with pytest.raises(UnknownName, match="'c' is not one of a, b"):
        r["c"]
    assert r.names() == ["a", "b"] and "a" in r and ["x"] not in r and r.get(["x"]) is None
    assert r.unregister("a") == 1 and r.names() == ["b"]
    with pytest.raises(ValueError, match="give a name"):
        r.register()(object())
    # built-ins load on first use; a module that fails half-way leaves nothing registered, so the
    # next look-up reports the module's own error again (not a duplicate name)
    import sys

    broken = Registry("thing", builtins=("simlink_test_half_broken",))
    (tmp_path / "simlink_test_half_broken.py").write_text(
        "import sys\nsys.modules['simlink_test_registry'].add('x', 1)\nraise RuntimeError('half-way')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "simlink_test_registry", broken)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="half-way"):
            broken.names()
