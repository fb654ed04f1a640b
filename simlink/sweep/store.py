"""The result store: one tidy table, written atomically, resumable.

Files in the output folder:

* ``results.parquet`` and ``results.csv`` — one row per cell (see README, "Results schema");
* ``results_per_class.parquet`` and ``.csv`` — for segmentation tasks, one row per cell and class
  (per-class IoU), keyed like the main table;
* ``manifest.json`` — scenario, seed, versions, git revision, device, timings.

Every write goes to a temporary file in the same folder followed by :func:`os.replace`, so a
run killed at any moment leaves either the previous or the new complete file, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from simlink.atomic import atomic_write_bytes, atomic_write_text
from simlink.errors import SimlinkError
from simlink.sweep.grid import cell_key

KEY_COLUMNS = ["method", "op", "channel", "snr_db", "repeat"]


class ResultStore:
    """Rows of a sweep, persisted atomically in ``out_dir``.

    Args:
        out_dir: output folder (created if missing).
        context_hash: :meth:`Scenario.context_hash` of the running scenario. An existing table
            made under another context (other dataset, link, seed or error policy) is never
            mixed with new rows: that raises unless ``overwrite``.
        overwrite: discard an existing table instead of resuming from it.
        legacy_hashes: the same context's hashes under earlier hash versions
            (:meth:`Scenario.legacy_context_hashes`); a folder recorded under one of them resumes,
            and its manifest is rewritten with ``context_hash``.
    """

    def __init__(self, out_dir: str | Path, context_hash: str, overwrite: bool = False,
                 legacy_hashes: list[str] | tuple[str, ...] = ()):
        self.out_dir = Path(out_dir)
        self.created = not self.out_dir.exists()
        prepare_out_dir(self.out_dir)
        self.context_hash = context_hash
        self.legacy_hashes = tuple(legacy_hashes)
        self._rows: dict[tuple, dict[str, Any]] = {}
        self._class_rows: dict[tuple, list[dict[str, Any]]] = {}
        self._order: list[tuple] | None = None
        if not overwrite and self.table_path.exists():
            self._resume()

    @property
    def table_path(self) -> Path:
        return self.out_dir / "results.parquet"

    @property
    def csv_path(self) -> Path:
        return self.out_dir / "results.csv"

    @property
    def per_class_path(self) -> Path:
        return self.out_dir / "results_per_class.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / "manifest.json"

    def _resume(self) -> None:
        check_context(self.out_dir, self.context_hash, self.legacy_hashes,
                      "choose another --out or pass --overwrite")
        df = pd.read_parquet(self.table_path)
        for row in df.to_dict("records"):
            self._rows[self.key_of(row)] = row
        if self.per_class_path.exists():  # written before the main table: keep the rows of its cells
            for row in pd.read_parquet(self.per_class_path).to_dict("records"):
                key = self.key_of(row)
                if key in self._rows:
                    self._class_rows.setdefault(key, []).append(row)

    @staticmethod
    def key_of(row: dict) -> tuple:
        return cell_key(row["method"], row["op"], row["channel"], row["snr_db"], row["repeat"])

    def done(self, method_hashes: dict[str, str] | None = None) -> set[tuple]:
        """Keys of the cells already in the table.

        With ``method_hashes`` (method label -> hash of its settings), a row computed with other
        settings of its method (column ``method_hash``) does not count as done, so changing, e.g.,
        a learned method's training settings recomputes its cells instead of mixing models.
        """
        if method_hashes is None:
            return set(self._rows)
        return {k for k, row in self._rows.items()
                if _missing(row.get("method_hash")) or row["method_hash"] == method_hashes.get(row["method"])}

    def relabel_method_hashes(self, old: dict[str, str], new: dict[str, str]) -> int:
        """Rows of method ``m`` carrying ``old[m]`` (the same settings under an earlier hash
        version) get ``new[m]``; returns how many rows changed (written at the next flush)."""
        changed = 0
        for row in self._rows.values():
            m = row["method"]
            if m in old and m in new and row.get("method_hash") == old[m] and old[m] != new[m]:
                row["method_hash"] = new[m]
                changed += 1
        return changed

    def set_order(self, keys: list[tuple]) -> None:
        """Table row order (the grid's order); rows not in it go last, in insertion order."""
        self._order = list(keys)

    def add(self, row: dict[str, Any], per_class: list[dict[str, Any]] | None = None) -> None:
        """Add (or replace) a cell's row and its per-class rows (each carrying the cell's key columns)."""
        key = self.key_of(row)
        self._rows[key] = row
        if per_class:
            self._class_rows[key] = list(per_class)
        else:
            self._class_rows.pop(key, None)

    def frame(self) -> pd.DataFrame:
        """The table in grid order: method, operating point, channel as in the scenario, then
        SNR and repeat ascending. Rows of the same context from earlier runs that the current
        grid no longer names are kept (nothing computed is dropped), sorted into place."""
        return pd.DataFrame([self._rows[k] for k in self._sorted_keys()])

    def frame_per_class(self) -> pd.DataFrame:
        """The per-class table (cells in :meth:`frame`'s order, classes by id); empty if none."""
        return pd.DataFrame([r for k in self._sorted_keys() for r in self._class_rows.get(k, [])])

    def _sorted_keys(self) -> list[tuple]:
        keys = list(self._rows)
        if self._order is not None:
            rank: dict = {}
            for m, op, ch, _, _ in self._order:
                rank.setdefault(("m", m), len(rank))
                rank.setdefault(("o", m, op), len(rank))
                rank.setdefault(("c", ch), len(rank))
            big = len(rank)
            keys.sort(key=lambda k: (rank.get(("m", k[0]), big), rank.get(("o", k[0], k[1]), big),
                                     rank.get(("c", k[2]), big), k[3], k[4]))
        return keys

    def flush(self) -> None:
        """Write parquet and CSV atomically: the per-class table first, the main parquet last (it is
        what a resume reads, and a resume keeps only per-class rows of cells it holds)."""
        df = self.frame()
        if df.empty:
            return
        per_class = self.frame_per_class()
        if not per_class.empty:
            _write_table(per_class, self.per_class_path)
        _write_table(df, self.table_path)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        manifest = {**manifest, "context_hash": self.context_hash}
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True, default=str))


