"""Run a scenario: encode once per (method, op), transmit many, write the tidy table.

Order of work (see DESIGN.md, "Encode once, transmit many"):

1. load the images; compute the concealment image's metrics once;
2. load (or train) the task model, and train (or load from the model cache) every learned
   method that has cells to run;
3. per (method, operating point): source-encode every image, decode the error-free streams,
   measure them, and prepare the link frame (segmentation, CRC, LDPC encoding, QAM mapping);
   analog methods (deep JSCC) encode to channel symbols instead, measured through a noiseless
   channel for the ``*_clean`` columns;
4. per (channel, SNR, repeat) cell: channel → equalisation → demapping → BP decoding → CRC;
   only images whose received bytes differ from the sent ones are source-decoded again
   (analog: channel → equalisation → the method's decoders, see :mod:`simlink.phy.analog`);
5. one row per cell goes to the :class:`~simlink.sweep.store.ResultStore`, flushed atomically
   at least every few seconds, so Ctrl-C or a kill loses at most the cells since the last flush
   and a rerun of the same command resumes.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from simlink import __version__
from simlink.data import load_dataset
from simlink.errors import SimlinkError
from simlink.methods import build_method
from simlink.methods.base import AnalogPayload, DigitalPayload, Method, OperatingPoint, Payload
from simlink.metrics.stats import mean_ci, proportion_ci
from simlink.phy import DigitalLink
from simlink.phy.analog import AnalogLink
from simlink.phy.snr import ebno_db
from simlink.scenario import Scenario, stable_hash
from simlink.sweep.grid import Cell, cell_seed, expand_grid
from simlink.sweep.provenance import device_info, git_revision, package_versions, resolve_device
from simlink.sweep.prepare import fit_methods, training_context
from simlink.sweep.receiver import Measure, analog_outcome, apply_error_policy, concealment_images
from simlink.sweep.store import ResultStore

FLUSH_EVERY_S = 5.0


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


@dataclass
class SourceSide:
    """Everything computed once per (method, operating point) and reused for every cell.

    For analog methods ``tx`` and ``bits`` are ``None`` and ``clean_metrics`` are those of the
    noiseless channel."""

    payload: Payload
    clean_metrics: dict[str, np.ndarray]
    tx: object | None  # simlink.phy.TxFrame (digital)
    bits: np.ndarray | None  # int64[N] source bits per image (digital)

    @property
    def analog(self) -> bool:
        return isinstance(self.payload, AnalogPayload)


class _Progress:
    """A rich progress bar with ETA, or nothing when quiet."""

    def __init__(self, total: int, quiet: bool):
        self.quiet = quiet
        if quiet:
            return
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
        )
        self._task = self._p.add_task("starting", total=total)
        self._p.start()

    def describe(self, text: str) -> None:
        if not self.quiet:
            self._p.update(self._task, description=text[:40])

    def advance(self) -> None:
        if not self.quiet:
            self._p.advance(self._task)

    def close(self) -> None:
        if not self.quiet:
            self._p.stop()


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


def _rate_ci(k: int, n: int) -> tuple[float, float]:
    """``(k / n, half the width of the 95 % Wilson interval)``; ``(nan, nan)`` when n = 0."""
    if n == 0:
        return math.nan, math.nan
    p, low, high = proportion_ci(k, n)
    return float(p), float((high - low) / 2)


def _summarise(
    scenario: Scenario,
    cell: Cell,
    method: Method,
    op: OperatingPoint,
    src: SourceSide,
    rx,
    outcome,
    num_pixels: int,
    mhash: str,
) -> dict:
    """One tidy row from a cell's per-image outcome (means over images, 95 % half-widths);
    ``mhash`` is the method's :func:`method_hash`. Analog rows have no bits, code or blocks:
    ``bpp``, ``ebno_db``, ``bler``, ``ber`` and the link's code columns are NaN there."""
    n = len(outcome.lost)
    pixels = n * num_pixels
    analog = src.analog
    total_bits = 0 if analog else int(src.bits.sum())
    total_uses = int(np.asarray(rx.channel_uses).sum())
    nan = math.nan
    row = {
        "scenario": scenario.name,
        "method": cell.method,
        "method_name": method.name,
        "method_hash": mhash,
        "op": cell.op,
        "op_params": json.dumps(op.params, sort_keys=True),
        "payload": "analog" if analog else "digital",
        "bpp": nan if analog else total_bits / pixels,
        "cpp": total_uses / pixels,
        "channel": cell.channel,
        "snr_db": float(cell.snr_db),
        "ebno_db": float(ebno_db(cell.snr_db, total_bits, total_uses)) if total_bits and total_uses else math.nan,
        "repeat": int(cell.repeat),
        "modulation": nan if analog else int(scenario.link.modulation),
        "code_k": nan if analog else int(scenario.link.code.k),
        "code_n": nan if analog else int(scenario.link.code.n),
        "code_rate": nan if analog else scenario.link.code.k / scenario.link.code.n,
        "error_policy": scenario.error_policy,
    }
    for name, values in outcome.metrics.items():
        row[name], row[f"{name}_ci"] = mean_ci(values)
    for name, values in src.clean_metrics.items():
        row[f"{name}_clean"] = float(np.mean(values))
    n_blocks, n_err = (0, 0) if analog else (int(rx.num_blocks), int(rx.num_block_errors))
    row["bler"], row["bler_ci"] = _rate_ci(n_err, n_blocks)
    row["ber"] = rx.bit_errors / total_bits if total_bits else math.nan
    row["lost_frac"], row["lost_frac_ci"] = _rate_ci(int(outcome.lost.sum()), n)
    row["concealed_frac"] = float(outcome.concealed.mean())
    met = src.payload.meta.get("target_met")
    row["target_met_frac"] = float(np.mean(met)) if met is not None else math.nan
    row["n_images"] = n
    row["n_blocks"] = n_blocks
    row["n_block_errors"] = n_err
    return row


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
):
    """Run every cell of ``scenario`` not already in ``out_dir``; return the results table.

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

    Returns:
        The tidy results table (``pandas.DataFrame``), one row per cell, in grid order.

    Raises:
        SweepInterrupted: on Ctrl-C / SIGTERM, after saving every finished cell.
        SimlinkError: for invalid input (missing dataset, busy output folder, ...).
    """
    if log is None:
        log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr))
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    sw = Stopwatch()
    out_dir = Path(out_dir)
    torch_device = resolve_device(device or scenario.device)
    store = ResultStore(out_dir, scenario.context_hash(), overwrite=overwrite)
    previous_runs = []
    if store.manifest_path.exists() and not overwrite:
        previous_runs = json.loads(store.manifest_path.read_text()).get("runs", [])

    # ---- source side set-up (cheap parts) ------------------------------------------------
    with sw("data"):
        d = scenario.dataset
        images = load_dataset(
            d.name, split=d.split, n_images=d.n_images, image_size=d.image_size,
            root=d.root, seed=scenario.seed, download=d.download,
        )
    originals = images.images
    shape = images.image_shape
    methods = []
    for cfg in scenario.methods:
        m = build_method(cfg)
        methods.append((cfg.display_name, m, m.operating_points()))
    channel_by_label = dict(zip(scenario.channel_labels(), scenario.channels))
    cells = expand_grid(methods, scenario.channel_labels(), scenario.snr_values, scenario.repeats)
    store.set_order([c.key for c in cells])
    method_hashes = {name: method_hash(m) for name, m, _ in methods}
    done = store.done(method_hashes)
    todo = [c for c in cells if c.key not in done]
    stored = store.done()
    stale = sum(c.key in stored and c.key not in done for c in cells)
    if stale:
        log(f"simlink: {stale} cells were computed with other method settings and are recomputed")

    manifest = {
        "simlink_version": __version__,
        "scenario_file": scenario_file,
        "scenario": scenario.to_yaml_dict(),
        "seed": scenario.seed,
        "versions": package_versions(),
        "git": git_revision(),
        "device": device_info(torch_device),
        "n_cells": len(cells),
        "status": "running",
        "runs": previous_runs,
    }
    store.write_manifest(manifest)  # before any row: a resume must find the context hash
    if todo:
        log(f"simlink: {len(todo)} of {len(cells)} cells to run ({len(done)} already in {out_dir}) on {torch_device}")

    with sw("link_setup"):
        link = DigitalLink(scenario.link, device=torch_device)
        analog_link = AnalogLink(torch_device)
    need = {c.method for c in todo}
    try:
        with _sigterm_as_interrupt():
            with sw("task_model"):
                ctx = training_context(scenario, torch_device, log, cache_root)
            with sw("train"):
                fit_methods([m for name, m, _ in methods if name in need], ctx)
    except KeyboardInterrupt:
        raise SweepInterrupted(
            "interrupted while training; the last checkpoint is saved in the model cache, "
            "rerun the same command to resume") from None
    task = ctx.task
    measure = Measure(originals, images.labels, task, device=torch_device)
    with sw("metrics"):
        conceal = measure(concealment_images(len(originals), shape))

    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for c in todo:
        groups[(c.method, c.op)].append(c)
    method_by_name = {name: (m, {op.label: op for op in ops}) for name, m, ops in methods}

    progress = _Progress(len(todo), quiet)
    status, n_computed, last_flush = "complete", 0, time.perf_counter()
    try:
        with _sigterm_as_interrupt():
            for (mname, oplabel), group in groups.items():
                method, ops = method_by_name[mname]
                op = ops[oplabel]
                progress.describe(f"{mname} {oplabel}: encoding")
                src = _source_side(method, op, originals, shape, link, sw, measure)
                for cell in group:
                    progress.describe(f"{mname} {oplabel} {cell.channel} {cell.snr_db:g} dB")
                    channel, seed = channel_by_label[cell.channel], cell_seed(scenario.seed, cell)
                    if src.analog:
                        with sw("link"):
                            rx = analog_link.transmit(src.payload.symbols, channel, cell.snr_db, seed)
                        with sw("receiver"):
                            outcome = analog_outcome(method, op, AnalogPayload(rx.symbols), measure)
                    else:
                        with sw("link"):
                            rx = link.transmit(src.tx, channel, cell.snr_db, seed)
                        with sw("receiver"):
                            outcome = apply_error_policy(
                                scenario.error_policy, method, op, src.payload.streams, rx.streams,
                                rx.image_ok, measure, src.clean_metrics, conceal,
                            )
                    store.add(_summarise(scenario, cell, method, op, src, rx, outcome, images.num_pixels,
                                         method_hashes[mname]))
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

    df = store.frame()
    if status == "complete" and plots and not df.empty:
        from simlink.plots import make_plots

        with sw("plots"):
            make_plots(df, out_dir / "plots")
    manifest["status"] = status
    manifest["runs"] = previous_runs + [
        {
            "started": started.isoformat(),
            "finished": datetime.now(timezone.utc).isoformat(),
            "cells_computed": n_computed,
            "wall_s": round(time.perf_counter() - t_start, 3),
            "stage_s": {k: round(v, 3) for k, v in sw.seconds.items()},
            "device": torch_device,
        }
    ]
    store.write_manifest(manifest)
    if status == "interrupted":
        raise SweepInterrupted(
            f"interrupted: {n_computed} new cells saved in {out_dir} ({len(df)} of {len(cells)} in total); "
            "rerun the same command to resume"
        )
    log(f"simlink: {len(df)} cells in {out_dir / 'results.parquet'} ({time.perf_counter() - t_start:.1f} s)")
    return df


