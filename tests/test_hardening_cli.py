"""Runtime mistakes on the command line end in one line and exit status 2, never a traceback,
and a run that fails before its first row leaves no output folder behind (issue 12)."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from simlink.cli import app


def _invoke(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r, " ".join(r.output.split())


def _scenario_file(tmp_path, d) -> str:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(d))
    return str(f)


def test_out_that_is_a_file(tmp_path, tiny_scenario_dict):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    r, text = _invoke("run", _scenario_file(tmp_path, tiny_scenario_dict), "--out", taken, "--quiet")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"{taken}: --out is an existing file, not a folder; choose another --out" in text
    assert taken.read_text() == "not a folder"


def test_out_that_cannot_be_created(tmp_path, tiny_scenario_dict):
    blocked = tmp_path / "file"
    blocked.write_text("x")
    r, text = _invoke("run", _scenario_file(tmp_path, tiny_scenario_dict), "--out", blocked / "run", "--quiet")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"{blocked / 'run'}: cannot create the output folder" in text and "choose a writable --out" in text


def test_out_that_is_not_writable(tmp_path, tiny_scenario_dict, monkeypatch):
    """A read-only folder (simulated: the tests may run as root, for whom every folder is writable)."""
    import simlink.sweep.store as store

    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(store, "_writable", lambda folder: False)
    r, text = _invoke("run", _scenario_file(tmp_path, tiny_scenario_dict), "--out", ro, "--quiet")
    assert r.exit_code == 2 and f"{ro}: the output folder is not writable" in text
    assert ro.is_dir()  # a folder the user made is never removed


def test_failed_run_leaves_no_empty_folder(tmp_path, tiny_scenario_dict):
    d = dict(tiny_scenario_dict, dataset={"name": "folder", "root": str(tmp_path / "no-such-images"), "n_images": 2})
    out = tmp_path / "results" / "run"
    r, text = _invoke("run", _scenario_file(tmp_path, d), "--out", out, "--quiet")
    assert r.exit_code == 2 and "Traceback" not in r.output and "no-such-images" in text
    assert not out.exists()


def test_info_prints_the_revision_as_text():
    r, text = _invoke("info")
    assert r.exit_code == 0
    line = next(ln for ln in r.output.splitlines() if ln.startswith("git"))
    import re

    assert re.fullmatch(r"git\s+([0-9a-f]{40}( \(uncommitted changes\))?|unknown \(.*\))", line.strip()), line


def test_help_shows_no_bool_type():
    for cmd in ("run", "train", "plot", "validate"):
        r, text = _invoke(cmd, "--help")
        assert r.exit_code == 0 and "--help" in text
        assert "<bool>" not in text and "BOOLEAN" not in text, cmd


def test_second_run_into_a_busy_folder_fails_naming_the_holder(tmp_path, tiny_scenario_dict):
    """A live holder (this test's parent process stands in for the other run) blocks the folder;
    a lock left by a dead process is taken over and the run completes."""
    import json
    import os
    import socket
    import subprocess
    import sys

    from simlink.sweep.lock import LOCK_NAME

    out = tmp_path / "run"
    out.mkdir()
    lock = out / LOCK_NAME
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(), "started": "2026-01-01T00:00:00"}))
    r, text = _invoke("run", _scenario_file(tmp_path, tiny_scenario_dict), "--out", out, "--quiet", "--no-plots")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"another simlink run (pid {os.getppid()} on this host, started 2026-01-01T00:00:00) is writing here" in text
    assert not (out / "results.parquet").exists() and lock.exists()
    lock.write_text(json.dumps({"host": "node17", "pid": 4242}))
    r, text = _invoke("run", _scenario_file(tmp_path, tiny_scenario_dict), "--out", out, "--quiet", "--no-plots")
    assert r.exit_code == 2 and "pid 4242 on host node17" in text and f"delete {lock}" in text
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    r, text = _invoke("run", _scenario_file(tmp_path, tiny_scenario_dict), "--out", out, "--no-plots")
    assert r.exit_code == 0, r.output
    assert "taking over the stale lock" in text
    assert (out / "results.parquet").exists() and not lock.exists()


def test_skipped_unreadable_images_are_recorded_in_the_manifest(tmp_path, tiny_scenario_dict):
    import json

    import numpy as np
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"ok{i}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    d = dict(tiny_scenario_dict, dataset={"name": "folder", "root": str(root), "n_images": 4, "image_size": 32},
             snr_db=[30.0])
    r, text = _invoke("run", _scenario_file(tmp_path, d), "--out", tmp_path / "a", "--quiet", "--no-plots")
    assert r.exit_code == 2 and "broken.png" in text and "skip_unreadable" in text
    assert not (tmp_path / "a").exists()  # failed before any work
    d["dataset"].update(skip_unreadable=True, n_images=3)
    r, text = _invoke("run", _scenario_file(tmp_path, d), "--out", tmp_path / "b", "--quiet", "--no-plots")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [p.endswith("broken.png") for p in manifest["dataset_skipped"]] == [True]


def test_batch_log_gets_plain_progress_lines(tmp_path, tiny_scenario_dict, monkeypatch):
    """stderr not a terminal (CliRunner's, like a SLURM log): plain lines with cells done / total,
    elapsed, ETA and what runs; none with --quiet; the interval from --progress-every or the env."""
    import re

    f = _scenario_file(tmp_path, dict(tiny_scenario_dict, snr_db=[20.0, 30.0],
                                      methods=[{"name": "jpeg", "quality": [50]}]))
    r, text = _invoke("run", f, "--out", tmp_path / "a", "--no-plots", "--progress-every", "0.001")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if re.match(r"simlink: \d+/2 cells, \d+:\d\d:\d\d elapsed, ETA ", ln)]
    assert len(lines) >= 2 and lines[-1].startswith("simlink: 2/2 cells") and "jpeg" in lines[0]
    assert not any("━" in ln and "cells" in ln for ln in r.output.splitlines())  # no rich bar in a log
    r, _ = _invoke("run", f, "--out", tmp_path / "b", "--no-plots", "--quiet")
    assert r.exit_code == 0 and "cells," not in r.output
    monkeypatch.setenv("SIMLINK_PROGRESS_S", "3600")
    r, _ = _invoke("run", f, "--out", tmp_path / "c", "--no-plots")
    assert len([ln for ln in r.output.splitlines() if " cells, " in ln]) == 1  # only the last line
    monkeypatch.setenv("SIMLINK_PROGRESS_S", "soon")
    r, text = _invoke("run", f, "--out", tmp_path / "d", "--no-plots")
    assert r.exit_code == 2 and "SIMLINK_PROGRESS_S='soon' is not a number of seconds" in text
