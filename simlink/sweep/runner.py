"""Run a scenario: encode once per (method, op), transmit many, write the tidy table.

Order of work ("encode once, transmit many"):

1. load the images; compute the concealment image's metrics once;
2. load (or train) the task model, and train (or load from the model cache) every learned
   method that has cells to run;
3. per (method, operating point): source-encode every image, decode the error-free streams,
   measure them, and prepare the link frame (code-block segmentation, CRC, LDPC encoding, QAM mapping);
   analog methods (deep JSCC) encode to channel symbols instead, measured through a noiseless
   channel for the ``*_clean`` columns;
4. per (channel, SNR, repeat) cell: channel → equalisation → demapping → BP decoding → CRC;
   only images whose received bytes differ from the sent ones are source-decoded again
   (analog: channel → equalisation → the method's decoders, see :mod:`simlink.phy.analog`);
5. one row per cell goes to the :class:`~simlink.sweep.store.ResultStore`, flushed atomically
   at least every few seconds, so Ctrl-C or a kill loses at most the cells since the last flush
   and a rerun of the same command resumes.

Steps 3–4 go through the method's payload path (:mod:`simlink.sweep.payloads`: one class per
payload kind, so the runner has no branch per kind). :func:`run_scenario` is :func:`plan` (device,
store, images, methods, cells to do), :func:`write_manifest`, :func:`execute` (training, then the
cells) and :func:`finish` (plots, manifest, the table).
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from simlink import __version__
from simlink.data import load_dataset
from simlink.errors import SimlinkError
from simlink.hashing import stable_hash
from simlink.methods import build_method
from simlink.methods.base import Method, OperatingPoint
from simlink.metrics.stats import mean_ci
from simlink.scenario import Scenario
from simlink.schema import settings_dump
from simlink.sweep.grid import Cell, cell_seed, expand_grid
from simlink.sweep.payloads import PAYLOAD_KINDS, PayloadPath, SourceSide, conceal_metrics, encode_source, rate_ci
from simlink.sweep.prepare import fit_methods, training_context
from simlink.sweep.provenance import device_info, git_revision, package_versions, resolve_device
from simlink.sweep.receiver import Outcome
from simlink.sweep.lock import FolderLock
from simlink.sweep.store import ResultStore, prepare_out_dir, remove_if_unused

FLUSH_EVERY_S = 5.0

#: Column order of the results table (a payload path's extra columns go after these).
COLUMNS = ["scenario", "method", "method_name", "method_hash", "op", "op_params", "payload", "bpp", "cpp", "channel",
           "snr_db", "ebno_db", "repeat", "modulation", "code_k", "code_n", "code_rate", "error_policy"]
#: The main row's columns repeated in every row of the per-class table (``results_per_class.parquet``).
PER_CLASS_KEYS = ["scenario", "method", "method_hash", "op", "bpp", "channel", "snr_db", "repeat"]
TAIL_COLUMNS = ["bler", "bler_ci", "ber", "lost_frac", "lost_frac_ci", "concealed_frac", "target_met_frac",
                "n_images", "n_blocks", "n_block_errors"]


class SweepInterrupted(SimlinkError):
    """The sweep was stopped (Ctrl-C or SIGTERM); finished cells are saved."""


class Stopwatch:
    """Wall time accumulated per named stage (seconds)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - t0


PROGRESS_EVERY_S = 30.0
"""Seconds between plain progress lines when stderr is not a terminal (``$SIMLINK_PROGRESS_S``)."""


