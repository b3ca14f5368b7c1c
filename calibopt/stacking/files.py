"""Writing a stacked dataset (HDF5 + mapping CSV, atomically) and reading it back.

The HDF5 file is a :class:`~calibopt.datasets.Dataset` file in either layout of
:mod:`calibopt.datasets.hdf5` (``"calibopt"``, lossless, or ``"policyengine"``,
``/<variable>/<period>``), with one more root attribute, ``calibopt_stacking``: a JSON object
with ``format`` (``"calibopt-stacked"``), ``format_version``, ``layout``, ``level``, ``ids``
(the :class:`~calibopt.stacking.IdScheme`), ``geographies`` (those in the file), ``variables``
(``{variable: entity}``, so PolicyEngine-layout files read back without guessing),
``mapping`` (the CSV's file name), ``mapping_sha256`` (the SHA-256 digest of the CSV's bytes),
``records`` and ``weight_total``. Root attributes are invisible to ``/<variable>/<period>``
readers.

The mapping CSV (default: ``<stem>_household_mapping.csv`` beside the file) has one row per
household record: ``new_household_id, original_household_id, congressional_district,
state_fips`` (the columns other tools expect; no district column with state columns), then
``household_weight`` and ``matrix_column``.

The two files are a pair. Both are written to temporary files in their directories
(:func:`calibopt.files.atomic_outputs`) and renamed into place only when both are complete, the
CSV first and the HDF5 file last; the HDF5 file records the digest of the CSV it was written
with, and :func:`load` refuses a mapping CSV with another digest. So an interrupted or failed
run leaves no half-written file and does not touch existing ones; a run killed between the two
renames leaves a new CSV beside the old HDF5 file, which :func:`load` refuses instead of
pairing them (write again with ``overwrite=True``). Existing outputs are replaced only with
``overwrite=True``. Files of format version 1 carry no digest and load without the check.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..datasets.dataset import Dataset
from ..datasets.hdf5 import write_into
from ..errors import InvalidProblemError
from ..files import atomic_outputs, sha256_of
from .ids import IdScheme
from .stacked import StackedDataset

__all__ = ["ATTRIBUTE", "FORMAT", "check_outputs", "load", "mapping_path_for", "write_stacked"]

ATTRIBUTE = "calibopt_stacking"
FORMAT = "calibopt-stacked"
FORMAT_VERSION = 2
LAYOUTS = ("calibopt", "policyengine")


def mapping_path_for(path: str | os.PathLike) -> Path:
    """The default mapping CSV of a stacked file: ``<stem>_household_mapping.csv`` beside it."""
    p = Path(path)
    return p.with_name(f"{p.stem}_household_mapping.csv")


def check_outputs(paths: list[Path], overwrite: bool) -> None:
    """Refuse, before any work, outputs that exist (without ``overwrite``), are directories,
    or whose directory cannot be created or written."""
    for p in paths:
        if p.is_dir():
            raise InvalidProblemError(f"output {str(p)!r} is a directory, not a file path.")
        if p.exists() and not overwrite:
            raise InvalidProblemError(
                f"{str(p)!r} already exists; pass overwrite=True (--overwrite) to replace it."
            )
        parent = p.parent.resolve()
        existing = parent
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise InvalidProblemError(
                f"cannot write {str(p)!r}: {str(existing)!r} is a file, not a directory."
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InvalidProblemError(
                f"cannot write {str(p)!r}: the directory {str(existing)!r} is not writable."
            )


def write_stacked(
    stacked: StackedDataset,
    path: str | os.PathLike,
    *,
    layout: str = "calibopt",
    mapping_path: str | os.PathLike | None = None,
    period: int | str | None = None,
    overwrite: bool = False,
) -> StackedDataset:
    """Write ``stacked`` to ``path`` and its mapping CSV (see the module docstring)."""
    if layout not in LAYOUTS:
        raise InvalidProblemError(f"layout={layout!r} is not one of {LAYOUTS}.")
    path = Path(path)
    mpath = Path(mapping_path) if mapping_path is not None else mapping_path_for(path)
    if path.resolve() == mpath.resolve():
        raise InvalidProblemError("the mapping CSV and the HDF5 file must be different files.")
    if stacked.mapping is None:
        raise InvalidProblemError("this stacked dataset has no household mapping to write.")
    check_outputs([path, mpath], overwrite)
    ds = stacked.dataset
    if layout == "policyengine" and period is None and ds.period is None:
        raise InvalidProblemError(
            "the PolicyEngine layout needs a period: pass period=... (--period)."
        )
    same_dir = mpath.parent.resolve() == path.parent.resolve()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "layout": layout,
        "level": stacked.level,
        "ids": stacked.ids.to_dict(),
        "geographies": np.asarray(stacked.geographies).tolist(),
        "variables": ds.variables,
        "period": ds.period if period is None else period,
        "mapping": mpath.name if same_dir else str(mpath.resolve()),
        "records": {e: len(t) for e, t in ds.entities.items()},
        "weight_total": float(ds.household["household_weight"].sum()),
    }
    try:
        # the CSV is renamed first, the HDF5 file (which vouches for it) last
        with atomic_outputs([mpath, path], overwrite=overwrite) as (tmp_csv, tmp_h5):
            write_csv(stacked.mapping, tmp_csv)
            meta["mapping_sha256"] = sha256_of(tmp_csv)
            with h5py.File(tmp_h5, "w") as f:
                write_into(ds, f, layout=layout, period=period)
                f.attrs[ATTRIBUTE] = json.dumps(meta)
    except OSError as exc:
        raise InvalidProblemError(
            f"writing {str(path)!r} failed ({exc}); nothing was written or replaced."
        ) from exc
    return stacked.with_location(path, mpath, layout)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, chunk: int = 65_536) -> None:
    """Write a table of numbers as CSV, byte for byte what ``frame.to_csv(path, index=False)``
    writes (floats as their shortest round-trip repr), with the C ``csv`` writer in chunks of
    rows: about twice as fast as pandas and never more than one chunk of Python objects."""
    arrays = [frame[c].to_numpy() for c in frame.columns]
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(frame.columns)
        for start in range(0, len(frame), chunk):
            out.writerows(zip(*(a[start : start + chunk].tolist() for a in arrays)))


def load(
    path: str | os.PathLike, *, mapping_path: str | os.PathLike | None = None
) -> StackedDataset:
    """Read a stacked dataset written by :func:`~calibopt.stacking.stack`, either layout.

    Parameters
    ----------
    path
        The HDF5 file.
    mapping_path
        The mapping CSV (default: the one recorded in the file, beside it). When it does not
        exist the result's ``mapping`` is None.

    Returns
    -------
    StackedDataset

    Raises
    ------
    InvalidProblemError
        The file is missing, unreadable or not a stacked dataset, or the mapping CSV is not
        the one written with it (its SHA-256 digest differs from the one the file records:
        the pair comes from two different runs, or the CSV was edited).
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidProblemError(f"stacked dataset file {str(p)!r} does not exist.")
    try:
        with h5py.File(p, "r") as f:
            raw = f.attrs.get(ATTRIBUTE)
    except OSError as exc:
        raise InvalidProblemError(
            f"{str(p)!r} is not a readable HDF5 file ({exc}); is it truncated?"
        ) from None
    if raw is None:
        raise InvalidProblemError(
            f"{str(p)!r} is not a stacked dataset written by calibopt.stacking (no "
            f"{ATTRIBUTE!r} attribute); read a plain dataset with Dataset.from_hdf5."
        )
    meta = json.loads(raw)
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise InvalidProblemError(
            f"{str(p)!r} was written by a newer calibopt (stacking format version "
            f"{meta['format_version']}); upgrade calibopt."
        )
    ds = Dataset.from_hdf5(p, period=meta.get("period"), entities=meta["variables"])
    ds.name = p.name
    if mapping_path is not None:
        mpath = Path(mapping_path)
    else:
        recorded = Path(meta["mapping"])
        mpath = recorded if recorded.is_absolute() else p.parent / recorded
    mapping = _read_mapping(p, mpath, meta.get("mapping_sha256"))
    return StackedDataset(
        dataset=ds,
        mapping=mapping,
        ids=IdScheme.from_dict(meta["ids"]),
        geographies=np.asarray(meta["geographies"], dtype=np.int64),
        level=meta["level"],
        path=p,
        mapping_path=mpath if mapping is not None else None,
        layout=meta["layout"],
        info={k: meta[k] for k in ("records", "weight_total", "period") if k in meta},
    )


def _read_mapping(path: Path, mpath: Path, digest: str | None) -> pd.DataFrame | None:
    """The mapping CSV, after checking it is the one ``path`` was written with."""
    if not mpath.is_file():
        return None
    if digest is not None and sha256_of(mpath) != digest:
        raise InvalidProblemError(
            f"the mapping CSV {str(mpath)!r} is not the one written with {str(path)!r} (its "
            "SHA-256 digest differs from the one the HDF5 file records): the two files come "
            "from different runs, e.g. a run stopped between its two renames, or the CSV was "
            "edited. Write the stacked dataset again (overwrite=True, --overwrite)."
        )
    return pd.read_csv(mpath)
