"""The table of a study: a DataFrame that knows where its problems and weights are."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import status as st
from ..errors import InvalidProblemError
from ..files import atomic_output
from ..fit import check_weights
from ..problem import CalibrationProblem
from .problem_io import load_problem

__all__ = ["COLUMNS", "Study", "finalize", "load_study", "load_table"]

COLUMNS = [
    "instance",
    "method",
    "solver",
    "status",
    "wall_time",
    "wall_time_min",
    "wall_time_max",
    "repeats",
    "solve_time",
    "overhead",
    "objective",
    "max_rel_error",
    "mean_rel_error",
    "misses",
    "bound_violations",
    "nnz",
    "g_min",
    "g_max",
    "iterations",
    "peak_memory_mb",
    "distance_to_first",
    "n_targets",
    "n_units",
    "time_limit",
    "memory_limit_mb",
    "solver_used",
    "digest",
    "message",
]
"""Columns of a study's table, in order.

``wall_time`` (median over repeats, with ``wall_time_min`` / ``wall_time_max``) is measured
in the worker around the method; ``solve_time`` is the engine's own time as the method
reports it; ``overhead`` is the rest of the round trip (scheduling, transfer, loading the
memory-mapped problem). ``max_rel_error``, ``mean_rel_error``, ``misses`` (targets outside
their band) and ``bound_violations`` are checked from the weights
(:func:`calibopt.fit.check_weights`). ``peak_memory_mb`` is the worker's peak resident
memory during the run above its resident memory when the run began. ``distance_to_first``
is ``max |w - w_ref| / max |w_ref|`` against the first successful solver of the same method
on the same instance."""

_TEXT = ("instance", "method", "solver", "status", "solver_used", "digest", "message")
_COUNTS = ("repeats", "misses", "bound_violations", "nnz", "iterations", "n_targets", "n_units")


class Study(pd.DataFrame):
    """One row per (instance, method, solver): see :data:`COLUMNS`.

    ``attrs["directory"]`` is the study's folder (None for a study run without one);
    ``attrs["problems"]`` maps instance names to saved problem files.
    """

    @property
    def _constructor(self) -> type[Study]:
        return Study

    # ------------------------------------------------------------------ files
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``study.csv``, ``study.parquet`` and ``study.json`` (problem files) into
        ``directory`` (atomically); returns the folder."""
        return _save(self, Path(directory))

    def problem(self, instance: str) -> CalibrationProblem:
        """The problem of ``instance`` (read from its saved file)."""
        path = dict(self.attrs.get("problems", {})).get(instance)
        if path is None or not Path(path).is_file():
            raise InvalidProblemError(
                f"no saved problem for instance {instance!r}; known: "
                f"{sorted(self.attrs.get('problems', {}))}."
            )
        return load_problem(path)

    def weights(self, instance: str, method: str, solver: str) -> np.ndarray:
        """The weights of one pair (kept for studies run with a ``directory``)."""
        path = _weights_path(self.attrs.get("directory"), instance, method, solver)
        if path is None or not path.is_file():
            raise InvalidProblemError(
                f"no weights kept for ({instance}, {method}, {solver}): run the study with "
                f"a `directory`, and check that this pair returned a result."
            )
        return np.load(path)

    def fit(self, instance: str, method: str, solver: str) -> pd.DataFrame:
        """Per-target fit of one pair: ``name``, ``group``, ``value``, ``estimate``,
        ``rel_error``, ``tolerance``, ``within_tolerance``."""
        problem = self.problem(instance)
        check = check_weights(problem, self.weights(instance, method, solver))
        return pd.DataFrame(
            {
                "name": problem.target_names,
                "group": problem.groups,
                "value": problem.targets,
                "estimate": check.estimates,
                "rel_error": check.rel_errors,
                "tolerance": problem.tolerance,
                "within_tolerance": check.target_met,
            }
        )

    def report(self, directory: str | os.PathLike, *, formats: tuple[str, ...] = ("png", "svg")):
        """Write the figures (PNG and SVG) and ``report.md`` (setup, table, winners) into
        ``directory``; returns the path of ``report.md``. Needs matplotlib
        (``pip install 'calibopt[plots]'``)."""
        from .report import write_report

        return write_report(self, Path(directory), formats=formats)


