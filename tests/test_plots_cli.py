"""Plots from a table alone, and the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from simlink.cli import app
from simlink.plots import make_plots, method_styles

runner = CliRunner()


def _table() -> pd.DataFrame:
    rows = []
    for m in ("jpeg", "webp"):
        for op, bpp in (("q=10", 0.5), ("q=90", 2.0)):
            for ch in ("awgn", "rayleigh_block(block)"):
                for snr in (0.0, 10.0, 20.0):
                    ok = snr > 5
                    rows.append(dict(method=m, op=op, bpp=bpp, cpp=bpp * 0.75, channel=ch, snr_db=snr, repeat=0,
                                     psnr=30.0 * ok + 10, ssim=0.9 * ok, ms_ssim=0.9 * ok, psnr_clean=40.0,
                                     ssim_clean=0.95, ms_ssim_clean=0.95, bler=0.0 if ok else 1.0, lost_frac=float(not ok),
                                     n_images=4, n_blocks=10, n_block_errors=0 if ok else 10, code_k=1024, code_n=1536,
                                     modulation=16))
    return pd.DataFrame(rows)


def capture_figures(monkeypatch) -> dict:
    """Record ``{name: Figure}`` of every figure the plots save, then save it as usual.
    (``simlink.plots.bounds`` binds ``_save`` at import, ``tradeoff`` looks it up per call.)"""
    import simlink.plots
    import simlink.plots.bounds

    figs, original = {}, simlink.plots._save

    def capture(fig, out_dir, name):
        figs[name] = fig
        return original(fig, out_dir, name)

    monkeypatch.setattr(simlink.plots, "_save", capture)
    monkeypatch.setattr(simlink.plots.bounds, "_save", capture)
    return figs


def test_make_plots_writes_every_figure(tmp_path, monkeypatch):
    figs = capture_figures(monkeypatch)
    paths = make_plots(_table(), tmp_path)
    names = {p.name for p in paths}
    for stem in ("psnr_vs_snr", "ssim_vs_snr", "ms_ssim_vs_snr", "psnr_vs_bpp", "bler_vs_snr", "lost_vs_snr"):
        assert {f"{stem}.pdf", f"{stem}.png"} <= names
    assert names == {f"{n}.{ext}" for n in figs for ext in ("pdf", "png")}  # each drawn figure is written
    assert all(p.stat().st_size > 1000 for p in paths)
    assert (tmp_path / "psnr_vs_snr.pdf").read_bytes().startswith(b"%PDF")
    # and what was drawn is the table's (the full check is in test_plot_data.py)
    awgn, ray = figs["psnr_vs_snr"].axes[:2]
    assert (awgn.get_title(), ray.get_title()) == ("awgn", "rayleigh_block(block)")
    line = {ln.get_label(): ln for ln in awgn.get_lines()}["jpeg q=10 (0.50 bpp)"]
    np.testing.assert_allclose(line.get_xdata(), [0.0, 10.0, 20.0])
    np.testing.assert_allclose(line.get_ydata(), [10.0, 40.0, 40.0])
    bler = {ln.get_label(): ln for ln in figs["bler_vs_snr"].axes[0].get_lines()}
    for ch in ("awgn", "rayleigh_block(block)"):  # 4 ops x 10 blocks pooled; zero-error points left out
        np.testing.assert_allclose(bler[f"{ch} (40 blocks/pt)"].get_xdata(), [0.0])
        np.testing.assert_allclose(bler[f"{ch} (40 blocks/pt)"].get_ydata(), [1.0])


def test_method_styles_are_stable_and_distinct():
    a = method_styles(pd.DataFrame({"method": ["jpeg", "bpg", "webp", "jpeg-b"]}))
    b = method_styles(pd.DataFrame({"method": ["webp", "jpeg"]}))
    assert a["jpeg"] == b["jpeg"] and a["webp"] == b["webp"]  # registry names keep their style
    styles = [tuple(v.items()) for v in a.values()]
    assert len(set(styles)) == len(styles)  # custom labels never collide with another method


def test_cli_list_validate_run_plot(tmp_path, tiny_scenario_dict):
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0
    for word in ("synthetic", "cifar10", "jpeg", "heif", "awgn", "rayleigh_fast"):
        assert word in r.stdout
    bad = tmp_path / "bad.yaml"
    tiny_scenario_dict["link"]["modulation"] = 12
    bad.write_text(yaml.safe_dump(tiny_scenario_dict))
    r = runner.invoke(app, ["validate", str(bad)])
    assert r.exit_code == 2
    assert "link.modulation: 12 is not one of 4, 16, 64, 256" in r.output.replace("\n", "")
    tiny_scenario_dict["link"]["modulation"] = 16
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny_scenario_dict))
    r = runner.invoke(app, ["validate", str(good)])
    assert r.exit_code == 0 and "4 cells" in r.output
    out = tmp_path / "out"
    r = runner.invoke(app, ["run", str(good), "--out", str(out), "--quiet", "--no-plots"])
    assert r.exit_code == 0, r.output
    assert not (out / "plots").exists()
    r = runner.invoke(app, ["plot", str(out)])
    assert r.exit_code == 0 and (out / "plots" / "psnr_vs_bpp.pdf").exists()
    r = runner.invoke(app, ["plot", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "no results table" in r.output
    assert np.isfinite(pd.read_parquet(out / "results.parquet").psnr).all()


def test_cli_missing_dataset_is_a_clear_error(tmp_path, tiny_scenario_dict, monkeypatch):
    monkeypatch.delenv("SIMLINK_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no download cache either
    tiny_scenario_dict["dataset"] = {"name": "cifar10", "n_images": 4, "root": str(tmp_path / "nowhere")}
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump(tiny_scenario_dict))
    r = runner.invoke(app, ["run", str(sc), "--out", str(tmp_path / "o"), "--quiet"])
    assert r.exit_code == 2
    text = r.output.replace("\n", " ")
    assert "dataset 'cifar10' (split 'test') not found" in text
    assert str(tmp_path / "nowhere") in text and "[root]" in text and "test.npz" in text
