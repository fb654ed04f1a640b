"""``simlink mi``: plug-in MI against hand-computed tables, a receiver head's class logits against exact
answers, and the columns it merges into a real (tiny) sweep's results table, reruns, resumes
and CLI errors. Estimators run with tiny networks and few steps; the values are only checked
for shape, sign and consistency, the estimators themselves are tested in test_mutual_info.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simlink.analysis.mutual_info_table import (
    HIDDEN_PRESETS,
    MI_COLUMNS,
    compute_mutual_information,
    confusion_matrix,
    merge_into_results,
    parse_hidden,
    plugin_mi_bits,
    scenario_mutual_information,
)
from simlink.cli import app
from simlink.data import load_dataset
from simlink.errors import SimlinkError
from simlink.methods.base import DigitalPayload, Method, MethodConfig, OperatingPoint, Reception, register_method
from simlink.metrics.mutual_info import PAPER_HIDDEN
from simlink.scenario import parse_scenario
from simlink.sweep.runner import run_scenario

FAST = {"steps": 40, "hidden": (16,), "batch_size": 64}
NET = {"channels": 12, "latent_channels": 16, "mixtures": 2}
TRAIN = {"n_images": 64, "pretrain": {"epochs": 1, "lr": 2e-3, "batch_size": 16},
         "finetune": {"epochs": 1, "lr": 2e-4, "batch_size": 16}}


# ----------------------------------------------------------------------------- pure functions
def test_plugin_mi_matches_hand_computed_tables():
    # p = [[1/2, 1/4], [0, 1/4]]; rows 3/4, 1/4; columns 1/2, 1/2:
    # I = 1/2 log2(4/3) + 1/4 log2(2/3) + 1/4 log2(2) = 0.311278 bits
    assert plugin_mi_bits([[2, 1], [0, 1]]) == pytest.approx(0.5 * math.log2(4 / 3) + 0.25 * math.log2(2 / 3) + 0.25)
    assert plugin_mi_bits([[2, 1], [0, 1]]) == pytest.approx(0.3112781, abs=1e-7)
    assert plugin_mi_bits(np.eye(4) * 5) == pytest.approx(2.0)  # perfect classifier, 4 balanced classes: H(Y)
    assert plugin_mi_bits(np.outer([1, 3], [2, 2, 4])) == pytest.approx(0.0, abs=1e-12)  # independent
    assert plugin_mi_bits(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(plugin_mi_bits(np.zeros((2, 2))))
    # relabelling the predictions does not change the information
    assert plugin_mi_bits(np.eye(4)[:, [2, 0, 3, 1]]) == pytest.approx(2.0)
    # the confusion matrix: rows = true label, columns = prediction
    cm = confusion_matrix([0, 1, 1, 2], [0, 0, 1, 1], num_classes=3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 1], [0, 0, 0]])
    assert plugin_mi_bits(cm) == pytest.approx(plugin_mi_bits([[1, 1, 0], [0, 1, 1]]))


def test_parse_hidden():
    assert parse_hidden("paper") == tuple(PAPER_HIDDEN) == (1024, 512, 512)
    assert parse_hidden("small") == HIDDEN_PRESETS["small"]
    assert parse_hidden(" 64, 32 ") == (64, 32)
    assert parse_hidden([8]) == (8,)
    for bad in ("big", "12,x", "0", "64,-1", "", "1.5"):
        with pytest.raises(SimlinkError, match=f"--hidden {bad!r}"):
            parse_hidden(bad)


# ----------------------------------------------------------------------------- a receiver head
class _OracleConfig(MethodConfig):
    ops: list[str] = ["exact", "pairs", "none"]


class _Oracle(Method):
    """Sends raw pixels; its 'receiver' classifies by looking the image up (``table``), exactly
    (op exact), up to merged class pairs (op pairs), or not at all (op none: no class_logits output)."""

    name = "mi_oracle"
    kind = "digital"
    Config = _OracleConfig
    table: dict[bytes, int] = {}

    def operating_points(self):
        return [OperatingPoint(o, {"op": o}) for o in self.config.ops]

    def encode(self, images, op, keys=None):
        return DigitalPayload([im.tobytes() for im in images])

    def decode(self, payload, op, image_shape, keys=None):
        ims = np.stack([np.frombuffer(s, np.uint8).reshape(image_shape) for s in payload.streams])
        if op.label == "none":  # a receiver without a head
            return Reception(ims, np.ones(len(ims), bool))
        labels = np.array([self.table[s] for s in payload.streams])
        if op.label == "pairs":  # 1,2 -> 1; 3,4 -> 3; ...: one bit of the three lost
            labels = labels - (labels + 1) % 2
        return Reception(ims, np.ones(len(ims), bool), {"class_logits": 10.0 * np.eye(9)[labels]})

    def latents(self, images, op):
        return images.reshape(len(images), -1, 3).mean(1).astype(np.float32) / 255  # mean colour, [N, 3]


register_method(_Oracle)


def _scenario(d: dict, **changes):
    return parse_scenario({**d, **changes})


def test_head_output_gives_exact_plugin_mi(tmp_path, monkeypatch, tiny_scenario_dict, one_torch_thread):
    n = 48  # 6 images of each of the 8 classes
    data = load_dataset("synthetic", n_images=n, image_size=32, seed=3)
    monkeypatch.setattr(_Oracle, "table", {im.tobytes(): int(lab) for im, lab in zip(data.images, data.labels)})
    assert np.bincount(data.labels).tolist() == [0] + [6] * 8
    sc = _scenario(tiny_scenario_dict, dataset={"name": "synthetic", "n_images": n, "image_size": 32},
                   methods=[{"name": "mi_oracle"}, {"name": "jpeg", "quality": [50]}])
    messages = []
    df = scenario_mutual_information(sc, tmp_path / "out", log=messages.append, device="cpu",
                                     cache_root=tmp_path / "cache", **FAST)
    assert df[["method", "op"]].values.tolist() == [["mi_oracle", "exact"], ["mi_oracle", "pairs"],
                                                    ["mi_oracle", "none"], ["jpeg", "q=50"]]
    assert df.yhat_source.tolist() == ["method", "method", "none", "none"]  # no task model in this scenario
    ex, pairs, none, jpeg = (df.iloc[i] for i in range(4))
    assert ex.mi_yhat_y_plugin == pytest.approx(3.0) and ex.yhat_accuracy == 1.0  # H(Y) = log2 8
    assert pairs.mi_yhat_y_plugin == pytest.approx(2.0) and pairs.yhat_accuracy == 0.5
    yhat_cols = ["mi_yhat_y_club", "mi_yhat_y_mine", "mi_yhat_y_plugin", "yhat_accuracy"]
    for r in (none, jpeg):  # no classifier at all: NaN, not 0
        assert np.isnan(r[yhat_cols].astype(float)).all()
    assert np.isnan([jpeg.mi_xz_club, jpeg.mi_xz_mine, jpeg.z_dim]).all()  # classic codec: no latent
    oracle = df[df.method == "mi_oracle"]
    assert (oracle.z_dim == 3).all() and (oracle.n_images == n).all()
    assert np.isfinite(oracle[["mi_xz_club", "mi_xz_mine"]].to_numpy(float)).all()
    # CLUB (upper bound) above MINE (lower bound) on average over every estimate made
    club = df[["mi_xz_club", "mi_yhat_y_club"]].to_numpy(float).ravel()
    mine = df[["mi_xz_mine", "mi_yhat_y_mine"]].to_numpy(float).ravel()
    ok = np.isfinite(club) & np.isfinite(mine)
    assert ok.sum() == 5 and club[ok].mean() > mine[ok].mean(), (club, mine)
    # no results table yet: mi.csv only, and it says so
    assert not (tmp_path / "out" / "results.parquet").exists()
    assert any("no results table" in m for m in messages), messages
    numeric = df.columns.drop(["method", "op", "yhat_source", "method_hash", "mi_hidden"])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "mi.csv")[numeric], df[numeric], check_dtype=False)
    # deterministic given the seed; another seed gives other estimates
    again = compute_mutual_information(sc, device="cpu", cache_root=tmp_path / "cache", **FAST)
    pd.testing.assert_frame_equal(again, df)
    other = compute_mutual_information(sc, device="cpu", cache_root=tmp_path / "cache", seed=1, **FAST)
    assert not np.allclose(other.mi_xz_club[:3], df.mi_xz_club[:3])


# ----------------------------------------------------------------------------- a real tiny sweep
@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A tiny scenario with a trained task model, a tiny learned codec and JPEG, swept once."""
    root = tmp_path_factory.mktemp("mi")
    d = {
        "name": "tiny_mi", "seed": 3, "device": "cpu",
        "dataset": {"name": "synthetic", "n_images": 24, "image_size": 32},
        "task": {"model": "small_cnn", "train": {"n_images": 256, "epochs": 2, "batch_size": 32, "width": 8,
                                                  "augment": False}},
        "methods": [{"name": "rrd", "lmbda": [0.02], "network": NET, "train": TRAIN},
                    {"name": "jpeg", "quality": [10, 80]}],
        "link": {"code": {"k": 512, "n": 768, "num_iter": 10}, "modulation": 16},
        "channels": [{"name": "awgn"}],
        "snr_db": [0.0, 30.0],
    }
    path = root / "s.yaml"
    path.write_text(yaml.safe_dump(d))
    out, cache = root / "out", root / "cache"
    df = run_scenario(parse_scenario(d), out, quiet=True, plots=False, cache_root=cache)
    return {"dict": d, "yaml": path, "out": out, "cache": cache, "table": df}


