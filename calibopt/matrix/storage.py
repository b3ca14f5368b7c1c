"""Saving a :class:`~calibopt.matrix.CalibrationMatrix` to one HDF5 file and reading it back.

Layout::

    /                       attrs: format="calibopt-matrix", format_version=2, period, level
    /X/data, /X/indices, /X/indptr     CSR arrays; attrs: shape
    /columns/geographies, /columns/household_ids[, household_weight, home_state]
    /targets/<column>       the targets table (constraints as text, parsed back on load)

``targets/tolerance`` is a fraction (0.01 = 1%) from version 2 on; version 1 files held the
database's percentage, and :func:`load_matrix` reads them as fractions too.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import scipy.sparse as sp

from ..datasets.hdf5 import read_table, write_table
from ..errors import InvalidProblemError
from ..files import atomic_output
from ..targets.constraints import format_constraints, parse_constraints
from ..targets.schema import PERCENT
from .calibration_matrix import CalibrationMatrix
from .columns import ColumnMap

__all__ = ["load_matrix", "save_matrix"]

FORMAT = "calibopt-matrix"
FORMAT_VERSION = 2
_PERCENT_TOLERANCE_VERSION = 1  # files of this version store tolerance in percent


def save_matrix(
    matrix: CalibrationMatrix, path: str | os.PathLike, *, overwrite: bool = False
) -> None:
    """Write ``matrix`` to ``path`` (temp file + rename)."""
    X = matrix.X
    cm = matrix.columns
    targets = matrix.targets.assign(
        constraints=matrix.targets["constraints"].map(format_constraints)
    )
    with atomic_output(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["period"] = json.dumps(matrix.period)
        f.attrs["level"] = cm.level
        g = f.create_group("X")
        g.attrs["shape"] = X.shape
        for name in ("data", "indices", "indptr"):
            g.create_dataset(name, data=getattr(X, name))
        c = f.create_group("columns")
        c.create_dataset("geographies", data=cm.geographies)
        c.create_dataset("household_ids", data=cm.household_ids)
        if cm.household_weight is not None:
            c.create_dataset("household_weight", data=cm.household_weight)
        if cm.home_state is not None:
            c.create_dataset("home_state", data=cm.home_state)
        write_table(f.create_group("targets"), targets)


def load_matrix(path: str | os.PathLike) -> CalibrationMatrix:
    """Read a matrix written by :func:`save_matrix`."""
    try:
        f = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as exc:
        raise InvalidProblemError(f"cannot read matrix file {str(path)!r}: {exc}") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise InvalidProblemError(f"{str(path)!r} is not a calibopt matrix file.")
        version = int(f.attrs["format_version"])
        if version > FORMAT_VERSION:
            raise InvalidProblemError(f"{str(path)!r} was written by a newer calibopt.")
        g = f["X"]
        X = sp.csr_matrix(
            (g["data"][...], g["indices"][...], g["indptr"][...]), shape=tuple(g.attrs["shape"])
        )
        c = f["columns"]
        cm = ColumnMap(
            c["geographies"][...],
            c["household_ids"][...],
            level=str(f.attrs["level"]),
            household_weight=c["household_weight"][...] if "household_weight" in c else None,
            home_state=c["home_state"][...] if "home_state" in c else None,
        )
        targets = read_table(f["targets"])
        period = json.loads(f.attrs["period"])
    targets["constraints"] = [parse_constraints(t) for t in targets["constraints"]]
    if version == _PERCENT_TOLERANCE_VERSION and "tolerance" in targets:
        targets["tolerance"] = targets["tolerance"] / PERCENT
    for col in ("source", "notes"):
        if col in targets:
            targets[col] = targets[col].astype(object).where(targets[col] != "", None)
    X.has_sorted_indices = bool(np.all(np.diff(X.indptr) >= 0))
    return CalibrationMatrix(targets, X, cm, period=period)
