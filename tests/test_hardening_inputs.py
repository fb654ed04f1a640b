"""Hostile inputs (issue 12): binary or directory scenario paths, booleans where numbers belong,
dataset limits known from the registry checked at validation, corrupt files in a ``folder`` dataset.
Every one is a one-line error naming the file, field or value, never a traceback."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import yaml
from PIL import Image

from simlink.data import load_dataset
from simlink.data.base import DatasetError
from simlink.data.registry import DATASETS
from simlink.errors import ScenarioError, SimlinkError
from simlink.scenario import load_scenario, parse_scenario


# ----------------------------------------------------------------------------- scenario files
def test_binary_scenario_file_names_the_file(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: not a text file (UTF-8)") and "0x89" in msg and "\n" not in msg


def test_directory_as_scenario_says_directory(tmp_path):
    with pytest.raises(ScenarioError) as e:
        load_scenario(tmp_path)
    assert str(e.value).startswith(f"{tmp_path}: is a directory")
    assert "not found" not in str(e.value)


def test_cli_binary_scenario_exits_2(tmp_path):
    from typer.testing import CliRunner

    from simlink.cli import app

    p = tmp_path / "x.yaml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    res = CliRunner().invoke(app, ["run", str(p), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "not a text file (UTF-8)" in res.output
    assert "Traceback" not in res.output


# ----------------------------------------------------------------------------- booleans
@pytest.mark.parametrize("path", ["seed", "repeats", "dataset.n_images", "dataset.image_size",
                                  "task.train.n_images", "task.train.epochs", "task.train.batch_size",
                                  "link.code.num_iter"])
def test_booleans_are_not_integers(tiny_scenario_dict, path):
    tiny_scenario_dict["task"] = {"model": "small_cnn", "train": {"epochs": 1}}
    *parents, key = path.split(".")
    node = tiny_scenario_dict
    for part in parents:
        node = node[part]
    node[key] = True
    with pytest.raises(ScenarioError) as e:
        parse_scenario(tiny_scenario_dict, "s.yaml")
    assert str(e.value) == f"s.yaml: {path}: true is not an integer"


def test_boolean_in_a_float_list_is_not_a_number(tiny_scenario_dict):
    tiny_scenario_dict["snr_db"] = [0.0, False]
    with pytest.raises(ScenarioError) as e:
        parse_scenario(tiny_scenario_dict, "s.yaml")
    assert str(e.value) == "s.yaml: snr_db.1: false is not a number"


def test_yaml_ints_and_real_booleans_still_load(tmp_path, tiny_scenario_dict):
    tiny_scenario_dict["dataset"]["download"] = False
    p = tmp_path / "x.yaml"
    p.write_text(yaml.safe_dump(tiny_scenario_dict) + "repeats: 2\n")
    sc = load_scenario(p)
    assert sc.seed == 3 and sc.repeats == 2 and sc.dataset.n_images == 4 and sc.dataset.download is False


# ----------------------------------------------------------------------------- dataset limits
def test_registry_declares_sizes_and_split_sizes():
    spec = DATASETS["synthetic"]
    assert spec.sizes == (32, 64)
    assert dict(spec.split_sizes) == {"train": 10000, "val": 1000, "test": 1000}
    assert DATASETS["cifar10"].sizes == () and dict(DATASETS["cifar10"].split_sizes) == {}


def test_synthetic_image_size_checked_at_validation(tiny_scenario_dict):
    tiny_scenario_dict["dataset"]["image_size"] = 48
    with pytest.raises(ScenarioError) as e:
        parse_scenario(tiny_scenario_dict, "s.yaml")
    assert str(e.value) == "s.yaml: dataset.image_size: 48 is not one of 32, 64 for dataset 'synthetic'"


def test_n_images_above_split_size_checked_at_validation(tiny_scenario_dict):
    tiny_scenario_dict["dataset"]["n_images"] = 1001
    with pytest.raises(ScenarioError) as e:
        parse_scenario(tiny_scenario_dict, "s.yaml")
    assert str(e.value) == "s.yaml: dataset.n_images: 1001 is more than the 1000 images of synthetic/test"
    tiny_scenario_dict["dataset"]["n_images"] = 1000
    parse_scenario(tiny_scenario_dict, "s.yaml")


def test_train_n_images_above_split_size(tiny_scenario_dict):
    tiny_scenario_dict["task"] = {"model": "small_cnn", "train": {"n_images": 20000}}
    with pytest.raises(ScenarioError) as e:
        parse_scenario(tiny_scenario_dict, "s.yaml")
    assert str(e.value) == "s.yaml: task.train.n_images: 20000 is more than the 10000 images of synthetic/train"


def test_load_dataset_checks_declared_sizes():
    with pytest.raises(ValueError, match="image_size 48 is not one of 32, 64"):
        load_dataset("synthetic", n_images=2, image_size=48)


# ----------------------------------------------------------------------------- corrupt folder files
def _folder(tmp_path, n_good: int = 3):
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_good):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / f"a{i}.png")
    good = (root / "a0.png").read_bytes()
    (root / "b_truncated.png").write_bytes(good[: len(good) // 2])
    (root / "c_garbage.jpg").write_bytes(b"this is not an image")
    return root


def test_corrupt_folder_file_is_a_one_line_error(tmp_path):
    root = _folder(tmp_path)
    with pytest.raises(DatasetError) as e:
        load_dataset("folder", root=root)
    msg = str(e.value)
    assert isinstance(e.value, SimlinkError) and "\n" not in msg
    assert msg.startswith(f"dataset 'folder': {root / 'b_truncated.png'}: cannot read image (")
    assert "skip_unreadable: true" in msg


def test_skip_unreadable_skips_with_a_warning_each(tmp_path):
    root = _folder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset("folder", root=root, skip_unreadable=True)
    assert len(data) == 3 and data.skipped == ["b_truncated.png", "c_garbage.jpg"]
    assert data.meta["skipped"] == data.skipped and data.subset(slice(0, 1)).skipped == data.skipped
    texts = [str(w.message) for w in caught]
    assert len(texts) == 2 and all("skipping unreadable image" in t and "\n" not in t for t in texts)
    assert any("b_truncated.png" in t for t in texts) and any("c_garbage.jpg" in t for t in texts)
    assert load_dataset("folder", root=root, skip_unreadable=True, n_images=2, seed=1).meta["files"][0].startswith("a")


def test_skip_unreadable_n_images_above_readable(tmp_path):
    root = _folder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatasetError) as e:
            load_dataset("folder", root=root, skip_unreadable=True, n_images=4)
    assert str(e.value) == (f"dataset 'folder': {root}: n_images=4 but only 3 of the 5 image files are readable "
                            "(2 skipped)")


def test_folder_n_images_above_file_count(tmp_path):
    root = _folder(tmp_path)
    with pytest.raises(DatasetError, match=r"n_images=9 but the folder holds only 5 image files"):
        load_dataset("folder", root=root, n_images=9)


def test_skip_unreadable_only_for_folder(tiny_scenario_dict):
    tiny_scenario_dict["dataset"]["skip_unreadable"] = True
    with pytest.raises(ScenarioError) as e:
        parse_scenario(tiny_scenario_dict, "s.yaml")
    assert str(e.value) == "s.yaml: dataset.skip_unreadable: not an option of dataset 'synthetic' (only of folder)"
    with pytest.raises(ValueError, match="no option 'skip_unreadable'"):
        load_dataset("synthetic", n_images=2, skip_unreadable=True)


def test_skip_unreadable_default_keeps_context_hash(tmp_path, tiny_scenario_dict):
    tiny_scenario_dict["dataset"] = {"name": "folder", "root": str(tmp_path), "n_images": 2}
    a = parse_scenario(dict(tiny_scenario_dict))
    tiny_scenario_dict["dataset"] = dict(tiny_scenario_dict["dataset"], skip_unreadable=False)
    b = parse_scenario(tiny_scenario_dict)
    assert a.context_hash() == b.context_hash() and a.legacy_context_hashes() == b.legacy_context_hashes() != []


def test_cli_run_on_corrupt_folder_exits_2(tmp_path, tiny_scenario_dict):
    from typer.testing import CliRunner

    from simlink.cli import app

    root = _folder(tmp_path)
    tiny_scenario_dict["dataset"] = {"name": "folder", "root": str(root), "n_images": 5, "image_size": 16}
    p = tmp_path / "x.yaml"
    p.write_text(yaml.safe_dump(tiny_scenario_dict))
    res = CliRunner().invoke(app, ["run", str(p), "--out", str(tmp_path / "out"), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "cannot read image" in res.output and "Traceback" not in res.output