def _cli(*args):
    return CliRunner().invoke(app, ["mi", *map(str, args)])


def test_cli_adds_columns_to_the_results_table(swept):
    out, before = swept["out"], swept["table"]
    r = _cli(swept["yaml"], "--out", out, "--cache", swept["cache"], "--device", "cpu",
             "--steps", "40", "--hidden", "16")
    assert r.exit_code == 0, r.output
    assert "I(X;Z) CLUB" in r.output and "merged into 6 rows" in r.output and "λ=0.02" in r.output
    mi = pd.read_csv(out / "mi.csv")
    assert mi[["method", "op"]].values.tolist() == [["rrd", "λ=0.02"], ["jpeg", "q=10"], ["jpeg", "q=80"]]
    assert (mi.n_images == 24).all() and (mi.yhat_source == "task").all() and (mi.mi_steps == 40).all()
    assert (mi.mi_hidden.astype(str) == "16").all()
    rrd, jpegs = mi.iloc[0], mi.iloc[1:]
    assert rrd.z_dim == 16 * 4 * 4 and np.isfinite([rrd.mi_xz_club, rrd.mi_xz_mine]).all()
    assert jpegs[["mi_xz_club", "mi_xz_mine", "z_dim"]].isna().all().all()
    assert np.isfinite(mi[["mi_yhat_y_club", "mi_yhat_y_mine"]].to_numpy()).all()
    assert ((mi.mi_yhat_y_plugin >= 0) & (mi.mi_yhat_y_plugin <= 3.0 + 1e-9)).all()  # <= H(Y) = log2 8
    assert rrd.mi_xz_club > rrd.mi_xz_mine  # a deterministic latent: CLUB far above MINE

    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == len(before) == 6
    pd.testing.assert_frame_equal(table[before.columns], before)  # nothing else touched
    added = [c for c in table.columns if c not in before.columns]
    assert set(MI_COLUMNS) <= set(added) and all(c.startswith("mi_") for c in added)
    assert {"mi_n_images", "mi_yhat_accuracy", "mi_z_dim", "mi_hidden"} <= set(added)
    for row in table.itertuples():
        ref = mi[(mi.method == row.method) & (mi.op == row.op)].iloc[0]
        for c in MI_COLUMNS:
            np.testing.assert_equal(getattr(row, c), ref[c])
    # Ŷ is the task model on the error-free reconstruction: the same accuracy the sweep measured
    np.testing.assert_allclose(table.mi_yhat_accuracy, table.accuracy_clean)
    csv = pd.read_csv(out / "results.csv")
    assert list(csv.columns) == list(table.columns) and len(csv) == 6
    assert not list(out.glob(".*.tmp"))