def method_hash(method: Method) -> str:
    """Hash of a method's settings (its ``cache_key`` without the display label)."""
    key = {k: v for k, v in method.cache_key().items() if k != "label"}
    return stable_hash(key)


def _source_side(method: Method, op: OperatingPoint, originals: np.ndarray, shape, link, sw: Stopwatch,
                 measure: Measure) -> SourceSide:
    """Encode, decode error-free, measure, and prepare the link frame for one (method, op).

    Analog payloads are decoded from the noiseless symbols for the ``*_clean`` columns."""
    with sw("encode"):
        payload = method.encode(originals, op)
    if method.kind == "analog":
        syms = getattr(payload, "symbols", None)
        if not isinstance(payload, AnalogPayload) or syms is None or syms.ndim != 3 or len(syms) != len(originals):
            raise SimlinkError(f"{method.name} {op.label}: encode must return complex symbols [N, users, S] for the N images")
        with sw("decode"):
            recon, _ = method.decode(payload, op, shape)
            logits = method.class_logits(payload, op)
        with sw("metrics"):
            clean = measure(recon, None, logits)
        return SourceSide(payload=payload, clean_metrics=clean, tx=None, bits=None)
    if not isinstance(payload, DigitalPayload) or len(payload.streams) != len(originals):
        raise SimlinkError(f"{method.name} {op.label}: encode must return one bitstream per image")
    with sw("decode"):
        recon, ok = method.decode(payload, op, shape)
    if not np.all(ok):
        bad = np.flatnonzero(~np.asarray(ok, dtype=bool)).tolist()
        raise SimlinkError(f"{method.name} {op.label}: cannot decode its own error-free streams for images {bad}")
    with sw("metrics"):
        clean = measure(recon)
    with sw("link_prepare"):
        tx = link.prepare(payload.streams)
    return SourceSide(payload=payload, clean_metrics=clean, tx=tx, bits=payload.num_bits)