def _write_table(df: pd.DataFrame, parquet: Path) -> None:
    """``df`` to ``parquet`` and to the CSV beside it (same stem), each atomically, CSV first."""
    import io

    atomic_write_text(parquet.with_suffix(".csv"), df.to_csv(index=False))
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(parquet, buf.getvalue())


def prepare_out_dir(out_dir: Path) -> None:
    """Create the output folder (parents included) or check the existing one, with one-line
    errors: a path that is a file, a folder that cannot be created or written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SimlinkError(f"{out_dir}: --out is an existing file, not a folder; choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SimlinkError(f"{out_dir}: cannot create the output folder ({e.strerror or e}); "
                           "choose a writable --out") from None
    if not _writable(out_dir):
        raise SimlinkError(f"{out_dir}: the output folder is not writable; choose a writable --out")


def _writable(folder: Path) -> bool:
    """The current user may create files in ``folder``."""
    return os.access(folder, os.W_OK | os.X_OK)


def remove_if_unused(out_dir: Path) -> bool:
    """After a run that failed before its first row: remove ``out_dir`` if it holds nothing but
    the manifest (a folder created by that run). Returns True if removed."""
    try:
        entries = list(out_dir.iterdir())
        if any(e.name != "manifest.json" for e in entries):
            return False
        for e in entries:
            e.unlink()
        out_dir.rmdir()
        return True
    except OSError:
        return False


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def check_context(out_dir: Path, context_hash: str, legacy_hashes: tuple[str, ...] | list[str] = (),
                  advice: str = "choose another --out or pass --overwrite") -> None:
    """Raise :class:`SimlinkError` unless ``out_dir/manifest.json`` records ``context_hash`` (or
    one of ``legacy_hashes``, the same context under an earlier hash version)."""
    manifest = Path(out_dir) / "manifest.json"
    old_hash = None
    if manifest.exists():
        try:
            old_hash = json.loads(manifest.read_text()).get("context_hash")
        except (OSError, ValueError):
            old_hash = None
    if old_hash != context_hash and old_hash not in legacy_hashes:
        raise SimlinkError(
            f"{out_dir}: holds results of a different scenario context (dataset, link, seed, error "
            f"policy or task differ: {old_hash} != {context_hash}); {advice}")