def test_rerun_replaces_columns_and_resume_keeps_them(swept):
    out, sc = swept["out"], parse_scenario(swept["dict"])
    kw = {"device": "cpu", "cache_root": swept["cache"], "batch_size": 64, "hidden": (16,)}
    first = scenario_mutual_information(sc, out, steps=40, **kw)
    cols = list(pd.read_parquet(out / "results.parquet").columns)
    second = scenario_mutual_information(sc, out, steps=30, seed=1, **kw)
    assert second.attrs["merge"] == {"rows": 6, "filled": 6, "stale": 0}
    table = pd.read_parquet(out / "results.parquet")
    assert list(table.columns) == cols  # replaced, not duplicated (no mi_xz_club_x / _y)
    assert (table.mi_steps == 30).all() and (table.mi_seed == 1).all()
    assert not np.isclose(first.mi_xz_club[0], second.mi_xz_club[0])
    rrd = table[table.method == "rrd"]
    assert (rrd.mi_xz_club == second.mi_xz_club[0]).all()

    # `simlink run` resuming into the folder keeps the extra columns of the rows it loads
    d = {**swept["dict"], "snr_db": [0.0, 20.0, 30.0]}
    df = run_scenario(parse_scenario(d), out, quiet=True, plots=False, cache_root=swept["cache"])
    assert len(df) == 9
    old, new = df[df.snr_db != 20.0], df[df.snr_db == 20.0]
    assert old.mi_xz_club.notna().sum() == 2 and old.mi_yhat_y_plugin.notna().all()
    np.testing.assert_array_equal(old[old.method == "rrd"].mi_xz_club, second.mi_xz_club[0])
    assert new[MI_COLUMNS].isna().all().all()  # cells computed after `simlink mi`: rerun it to fill them
    assert set(pd.read_parquet(out / "results.parquet").columns) >= set(MI_COLUMNS)

    # rows computed with other settings of a method (another method_hash) are not given new values
    table = pd.read_parquet(out / "results.parquet")
    table.loc[table.method == "jpeg", "method_hash"] = "other"
    table.to_parquet(out / "results.parquet", index=False)
    merge = merge_into_results(out, second, sc.context_hash("cpu"))  # the folder was decoded on the CPU
    assert merge == {"rows": 9, "filled": 3, "stale": 6}
    table = pd.read_parquet(out / "results.parquet")
    assert table[table.method == "jpeg"][MI_COLUMNS].isna().all().all()
    assert table[table.method == "rrd"].mi_xz_club.notna().all()

    # rows of an earlier simlink carry the version-1 hash of the same settings: filled and relabelled
    from simlink.methods import build_method
    from simlink.sweep.runner import legacy_method_hash

    jpeg = build_method(sc.methods[1])
    table.loc[table.method == "jpeg", "method_hash"] = legacy_method_hash(jpeg)
    table.to_parquet(out / "results.parquet", index=False)
    assert merge_into_results(out, second, sc.context_hash("cpu")) == {"rows": 9, "filled": 9, "stale": 0}
    table = pd.read_parquet(out / "results.parquet")
    assert (table[table.method == "jpeg"].method_hash == second[second.method == "jpeg"].method_hash.iloc[0]).all()


@pytest.mark.parametrize("args, message", [
    (["--hidden", "12,x"], "--hidden '12,x'"),
    (["--hidden", "huge"], "--hidden 'huge'"),
    (["--n-images", "3"], "--n-images 3: too few images"),
    (["--n-images", "500"], "--n-images 500: must be between 1 and the 24 images"),
    (["--steps", "0"], "--steps 0"),
])
def test_cli_errors_name_the_bad_value(swept, tmp_path, args, message):
    r = _cli(swept["yaml"], "--out", tmp_path / "o", "--cache", tmp_path / "c", *args)
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split()), r.output
    assert not (tmp_path / "o" / "mi.csv").exists() and not (tmp_path / "c").exists()  # nothing was trained


def test_cli_refuses_a_folder_of_another_scenario(swept, tmp_path):
    d = {**swept["dict"], "seed": 4}
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(d))
    r = _cli(path, "--out", swept["out"], "--cache", tmp_path / "c", "--steps", "5")
    assert r.exit_code == 2 and "different scenario context" in " ".join(r.output.split()), r.output
    assert not (tmp_path / "c").exists()
