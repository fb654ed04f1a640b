"""Mutual informations of a scenario's methods, per operating point (``simlink mi``).

For every (method, operating point) of a scenario, on the images the scenario sends:

* ``X`` — the images as floats in ``[0, 1]``, flattened to ``[N, H*W*3]``;
* ``Z`` — what the method sends, as features: :meth:`Method.latents` (the quantised latent of a
  learned codec; ``None`` for classic codecs, whose ``I(X; Z)`` columns are then NaN);
* ``Ŷ`` — the receiver's class probabilities on the *error-free* reconstruction (encode, then
  decode without the channel): the softmax of the frozen task model's logits;
* ``Y`` — the true label (class index; CLUB fits a categorical q(y|ŷ), MINE sees it one-hot).

It estimates ``I(X; Z)`` and ``I(Ŷ; Y)`` with CLUB (an upper bound) and MINE (a lower bound),
both in bits (:func:`simlink.metrics.mutual_info.estimate_mi`), and, as an independent
cross-check needing no network, the exact plug-in discrete ``I(argmax Ŷ; Y)`` of the empirical
confusion matrix (:func:`plugin_mi_bits`). Without a task model (and no method hook, below) the
``I(Ŷ; Y)`` columns are NaN.

Methods with their own classifier (e.g. an analog JSCC with a classification head): the
reception of the method's own error-free payload (``decode(encode(images, op))``, no channel)
carries the head's ``class_logits`` among its named outputs — the same logits ``simlink run``
scores as ``accuracy_clean`` — and ``Ŷ`` is their softmax, instead of the scenario's task model
run on the reconstruction. The column ``yhat_source`` says which was used (``method`` |
``task`` | ``none``).

:func:`scenario_mutual_information` writes ``mi.csv`` into the results folder and merges the
columns into ``results.parquet`` / ``results.csv`` (see :func:`merge_into_results`).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from simlink.errors import SimlinkError
from simlink.metrics.mutual_info import PAPER_HIDDEN, estimate_mi

__all__ = [
    "HIDDEN_PRESETS",
    "MI_COLUMNS",
    "compute_mutual_information",
    "confusion_matrix",
    "merge_into_results",
    "parse_hidden",
    "plugin_mi_bits",
    "scenario_mutual_information",
]

HIDDEN_PRESETS: dict[str, tuple[int, ...]] = {"paper": tuple(PAPER_HIDDEN), "small": (128, 128)}
"""``--hidden`` names: TOSC-SR Algorithm 4's MLP (1024-512-512) and a CPU-sized one."""

MI_COLUMNS = ["mi_xz_club", "mi_xz_mine", "mi_yhat_y_club", "mi_yhat_y_mine", "mi_yhat_y_plugin"]
"""The estimates, all in bits."""

MI_FILE = "mi.csv"
_KEYS = ["method", "op"]


# ---------------------------------------------------------------------------------------------
# small pieces