def _weights_path(directory: Any, instance: str, method: str, solver: str) -> Path | None:
    if directory is None:
        return None
    return Path(directory) / "weights" / f"{instance}__{method}__{solver}.npy".replace(":", "_")


def _distances(table: pd.DataFrame, directory: Path) -> pd.Series:
    """``distance_to_first`` per row, from the weights files."""
    out = pd.Series(np.nan, index=table.index)
    refs: dict[tuple[str, str], np.ndarray] = {}
    for idx, row in table.iterrows():
        if row["status"] not in st.RESULT_STATUSES:
            continue
        path = _weights_path(directory, row["instance"], row["method"], row["solver"])
        if path is None or not path.is_file():
            continue
        w = np.load(path, mmap_mode="r")
        key = (row["instance"], row["method"])
        if key not in refs and row["status"] in st.SUCCESS_STATUSES:
            refs[key] = np.asarray(w)
        ref = refs.get(key)
        if ref is not None and ref.shape == w.shape:
            out[idx] = float(np.abs(w - ref).max() / max(float(np.abs(ref).max()), 1e-300))
    return out


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns in order: counts as nullable integers, other numbers as float, text as
    Python objects (NaN when empty)."""
    table = frame.reindex(columns=COLUMNS)
    for col in COLUMNS:
        if col in _TEXT:
            table[col] = table[col].astype(object).where(table[col].notna(), np.nan)
        else:
            values = pd.to_numeric(table[col], errors="coerce").astype(float)
            table[col] = values.round().astype("Int64") if col in _COUNTS else values
    return table


def finalize(
    rows: list[dict[str, Any]],
    sources: list[Any],
    root: Path,
    *,
    save: bool,
    distances: bool = True,
) -> Study:
    """The study table from its rows (columns in order); ``distance_to_first`` computed from
    the weights files when ``distances`` (once, at the end of a study: it reads every
    pair's weights); saved into ``root`` when ``save``."""
    table = _typed(pd.DataFrame(rows))
    if distances:
        table["distance_to_first"] = _distances(table, root)
    study = Study(table)
    study.attrs["directory"] = str(root)
    study.attrs["problems"] = {s.name: str(s.path) for s in sources if s.path is not None}
    if save:
        _save(study, root)
    return study


def _save(study: Study, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(study)
    with atomic_output(root / "study.csv", overwrite=True) as tmp:
        frame.to_csv(tmp, index=False)
    try:
        with atomic_output(root / "study.parquet", overwrite=True) as tmp:
            frame.to_parquet(tmp, index=False)
    except ImportError:  # pyarrow missing: the CSV is the record
        pass
    meta = {"problems": study.attrs.get("problems", {})}
    with atomic_output(root / "study.json", overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=1))
    return root


def load_table(root: Path) -> pd.DataFrame | None:
    """The saved table of a study folder (Parquet, else CSV), or None."""
    for name, reader in (("study.parquet", pd.read_parquet), ("study.csv", pd.read_csv)):
        path = root / name
        if path.is_file():
            try:
                return reader(path)
            except ImportError:
                continue
            except (OSError, ValueError) as exc:
                raise InvalidProblemError(f"cannot read {str(path)!r}: {exc}") from None
    return None


def load_study(directory: str | os.PathLike) -> Study:
    """A study saved in ``directory`` (by :func:`calibopt.compare` or :meth:`Study.save`)."""
    root = Path(directory)
    table = load_table(root)
    if table is None:
        raise InvalidProblemError(f"{str(root)!r} holds no study.csv or study.parquet.")
    study = Study(_typed(table))
    meta_path = root / "study.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    study.attrs["directory"] = str(root)
    study.attrs["problems"] = meta.get("problems", {})
    return study