def progress_interval() -> float:
    """:data:`PROGRESS_EVERY_S`, or ``$SIMLINK_PROGRESS_S`` (seconds, > 0) when set."""
    import os

    raw = os.environ.get("SIMLINK_PROGRESS_S")
    if raw is None:
        return PROGRESS_EVERY_S
    try:
        value = float(raw)
    except ValueError:
        raise SimlinkError(f"SIMLINK_PROGRESS_S={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise SimlinkError(f"SIMLINK_PROGRESS_S={raw!r} must be positive")
    return value


class _Progress:
    """Progress of the sweep: a rich bar with ETA on a terminal; in a batch log (stderr not a
    terminal, e.g. a SLURM job's file) one plain line every ``every_s`` seconds — cells done /
    total, elapsed, ETA and what is running — and a last line at the end; nothing when quiet."""

    def __init__(self, total: int, quiet: bool, stream=None, every_s: float | None = None):
        self.quiet, self.total, self.done = quiet, total, 0
        self.stream = stream if stream is not None else sys.stderr
        self.plain = not quiet and not (hasattr(self.stream, "isatty") and self.stream.isatty())
        self.every_s = progress_interval() if every_s is None else every_s
        self.t0 = self.last = time.perf_counter()
        self.text = "starting"
        if quiet or self.plain:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._p = Progress(
            TextColumn("[bold]{task.description:<40}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("cells"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
            console=Console(file=self.stream),
        )
        self._task = self._p.add_task("starting", total=total)
        self._p.start()

    def describe(self, text: str) -> None:
        self.text = text
        if not self.quiet and not self.plain:
            self._p.update(self._task, description=text[:40])

    def advance(self) -> None:
        self.done += 1
        if self.quiet:
            return
        if not self.plain:
            self._p.advance(self._task)
        elif time.perf_counter() - self.last >= self.every_s:
            self._line()

    def _line(self) -> None:
        self.last = now = time.perf_counter()
        elapsed = now - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else math.nan
        eta_text = "?" if math.isnan(eta) else _hms(eta)
        print(f"simlink: {self.done}/{self.total} cells, {_hms(elapsed)} elapsed, ETA {eta_text}; {self.text}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.quiet:
            return
        if self.plain:
            if self.total:
                self._line()
        else:
            self._p.stop()


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (``kill``) into KeyboardInterrupt so it is handled like Ctrl-C."""

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def method_hash(method: Method) -> str:
    """Hash of a method's settings that differ from their defaults (display label excluded), so a
    method key added later with a default keeps every existing row's hash (changing a default
    needs a new ``"version"``, as for :meth:`Scenario.context_hash`)."""
    return stable_hash({"version": 2, "method": method.name, **settings_dump(method.config, exclude={"label"})})


def legacy_method_hash(method: Method) -> str:
    """The version-1 :func:`method_hash` (every field of the config), which tables written by
    earlier simlink versions carry."""
    return stable_hash({k: v for k, v in method.cache_key().items() if k != "label"})


def summarise(scenario: Scenario, cell: Cell, src: SourceSide, path: PayloadPath, rx, outcome: Outcome,
              mhash: str, measure=None) -> dict:
    """One tidy row from a cell's per-image outcome: means over images with 95 % half-widths of
    every metric, the error-free means (``*_clean``), the payload path's link columns, losses.
    Per-image aggregates (segmentation confusion matrices) become the columns of their task kind
    (``measure.cell_columns``: ``miou``, ``miou_ci`` by a bootstrap seeded from the cell ...)."""
    from simlink.metrics.measure import is_aggregate

    n = len(outcome.lost)
    row = {
        "scenario": scenario.name,
        "method": cell.method,
        "method_name": src.method.name,
        "method_hash": mhash,
        "op": cell.op,
        "op_params": json.dumps(src.op.params, sort_keys=True),
        "payload": path.kind,
        "channel": cell.channel,
        "snr_db": float(cell.snr_db),
        "repeat": int(cell.repeat),
        "error_policy": scenario.error_policy,
        **path.row_fields(src, rx, outcome, float(cell.snr_db)),
    }
    for name, values in outcome.metrics.items():
        if not is_aggregate(values):
            row[name], row[f"{name}_ci"] = mean_ci(values)
    if measure is not None:
        row.update(measure.cell_columns(outcome.metrics, cell_seed(scenario.seed, cell)))
    for name, values in src.clean.items():
        if not is_aggregate(values):
            row[f"{name}_clean"] = float(np.mean(values))
    if measure is not None:
        row.update({f"{k}_clean": v for k, v in measure.cell_columns(src.clean, None).items()})
    row["lost_frac"], row["lost_frac_ci"] = rate_ci(int(outcome.lost.sum()), n)
    row["concealed_frac"] = float(outcome.concealed.mean())
    met = [m for m in src.meta.get("target_met") or [] if m is not None]
    row["target_met_frac"] = float(np.mean(met)) if met else math.nan
    row["n_images"] = n
    head = [c for c in COLUMNS if c in row]
    tail = [c for c in TAIL_COLUMNS if c in row]
    middle = [c for c in row if c not in head and c not in tail]
    return {c: row[c] for c in head + middle + tail}


# ---------------------------------------------------------------------------------------------
# the four steps of a run


@dataclass
class Plan:
    """What a run will do, before any heavy work.

    Attributes:
        scenario, out_dir, device: what runs where.
        data: the sent images (:class:`~simlink.data.base.ImageSet`).
        methods: ``(display name, method, operating points)`` per scenario entry.
        cells: the whole grid; todo: the cells not yet in the store.
        store: the result store (resumed).
        method_hashes: display name -> :func:`method_hash`.
        previous_runs: the manifest's earlier runs.
        task_on_originals: the task model's quality on the sent images themselves
            (:meth:`~simlink.metrics.measure.Measure.on_originals`; the manifest's), or ``None``.
    """

    scenario: Scenario
    out_dir: Path
    device: str
    data: object
    methods: list[tuple[str, Method, list[OperatingPoint]]]
    cells: list[Cell]
    todo: list[Cell]
    store: ResultStore
    method_hashes: dict[str, str]
    previous_runs: list = field(default_factory=list)
    task_on_originals: dict | None = None


def plan(scenario: Scenario, out_dir: str | Path, *, device: str | None, overwrite: bool,
         log: Callable[[str], None], sw: Stopwatch) -> Plan:
    """Resolve the device, open (resume) the result store, load the images, build the methods
    and find the cells still to compute."""
    out_dir = Path(out_dir)
    torch_device = resolve_device(device or scenario.device)
    # folders from earlier hash versions were all decoded by Sionna: they resume only with it
    decoders = scenario.link.decoders_used(torch_device)
    legacy = scenario.legacy_context_hashes() if decoders == ("sionna",) else []
    if decoders != ("sionna",) and not overwrite:
        _refuse_other_decoder(out_dir, scenario, decoders)
    store = ResultStore(out_dir, scenario.context_hash(torch_device), overwrite=overwrite, legacy_hashes=legacy)
    previous = {}
    if store.manifest_path.exists() and not overwrite:
        previous = json.loads(store.manifest_path.read_text())
    with sw("data"):
        d = scenario.dataset
        data = load_dataset(d.name, split=d.split, n_images=d.n_images, image_size=d.image_size,
                            root=d.root, seed=scenario.seed, download=d.download,
                            skip_unreadable=d.skip_unreadable)
    methods = []
    for cfg in scenario.methods:
        m = build_method(cfg)
        if m.kind not in PAYLOAD_KINDS:  # before any training
            raise SimlinkError(f"method {cfg.display_name!r}: kind {m.kind!r} is not one of "
                               f"{', '.join(PAYLOAD_KINDS.names())}")
        methods.append((cfg.display_name, m, m.operating_points()))
    cells = expand_grid(methods, scenario.channel_labels(), scenario.snr_values, scenario.repeats)
    store.set_order([c.key for c in cells])
    method_hashes = {name: method_hash(m) for name, m, _ in methods}
    store.relabel_method_hashes({name: legacy_method_hash(m) for name, m, _ in methods}, method_hashes)
    done = store.done(method_hashes)
    todo = [c for c in cells if c.key not in done]
    stale = sum(c.key in store.done() and c.key not in done for c in cells)
    if stale:
        log(f"simlink: {stale} cells were computed with other method settings and are recomputed")
    return Plan(scenario, out_dir, torch_device, data, methods, cells, todo, store, method_hashes,
                previous.get("runs", []), previous.get("task_on_originals"))


def _refuse_other_decoder(out_dir: Path, scenario: Scenario, decoders: tuple[str, ...]) -> None:
    """A one-line error when ``out_dir`` holds this scenario's results decoded by Sionna's LDPC
    decoder and this run would decode with another one (their cells must not mix)."""
    manifest = out_dir / "manifest.json"
    try:
        old = json.loads(manifest.read_text()).get("context_hash")
    except (OSError, ValueError, AttributeError):
        return  # no folder yet, or the store reports what is wrong with it
    if old in [scenario.context_hash(None), *scenario.legacy_context_hashes()]:
        raise SimlinkError(
            f"{out_dir}: its results were decoded by Sionna's LDPC decoder and this run would use the "
            f"{'/'.join(decoders)} decoder (link.decoder: {scenario.link.decoder}); set link.decoder: sionna to "
            "resume this folder, or choose another --out (or --overwrite)")


def write_manifest(p: Plan, scenario_file: str | None) -> dict:
    """The manifest (scenario, versions, git, device, cell count), written before any row: a
    resume must find the context hash."""
    manifest = {
        "simlink_version": __version__,
        "scenario_file": scenario_file,
        "command": list(sys.argv),
        "scenario": p.scenario.to_yaml_dict(),
        "seed": p.scenario.seed,
        "versions": package_versions(),
        "git": git_revision(),
        "device": device_info(p.device),
        "ldpc_decoder": list(p.scenario.link.decoders_used(p.device)),  # what link.decoder resolved to
        "n_cells": len(p.cells),
        "dataset_skipped": list(getattr(p.data, "skipped", [])),  # unreadable files skipped (skip_unreadable)
        "status": "running",
        "task_on_originals": p.task_on_originals,
        "runs": p.previous_runs,
    }
    p.store.write_manifest(manifest)
    return manifest


def execute(p: Plan, *, log: Callable[[str], None], quiet: bool, sw: Stopwatch,
            cache_root: str | Path | None, progress_every_s: float | None = None) -> tuple[str, int]:
    """Train what is missing, then compute every cell still to do, flushing the store every
    :data:`FLUSH_EVERY_S` seconds and after each operating point.

    Returns ``(status, cells computed)``; status is ``complete`` or ``interrupted`` (Ctrl-C /
    SIGTERM while sweeping). Raises :class:`SweepInterrupted` when interrupted while training.
    """
    sc, store = p.scenario, p.store
    if p.todo:
        log(f"simlink: {len(p.todo)} of {len(p.cells)} cells to run ({len(p.cells) - len(p.todo)} already in "
            f"{p.out_dir}) on {p.device}")
    need = {c.method for c in p.todo}
    try:
        with _sigterm_as_interrupt():
            with sw("task_model"):
                ctx = training_context(sc, p.device, log, cache_root)
            with sw("train"):
                fit_methods([m for name, m, _ in p.methods if name in need], ctx)
    except KeyboardInterrupt:
        raise SweepInterrupted(
            "interrupted while training; the last checkpoint is saved in the model cache, "
            "rerun the same command to resume") from None
    from simlink.metrics.measure import Measure

    measure = Measure(p.data, task=ctx.task, kind=sc.task.kind if sc.task is not None else None, device=p.device)
    if ctx.task is not None:
        with sw("metrics"):
            p.task_on_originals = measure.on_originals(sc.seed)
        log("simlink: the task model on the original images: " +
            ", ".join(f"{k} {v:.4f}" for k, v in p.task_on_originals.items() if not k.endswith("_ci")))
    with sw("link_setup"):
        paths = {kind: PAYLOAD_KINDS[kind](sc, p.device) for kind in {m.kind for name, m, _ in p.methods if name in need}}
    with sw("metrics"):
        conceal = conceal_metrics(p.data, measure) if p.todo else {}

    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for c in p.todo:
        groups[(c.method, c.op)].append(c)
    by_name = {name: (m, {op.label: op for op in ops}) for name, m, ops in p.methods}
    channel_by_label = dict(zip(sc.channel_labels(), sc.channels))

    progress = _Progress(len(p.todo), quiet, every_s=progress_every_s)
    status, n_computed, last_flush = "complete", 0, time.perf_counter()
    try:
        with _sigterm_as_interrupt():
            for (mname, oplabel), cells in groups.items():
                method, ops = by_name[mname]
                op, path = ops[oplabel], paths[method.kind]
                progress.describe(f"{mname} {oplabel}: encoding")
                src = encode_source(method, op, p.data, sc.seed, path, measure, sw)
                for cell in cells:
                    progress.describe(f"{mname} {oplabel} {cell.channel} {cell.snr_db:g} dB")
                    t_cell = time.perf_counter()
                    with sw("link"):
                        rx = path.transmit(src, channel_by_label[cell.channel], cell.snr_db, cell_seed(sc.seed, cell))
                    with sw("receiver"):
                        outcome = path.outcome(src, rx, measure, conceal)
                    row = summarise(sc, cell, src, path, rx, outcome, p.method_hashes[mname], measure)
                    classes = [{**{k: row[k] for k in PER_CLASS_KEYS}, **r}
                               for r in measure.per_class_rows(outcome.metrics, src.clean)]
                    row["wall_s"] = round(time.perf_counter() - t_cell, 4)  # the cell's own link + receiver time
                    store.add(row, classes)
                    n_computed += 1
                    progress.advance()
                    if time.perf_counter() - last_flush > FLUSH_EVERY_S:
                        with sw("write"):
                            store.flush()
                        last_flush = time.perf_counter()
                with sw("write"):
                    store.flush()
                last_flush = time.perf_counter()
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        progress.close()
        with sw("write"):
            store.flush()
    return status, n_computed


def models_used(p: Plan) -> list[dict]:
    """The trained models this run used: per learned method and op, its model-cache folder, whether
    it was trained now or loaded, and the sha256 of its weights as the cache recorded them."""
    out = []
    for name, m, _ in p.methods:
        for r in m.training_report():
            entry = {"method": name, "op": r.get("op"), "status": r.get("status"), "cache": r.get("cache")}
            info = Path(r["cache"]) / "info.json" if r.get("cache") else None
            try:
                entry["sha256"] = json.loads(info.read_text()).get("sha256") if info else None
            except (OSError, ValueError):
                entry["sha256"] = None
            out.append(entry)
    return out


def finish(p: Plan, manifest: dict, status: str, n_computed: int, *, plots: bool, sw: Stopwatch,
           started: datetime, t_start: float, log: Callable[[str], None], plot_options: dict | None = None):
    """Draw the plots (complete runs), record the run in the manifest, return the table; raises
    :class:`SweepInterrupted` for an interrupted run after saving everything."""
    df = p.store.frame()
    if status == "complete" and plots and not df.empty:
        from simlink.plots import make_plots

        with sw("plots"):
            make_plots(df, p.out_dir / "plots", **(plot_options or {}))
    manifest["status"] = status
    manifest["task_on_originals"] = p.task_on_originals
    manifest["models"] = models_used(p)
    manifest["runs"] = p.previous_runs + [{
        "started": started.isoformat(),
        "finished": datetime.now(timezone.utc).isoformat(),
        "cells_computed": n_computed,
        "wall_s": round(time.perf_counter() - t_start, 3),
        "stage_s": {k: round(v, 3) for k, v in sw.seconds.items()},
        "device": p.device,
    }]
    p.store.write_manifest(manifest)
    if status == "interrupted":
        raise SweepInterrupted(
            f"interrupted: {n_computed} new cells saved in {p.out_dir} ({len(df)} of {len(p.cells)} in total); "
            "rerun the same command to resume")
    log(f"simlink: {len(df)} cells in {p.out_dir / 'results.parquet'} ({time.perf_counter() - t_start:.1f} s)")
    return df


def run_scenario(
    scenario: Scenario,
    out_dir: str | Path,
    *,
    scenario_file: str | None = None,
    device: str | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    plots: bool = True,
    log: Callable[[str], None] | None = None,
    cache_root: str | Path | None = None,
    progress_every_s: float | None = None,
    plot_options: dict | None = None,
):
    """Run every cell of ``scenario`` not already in ``out_dir``; return the results table.

    The four steps are :func:`plan`, :func:`write_manifest`, :func:`execute` and :func:`finish`.

    Args:
        scenario: a validated scenario.
        out_dir: output folder (``results.parquet``, ``results.csv``, ``manifest.json``, ``plots/``).
        scenario_file: path recorded in the manifest.
        device: overrides ``scenario.device`` (auto | cpu | cuda | cuda:N).
        quiet: no progress bar and no messages.
        overwrite: start afresh instead of resuming from an existing table.
        plots: draw the plots at the end.
        log: where messages go (default: stderr unless quiet).
        cache_root: model cache folder for learned methods and trained task models
            (default ``$SIMLINK_CACHE`` or ``~/.cache/simlink``).
        progress_every_s: when stderr is not a terminal (a batch log), seconds between plain
            progress lines (default ``$SIMLINK_PROGRESS_S`` or :data:`PROGRESS_EVERY_S`).
        plot_options: keyword arguments of :func:`simlink.plots.make_plots` (``error_bars``,
            ``log_rate``); default: its defaults.

    Returns:
        The tidy results table (``pandas.DataFrame``), one row per cell, in grid order.

    Raises:
        SweepInterrupted: on Ctrl-C / SIGTERM, after saving every finished cell.
        FolderBusy: another run holds ``out_dir``'s lock (:mod:`simlink.sweep.lock`).
        SimlinkError: for invalid input (missing dataset, unwritable output folder, ...).
    """
    if log is None:
        log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr))
    started, t_start, sw = datetime.now(timezone.utc), time.perf_counter(), Stopwatch()
    out = Path(out_dir)
    created = not out.exists()
    prepare_out_dir(out)
    try:
        with FolderLock(out, log):  # one writer per folder
            p = plan(scenario, out, device=device, overwrite=overwrite, log=log, sw=sw)
            manifest = write_manifest(p, scenario_file)
            status, n_computed = execute(p, log=log, quiet=quiet, sw=sw, cache_root=cache_root,
                                         progress_every_s=progress_every_s)
            return finish(p, manifest, status, n_computed, plots=plots, sw=sw, started=started, t_start=t_start,
                          log=log, plot_options=plot_options)
    except BaseException:
        if created and not (out / "results.parquet").exists():
            remove_if_unused(out)  # a run that failed before its first row leaves no folder behind
        raise