def parse_hidden(spec: str | Sequence[int]) -> tuple[int, ...]:
    """Hidden layer sizes from ``"paper"``, ``"small"``, a comma list such as ``"256,128"``, or
    a sequence of ints. Raises :class:`SimlinkError` naming the bad value."""
    if not isinstance(spec, str):
        sizes = tuple(spec)
        if not sizes or not all(isinstance(h, (int, np.integer)) and h > 0 for h in sizes):
            raise SimlinkError(f"hidden: {list(sizes)!r} must be one or more positive layer sizes")
        return tuple(int(h) for h in sizes)
    text = spec.strip().lower()
    if text in HIDDEN_PRESETS:
        return HIDDEN_PRESETS[text]
    parts = [p.strip() for p in text.split(",")]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if not sizes or any(h <= 0 for h in sizes):
        raise SimlinkError(f"--hidden {spec!r}: use paper ({','.join(map(str, HIDDEN_PRESETS['paper']))}), "
                           f"small ({','.join(map(str, HIDDEN_PRESETS['small']))}) or a comma list of positive "
                           "layer sizes such as 256,128")
    return sizes


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """``int64[C, C]`` counts, rows = true label ``Y``, columns = prediction ``argmax Ŷ``."""
    pred, labels = np.asarray(pred, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if pred.shape != labels.shape or pred.ndim != 1:
        raise ValueError(f"pred and labels must be 1-D of one length; got {pred.shape} and {labels.shape}")
    c = int(num_classes) if num_classes is not None else int(max(pred.max(initial=-1), labels.max(initial=-1)) + 1)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


def plugin_mi_bits(counts: np.ndarray) -> float:
    """Plug-in (maximum-likelihood) mutual information in bits of the empirical joint
    distribution ``counts / counts.sum()`` of a contingency table:
    ``sum_ij p_ij log2(p_ij / (p_i. p_.j))`` over the non-zero cells. Always in
    ``[0, min(H(row), H(column))]``; NaN for an empty table."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    if n <= 0:
        return math.nan
    p = counts / n
    pr, pc = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return max(0.0, float((p[nz] * np.log2(p[nz] / (pr @ pc)[nz])).sum()))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _check_sample_size(n: int, holdout: float, what: str) -> None:
    """The same condition :func:`estimate_mi` enforces, checked before any training; ``what``
    names the setting that chose ``n`` in the message."""
    if not 0.0 <= holdout < 1.0:
        raise SimlinkError(f"holdout: {holdout} must be in [0, 1)")
    n_eval = int(round(holdout * n))
    if n - n_eval < 2 or (holdout > 0 and n_eval < 2):
        raise SimlinkError(f"{what} {n}: too few images for the MI estimators (holdout {holdout:g} keeps "
                           f"{n_eval} for evaluation; need at least 2 to train and 2 to evaluate)")


# ---------------------------------------------------------------------------------------------
# the computation


def compute_mutual_information(
    scenario,
    *,
    device: str | None = None,
    cache_root: str | Path | None = None,
    n_images: int | None = None,
    steps: int = 1000,
    hidden: str | Sequence[int] = "small",
    batch_size: int = 256,
    holdout: float = 0.2,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Estimate ``I(X; Z)`` and ``I(Ŷ; Y)`` for every (method, operating point) of ``scenario``.

    Args:
        scenario: a validated :class:`simlink.scenario.Scenario`.
        device: overrides ``scenario.device`` (auto | cpu | cuda | cuda:N); used for the task
            model, the methods and the estimator networks.
        cache_root: model cache folder (learned methods and a trained task model are loaded from
            it, or trained into it, exactly as ``simlink run`` does).
        n_images: use the first ``n_images`` of the images the scenario sends (default: all).
        steps, hidden, batch_size, holdout, seed: estimator settings
            (:func:`simlink.metrics.mutual_info.estimate_mi`); ``hidden`` as in :func:`parse_hidden`.
        log: where progress lines go (default: nowhere).

    Returns:
        One row per (method, op) in scenario order: ``method, op, n_images``, ``z_dim`` (latent
        size; NaN without a latent), ``yhat_source`` (method | task | none), ``yhat_accuracy``
        (top-1 accuracy of ``argmax Ŷ``, equal to the results table's ``accuracy_clean`` when
        ``Ŷ`` comes from the task model), ``mi_xz_club, mi_xz_mine, mi_yhat_y_club,
        mi_yhat_y_mine, mi_yhat_y_plugin`` (bits; NaN where not applicable), ``method_hash``, and
        the settings ``mi_hidden, mi_steps, mi_batch_size, mi_holdout, mi_seed``.

    Raises:
        SimlinkError: bad settings, too few images, a method that cannot decode its own
            error-free payload, or what loading data / models raises.
    """
    from simlink.data import load_dataset
    from simlink.methods import ImageKeys, build_method
    from simlink.tasks.kinds import Classification
    from simlink.sweep.prepare import fit_methods, training_context
    from simlink.sweep.provenance import resolve_device
    from simlink.sweep.runner import legacy_method_hash, method_hash

    log = log or (lambda s: None)
    hidden_t = parse_hidden(hidden)
    if steps < 1:
        raise SimlinkError(f"--steps {steps}: must be >= 1")
    if batch_size < 2:
        raise SimlinkError(f"batch_size {batch_size}: must be >= 2")
    available = scenario.dataset.n_images
    if n_images is not None and not 1 <= n_images <= available:
        raise SimlinkError(f"--n-images {n_images}: must be between 1 and the {available} images scenario "
                           f"{scenario.name!r} sends")
    what = "--n-images" if n_images is not None else "dataset.n_images"
    _check_sample_size(n_images or available, holdout, what)
    dev = resolve_device(device or scenario.device)

    d = scenario.dataset
    data = load_dataset(d.name, split=d.split, n_images=d.n_images, image_size=d.image_size,
                        root=d.root, seed=scenario.seed, download=d.download,
                        skip_unreadable=d.skip_unreadable)
    if n_images is not None:
        data = data.subset(slice(0, n_images))
    data.require_uniform("simlink mi (the estimators see every image as one vector)")
    images, shape, n = data.images, data.image_shape, len(data)
    _check_sample_size(n, holdout, what)  # the loader may return fewer than asked
    labels = None if data.labels is None else np.asarray(data.labels, dtype=np.int64)

    methods = [(cfg.display_name, build_method(cfg)) for cfg in scenario.methods]
    ctx = training_context(scenario, dev, log, cache_root)
    fit_methods([m for _, m in methods], ctx)
    task = ctx.task
    if task is not None and getattr(task, "kind", "classification") != "classification":
        raise SimlinkError(f"task: simlink mi estimates I(Ŷ; Y) of a classifier; this scenario's task is "
                           f"{task.kind}")
    if task is not None and labels is None:
        raise SimlinkError("task: the dataset has no class labels, so I(Ŷ; Y) cannot be estimated")

    x = images.reshape(n, -1).astype(np.float32) / 255.0
    settings = {"mi_hidden": ",".join(map(str, hidden_t)), "mi_steps": int(steps), "mi_batch_size": int(batch_size),
                "mi_holdout": float(holdout), "mi_seed": int(seed)}

    def both(a, b, discrete: bool = False) -> tuple[float, float]:
        kw = dict(hidden=hidden_t, steps=steps, batch_size=batch_size, seed=seed, device=dev, holdout=holdout,
                  y_discrete=discrete)
        return (estimate_mi(a, b, method="club", **kw).bits, estimate_mi(a, b, method="mine", **kw).bits)

    rows = []
    legacy = {}
    for name, m in methods:
        legacy[method_hash(m)] = legacy_method_hash(m)
        for op in m.operating_points():
            log(f"simlink mi: {name} {op.label}")
            row = {"method": name, "op": op.label, "n_images": n, "z_dim": math.nan, "yhat_source": "none",
                   "yhat_accuracy": math.nan, **dict.fromkeys(MI_COLUMNS, math.nan),
                   "method_hash": method_hash(m), **settings}
            z = m.latents(images, op)
            if z is not None:
                z = np.asarray(z, dtype=np.float32).reshape(n, -1)
                row["z_dim"] = int(z.shape[1])
                row["mi_xz_club"], row["mi_xz_mine"] = both(x, z)

            logits = None
            keys = ImageKeys.derive(np.arange(n), scenario.seed, name, op.label)
            rec = m.decode(m.encode(images, op, keys), op, shape, keys)  # error-free: no channel
            head = rec.outputs.get(Classification.head_output)
            if head is not None:
                logits, row["yhat_source"] = head, "method"
            elif task is not None:
                if not np.all(rec.ok):
                    bad = np.flatnonzero(~rec.ok).tolist()
                    raise SimlinkError(f"{name} {op.label}: cannot decode its own error-free payload for images {bad}")
                logits, row["yhat_source"] = task.logits(rec.images, device=dev), "task"
            if logits is not None:
                if labels is None:
                    raise SimlinkError(f"{name}: the dataset has no class labels, so I(Ŷ; Y) cannot be estimated")
                logits = np.asarray(logits, dtype=np.float64)
                if logits.ndim != 2 or len(logits) != n:
                    raise SimlinkError(f"{name} {op.label}: class logits must be float[{n}, C]; got {logits.shape}")
                c = max(logits.shape[1], int(labels.max()) + 1)
                y_hat = _softmax(logits)
                row["mi_yhat_y_club"], row["mi_yhat_y_mine"] = both(y_hat, np.asarray(labels, dtype=np.int64), True)
                pred = logits.argmax(axis=1)
                row["yhat_accuracy"] = float(np.mean(pred == labels))
                row["mi_yhat_y_plugin"] = plugin_mi_bits(confusion_matrix(pred, labels, c))
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["legacy_method_hashes"] = legacy  # current hash -> the version-1 hash of the same settings
    return df


# ---------------------------------------------------------------------------------------------
# files


def _results_columns(mi: pd.DataFrame) -> pd.DataFrame:
    """``mi`` with every column except the keys and ``method_hash`` under an ``mi_`` name (so
    ``n_images`` does not clash with the results table's own ``n_images``)."""
    ren = {c: c if c.startswith("mi_") else f"mi_{c}" for c in mi.columns if c not in (*_KEYS, "method_hash")}
    return mi.rename(columns=ren)


def merge_into_results(out_dir: str | Path, mi: pd.DataFrame, context_hash: str | None = None,
                       legacy_hashes=()) -> dict | None:
    """Merge the columns of ``mi`` (from :func:`compute_mutual_information`) into
    ``out_dir/results.parquet`` and ``results.csv``, atomically (CSV first, parquet last).

    Every column except ``method`` / ``op`` / ``method_hash`` goes in under an ``mi_`` name
    (``n_images`` -> ``mi_n_images`` ...). Columns starting with ``mi_`` already in the table are
    replaced (a rerun never duplicates them). Each row of a (method, op) gets that pair's values;
    where both tables have ``method_hash`` and they differ (the row was computed with other
    method settings than the models measured now), the row gets NaN instead.

    Args:
        context_hash: when given, the folder's ``manifest.json`` must record the same scenario
            context (as ``simlink run`` requires before adding rows), else :class:`SimlinkError`;
            ``legacy_hashes`` are the same context under earlier hash versions.

    Returns:
        ``None`` when the folder has no results table, else ``{"rows": rows in the table,
        "filled": rows that got values, "stale": rows left NaN because of another method_hash}``.
    """
    from simlink.atomic import atomic_write_bytes, atomic_write_text

    out_dir = Path(out_dir)
    table = out_dir / "results.parquet"
    if not table.is_file():
        return None
    if context_hash is not None:
        _check_context(out_dir, context_hash, legacy_hashes)
    df = pd.read_parquet(table)
    df = df.drop(columns=[c for c in df.columns if c.startswith("mi_")])
    add = _results_columns(mi).rename(columns={"method_hash": "_mi_method_hash"})
    value_cols = [c for c in add.columns if c not in (*_KEYS, "_mi_method_hash")]
    merged = df.merge(add, on=_KEYS, how="left", validate="many_to_one")
    stale = np.zeros(len(merged), dtype=bool)
    if "_mi_method_hash" in merged.columns:
        if "method_hash" in merged.columns:
            # rows of an earlier simlink carry the version-1 hash of the same settings: relabel them
            for new, old in mi.attrs.get("legacy_method_hashes", {}).items():
                same = (merged["_mi_method_hash"] == new) & (merged["method_hash"] == old)
                merged.loc[same, "method_hash"] = new
            h_row, h_mi = merged["method_hash"], merged["_mi_method_hash"]
            stale = (h_mi.notna() & h_row.notna() & (h_row != h_mi)).to_numpy()
            merged.loc[stale, value_cols] = np.nan
        merged = merged.drop(columns=["_mi_method_hash"])
    filled = int(merged["mi_n_images"].notna().sum()) if "mi_n_images" in merged else 0
    atomic_write_text(out_dir / "results.csv", merged.to_csv(index=False))
    buf = io.BytesIO()
    merged.to_parquet(buf, index=False)
    atomic_write_bytes(table, buf.getvalue())
    return {"rows": len(merged), "filled": filled, "stale": int(stale.sum())}


def scenario_mutual_information(
    scenario,
    out_dir: str | Path,
    *,
    log: Callable[[str], None] | None = None,
    **kwargs,
) -> pd.DataFrame:
    """:func:`compute_mutual_information`, then write ``out_dir/mi.csv`` (atomically) and merge the
    columns into the folder's results table (:func:`merge_into_results`; skipped, with a message,
    when the folder has none yet).

    Args:
        scenario: a validated scenario.
        out_dir: the scenario's results folder (what ``simlink run --out`` wrote).
        log: where messages go (default: nowhere).
        **kwargs: passed to :func:`compute_mutual_information` (device, cache_root, n_images,
            steps, hidden, batch_size, holdout, seed).

    Returns:
        The table of :func:`compute_mutual_information`; ``df.attrs["merge"]`` holds what
        :func:`merge_into_results` returned.
    """
    from simlink.atomic import atomic_write_text

    log = log or (lambda s: None)
    out_dir = Path(out_dir)
    if (out_dir / "results.parquet").is_file():  # refuse a foreign folder before any training
        _check_context(out_dir, scenario.context_hash(), scenario.legacy_context_hashes()
                       + scenario.context_hashes_any_decoder())
    mi = compute_mutual_information(scenario, log=log, **kwargs)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / MI_FILE, mi.to_csv(index=False))
    merge = merge_into_results(out_dir, mi, scenario.context_hash(), scenario.legacy_context_hashes()
                               + scenario.context_hashes_any_decoder())
    if merge is None:
        log(f"simlink mi: no results table in {out_dir} yet; wrote {out_dir / MI_FILE} only "
            "(run `simlink mi` again after `simlink run` to add the columns to the table)")
    else:
        msg = f"simlink mi: wrote {out_dir / MI_FILE}; mi_* columns merged into {merge['rows']} rows of results.parquet"
        if merge["stale"]:
            msg += (f" ({merge['stale']} rows computed with other method settings left NaN; "
                    "rerun `simlink run` then `simlink mi`)")
        log(msg)
    mi.attrs["merge"] = merge
    return mi


def _check_context(out_dir: Path, context_hash: str, legacy_hashes=()) -> None:
    from simlink.sweep.store import check_context

    check_context(out_dir, context_hash, legacy_hashes,
                  "pass the folder `simlink run` wrote for this scenario with --out")
