"""The ``simlink`` command: run, train, plot, report, mi, list, info, validate.

User errors (bad scenario, missing dataset, ...) print one clear message and exit with 2;
an interrupted sweep exits with 130 after saving every finished cell.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simlink.errors import SimlinkError

# Plain (click) help: typer's rich help prints a "<bool>" type beside every flag, --help included.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="End-to-end semantic image communication over a real 5G link.")
err = Console(stderr=True)
# Piped output (batch logs) gets a wide console instead of rich's 80-column default.
out = Console() if sys.stdout.isatty() else Console(width=200)


def _fail(e: Exception, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def run(
    scenario: Path = typer.Argument(..., help="scenario YAML file"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default: results/<scenario name>)"),
    device: Optional[str] = typer.Option(None, help="override the scenario's device: auto, cpu, cuda, cuda:N"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or messages (batch jobs)"),
    overwrite: bool = typer.Option(False, help="discard results already in the output folder instead of resuming"),
    no_plots: bool = typer.Option(False, "--no-plots", help="skip drawing plots"),
    no_error_bars: bool = typer.Option(False, "--no-error-bars", help="plots without 95 % error bars / Wilson bars"),
    log_rate: bool = typer.Option(False, "--log-rate", help="log-scale rate axis on the *_vs_bpp plots"),
    cache: Optional[Path] = typer.Option(None, help="model cache folder (default $SIMLINK_CACHE or ~/.cache/simlink)"),
    progress_every: Optional[float] = typer.Option(
        None, "--progress-every", min=0.001, metavar="SECONDS",
        help="when stderr is not a terminal (batch logs): seconds between progress lines "
             "(default $SIMLINK_PROGRESS_S or 30)"),
) -> None:
    """Run a scenario's sweep; trains missing learned models first; resumes from results already in the output folder."""
    from simlink.scenario import load_scenario
    from simlink.sweep.runner import SweepInterrupted, run_scenario

    try:
        sc = load_scenario(scenario)
        target = out_dir or Path("results") / sc.name
        df = run_scenario(sc, target, scenario_file=str(scenario), device=device, quiet=quiet,
                          overwrite=overwrite, plots=not no_plots, cache_root=cache,
                          progress_every_s=progress_every,
                          plot_options={"error_bars": not no_error_bars, "log_rate": log_rate})
    except SweepInterrupted as e:
        _fail(e, code=130)
    except SimlinkError as e:
        _fail(e)
    if not quiet:
        _print_summary(df)


@app.command()
def train(
    scenario: Path = typer.Argument(..., help="scenario YAML file"),
    device: Optional[str] = typer.Option(None, help="override the scenario's device: auto, cpu, cuda, cuda:N"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress messages"),
    cache: Optional[Path] = typer.Option(None, help="model cache folder (default $SIMLINK_CACHE or ~/.cache/simlink)"),
) -> None:
    """Train (or find in the model cache) the task model and every learned method a scenario needs."""
    from rich.table import Table

    from simlink.methods import build_method
    from simlink.scenario import load_scenario
    from simlink.sweep.prepare import fit_methods, training_context
    from simlink.sweep.provenance import resolve_device
    from simlink.sweep.runner import _sigterm_as_interrupt

    log = (lambda s: None) if quiet else (lambda s: err.print(escape(s), highlight=False))
    try:
        sc = load_scenario(scenario)
        dev = resolve_device(device or sc.device)
        methods = [build_method(c) for c in sc.methods]
        with _sigterm_as_interrupt():
            ctx = training_context(sc, dev, log, cache)
            fit_methods(methods, ctx)
    except KeyboardInterrupt:
        _fail(SimlinkError("interrupted; checkpoints are saved in the model cache, rerun to resume"), code=130)
    except SimlinkError as e:
        _fail(e)
    rows = [(m.config.display_name, r) for m in methods for r in m.training_report()]
    if quiet:
        return
    if not rows:
        out.print("nothing to train: every method in this scenario is a classic codec")
        return
    table = Table(title=f"trained models ({dev})")
    for col in ("method", "op", "status", "train s", "bpp", "mse", "ce", "acc", "cache"):
        table.add_column(col)
    for name, r in rows:
        last = r.get("last_epoch", {})
        fmt = lambda k: f"{last[k]:.4g}" if k in last else "-"  # noqa: E731
        table.add_row(name, r["op"], r["status"], f"{r.get('wall_s', 0):.0f}", fmt("bpp"), fmt("mse"), fmt("ce"), fmt("acc"),
                      escape(str(r["cache"])))
    out.print(table)


@app.command("rd-toy")
def rd_toy(
    out_dir: Path = typer.Option(Path("results/rd_toy"), "--out", "-o", help="output folder"),
    levels: int = typer.Option(8, help="grey levels of the toy source"),
    noise: float = typer.Option(0.05, help="label noise of the parity task"),
) -> None:
    """Draw the rate-(D_R, D_T) surface of TOSC-SR's extended R-D problem for a toy source."""
    from simlink.theory.toy import plot_rd_surface

    try:
        paths = plot_rd_surface(out_dir, levels=levels, noise=noise)
    except ValueError as e:
        _fail(e)
    out.print(f"{len(paths)} files written to {out_dir}")


def _print_summary(df) -> None:
    """One compact table per channel: PSNR [dB] per (method, op) and Es/N0 (mean over repeats)."""
    import pandas as pd

    for channel, g in df.groupby("channel", sort=False):
        psnr = g.pivot_table(index=["method", "op"], columns="snr_db", values="psnr", aggfunc="mean", sort=False)
        psnr = psnr[sorted(psnr.columns)].reindex(pd.MultiIndex.from_frame(g[["method", "op"]].drop_duplicates()))
        bpp = g.groupby(["method", "op"], sort=False)["bpp"].mean()
        t = Table(title=f"PSNR \\[dB] over {channel}, Es/N0 \\[dB] across", title_justify="left")
        t.add_column("method")
        t.add_column("op")
        t.add_column("bpp", justify="right")
        for snr in psnr.columns:
            t.add_column(f"{snr:g}", justify="right")
        for (m, op), row in psnr.iterrows():
            t.add_row(m, op, f"{bpp[(m, op)]:.2f}", *[f"{v:.1f}" for v in row])
        out.print(t)


@app.command()
def plot(
    results_dir: Path = typer.Argument(..., help="folder holding results.parquet"),
    no_error_bars: bool = typer.Option(False, "--no-error-bars", help="plots without 95 % error bars / Wilson bars"),
    log_rate: bool = typer.Option(False, "--log-rate", help="log-scale rate axis on the *_vs_bpp plots"),
) -> None:
    """Redraw the plots from a results table alone."""
    import pandas as pd

    from simlink.plots import make_plots

    table = results_dir / "results.parquet"
    if not table.is_file():
        _fail(SimlinkError(f"{table}: no results table here (run `simlink run SCENARIO --out {results_dir}` first)"))
    paths = make_plots(pd.read_parquet(table), results_dir / "plots", error_bars=not no_error_bars, log_rate=log_rate)
    out.print(f"{len(paths)} files written to {results_dir / 'plots'}")


def _select_snrs(df, snrs: list[float]):
    """Rows of ``df`` at the requested Es/N0 values [dB] (all rows when none are requested);
    SimlinkError naming the table's values when one is not there."""
    import numpy as np

    have = sorted(df["snr_db"].unique())
    missing = [s for s in snrs if not np.isclose(have, s).any()]
    if missing:
        raise SimlinkError(f"Es/N0 {', '.join(f'{s:g}' for s in missing)} dB not in the results table; "
                           f"it has {', '.join(f'{s:g}' for s in have)}")
    return df[np.isclose(df["snr_db"].to_numpy()[:, None], snrs).any(axis=1)] if snrs else df


@app.command()
def report(
    results_dir: Path = typer.Argument(..., help="folder holding results.parquet"),
    anchor: str = typer.Option(..., help="method every other method is compared with"),
    metric: str = typer.Option("psnr", help="quality column: psnr, ssim, ms_ssim, accuracy, ..."),
    method: str = typer.Option("pchip", help="BD fit: pchip (>= 2 points per curve) or cubic (>= 4)"),
    snr: Optional[list[float]] = typer.Option(None, help="only these Es/N0 values \\[dB] (repeatable); default all"),
) -> None:
    """Bjøntegaard deltas (BD-rate, BD-metric) of every method vs an anchor, per channel and Es/N0
    plus the error-free curves; writes DIR/report_bd_<metric>.csv."""
    import pandas as pd

    from simlink.analysis.report import bd_table
    from simlink.atomic import atomic_write_text

    table = results_dir / "results.parquet"
    if not table.is_file():
        _fail(SimlinkError(f"{table}: no results table here (run `simlink run SCENARIO --out {results_dir}` first)"))
    try:
        bd = bd_table(_select_snrs(pd.read_parquet(table), snr or []), anchor, metric, method)
    except SimlinkError as e:
        _fail(e)
    csv = results_dir / f"report_bd_{metric}.csv"
    atomic_write_text(csv, bd.to_csv(index=False))
    fmt = lambda v, spec: "–" if pd.isna(v) else format(v, spec)  # noqa: E731
    t = Table(title=f"BD vs {escape(anchor)} ({escape(metric)}, {method}); rate = bpp", title_justify="left",
              caption="BD-rate < 0 / BD-metric > 0: better than the anchor; –: too few points or no overlap",
              caption_justify="left")
    for col in ("channel", "Es/N0 \\[dB]", "method", "BD-rate \\[%]", f"BD-{escape(metric)}", "points (method/anchor)"):
        t.add_column(col, justify="left" if col in ("channel", "method") else "right")
    for r in bd.itertuples():
        t.add_row(escape(r.channel), fmt(r.snr_db, "g"), escape(r.method), fmt(r.bd_rate, "+.2f"),
                  fmt(r.bd_metric, "+.3g"), f"{r.n_points}/{r.n_anchor}")
    out.print(t)
    out.print(f"written to {csv}")


@app.command("mi")
def mutual_information(
    scenario: Path = typer.Argument(..., help="scenario YAML file"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="results folder (default: results/<scenario name>)"),
    cache: Optional[Path] = typer.Option(None, help="model cache folder (default $SIMLINK_CACHE or ~/.cache/simlink)"),
    device: Optional[str] = typer.Option(None, help="override the scenario's device: auto, cpu, cuda, cuda:N"),
    n_images: Optional[int] = typer.Option(None, "--n-images", help="use the first N of the scenario's images (default all)"),
    steps: int = typer.Option(1000, help="Adam steps per estimator network"),
    hidden: str = typer.Option("small", help="estimator MLP: paper (1024,512,512), small (128,128) or a comma list"),
    seed: int = typer.Option(0, help="seed of the estimator networks, split and batches"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress messages"),
) -> None:
    """Estimate I(X;Z) and I(Ŷ;Y) (CLUB, MINE; plug-in I(argmax Ŷ;Y)) per method and operating point;
    writes DIR/mi.csv and adds the mi_* columns to DIR/results.parquet."""
    import math

    from simlink.analysis.mutual_info_table import parse_hidden, scenario_mutual_information
    from simlink.scenario import load_scenario
    from simlink.sweep.runner import _sigterm_as_interrupt

    log = (lambda s: None) if quiet else (lambda s: err.print(escape(s), highlight=False))
    try:
        sizes = parse_hidden(hidden)  # before anything slow
        sc = load_scenario(scenario)
        target = out_dir or Path("results") / sc.name
        from simlink.sweep.lock import FolderLock
        from simlink.sweep.store import prepare_out_dir

        prepare_out_dir(target)
        with _sigterm_as_interrupt(), FolderLock(target, log):  # it adds columns to the folder's table
            df = scenario_mutual_information(sc, target, log=log, device=device, cache_root=cache,
                                             n_images=n_images, steps=steps, hidden=sizes, seed=seed)
    except KeyboardInterrupt:
        _fail(SimlinkError("interrupted; trained models are saved in the model cache, nothing was written"), code=130)
    except SimlinkError as e:
        _fail(e)
    fmt = lambda v: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"  # noqa: E731
    t = Table(title=f"mutual information \\[bits], {len(df) and int(df.n_images.iloc[0])} images; "
                    f"hidden {','.join(map(str, sizes))}, {steps} steps, seed {seed}",
              title_justify="left", caption="CLUB: upper bound, MINE: lower bound, plug-in: I(argmax Ŷ;Y) of the "
              "confusion matrix; –: no latent / no classifier", caption_justify="left")
    for col in ("method", "op", "dim Z", "I(X;Z) CLUB", "I(X;Z) MINE", "Ŷ from", "I(Ŷ;Y) CLUB", "I(Ŷ;Y) MINE",
                "I(Ŷ;Y) plug-in"):
        t.add_column(col, justify="left" if col in ("method", "op", "Ŷ from") else "right")
    for r in df.itertuples():
        t.add_row(escape(r.method), escape(r.op), "–" if math.isnan(r.z_dim) else str(int(r.z_dim)),
                  fmt(r.mi_xz_club), fmt(r.mi_xz_mine), r.yhat_source, fmt(r.mi_yhat_y_club), fmt(r.mi_yhat_y_mine),
                  fmt(r.mi_yhat_y_plugin))
    out.print(t)


def _parts_note(cls) -> str:
    """``"; parts: labels, features (optional: ...)"`` for a method class with named payload parts
    (its class-level ``parts``; a method whose ``payload_parts()`` depends on its config shows those)."""
    from simlink.methods.base import DEFAULT_PART

    parts = getattr(cls, "parts", ())
    if cls.kind != "digital" or [p.name for p in parts] == [DEFAULT_PART]:
        return ""
    return "; parts: " + ", ".join(p.name if p.essential else f"{p.name} (optional{': ' + p.on_loss if p.on_loss else ''})"
                                   for p in parts)


@app.command("list")
def list_things() -> None:
    """List datasets, methods, channels and task kinds."""
    from simlink.data import list_datasets
    from simlink.methods import METHODS
    from simlink.phy.channels import CHANNELS
    from simlink.tasks.kinds import TASK_KINDS

    for title, rows in (
        ("datasets", list_datasets()),
        ("methods", [(n, f"({c.kind}{_parts_note(c)}) {c.description}") for n, c in METHODS.items()]),
        ("channels", [(n, c.description) for n, c in CHANNELS.items()]),
        ("task kinds", [(n, k.description) for n, k in TASK_KINDS.items()]),
    ):
        t = Table(title=title, show_header=False, title_justify="left")
        t.add_column("name", style="bold")
        t.add_column("description")
        for name, desc in rows:
            t.add_row(escape(name), escape(desc))
        out.print(t)


@app.command()
def validate(scenario: Path = typer.Argument(..., help="scenario YAML file")) -> None:
    """Check a scenario file and print the cells it would run."""
    from simlink.scenario import load_scenario

    try:
        sc = load_scenario(scenario)
    except SimlinkError as e:
        _fail(e)
    n_ops = 0
    from simlink.methods import build_method

    for cfg in sc.methods:
        n_ops += len(build_method(cfg).operating_points())
    cells = n_ops * len(sc.channels) * len(sc.snr_values) * sc.repeats
    out.print(f"{scenario}: valid — {len(sc.methods)} methods, {n_ops} operating points, "
              f"{len(sc.channels)} channels, {len(sc.snr_values)} SNR points, {sc.repeats} repeats = {cells} cells")
    for name in sc.link.parts:  # unequal error protection: say what each named part gets
        link = sc.link.for_part(name)
        out.print(escape(f"  part {name}: 5G LDPC k={link.code.k}, n={link.code.n} (rate {link.code.rate:.3g}), "
                         f"{link.modulation}-QAM, CRC {link.crc or 'none'}"))


@app.command()
def info() -> None:
    """Versions, devices and git revision."""
    from simlink.sweep.provenance import git_revision, package_versions

    import torch

    for k, v in package_versions().items():
        out.print(f"{k:14s} {v}")
    out.print(f"{'cuda':14s} {torch.cuda.is_available()} ({torch.cuda.device_count()} devices)")
    rev = git_revision()
    if rev["commit"] is None:
        text = "unknown (not a git checkout, or git is not installed)"
    else:
        text = rev["commit"] + (" (uncommitted changes)" if rev["dirty"] else "")
    out.print(f"{'git':14s} {text}")


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
