"""Reading and writing :class:`~calibopt.datasets.Dataset` as HDF5 (h5py).

Two layouts:

**calibopt** (lossless, the default for :meth:`Dataset.to_hdf5`)::

    /                        attrs: format="calibopt-dataset", format_version=1,
                                    period (JSON), name (JSON)
    /<entity>/               one group per entity table; attrs: columns (JSON list, in order)
    /<entity>/<column>       one 1-D dataset per column; attrs: kind = "number" | "bool" |
                             "string" | "category"

Strings are stored as UTF-8 variable-length strings (a missing string becomes ""); a
categorical column is stored as strings and read back as ``category``.

**policyengine** (``/<variable>/<period>``, what PolicyEngine microsimulation tools read and
write): one group per variable, one dataset per period, each an array over the variable's
entity. Person-to-group links are ``person_<entity>_id`` (``person_household_id``,
``person_tax_unit_id``, ...); the entities present are the ``<entity>_id`` variables that have
a ``person_<entity>_id`` link. When reading, each other variable is assigned to the entity
whose row count matches its length; when two entities have the same row count, a variable is
assigned by the ``entities`` argument, by a list of well-known household variables (weights,
geography) or by its name prefix (``tax_unit_...``), and is otherwise an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from ..files import atomic_output
from .dataset import GEOGRAPHY_VARIABLES, Dataset

__all__ = ["read_dataset", "read_table", "write_dataset", "write_into", "write_table"]

# household variables whose entity is known even when two entities have the same row count
_KNOWN_ENTITIES = dict.fromkeys(
    (*GEOGRAPHY_VARIABLES, "household_weight", "county", "county_fips", "county_str"), "household"
) | {"person_weight": "person"}

FORMAT = "calibopt-dataset"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------- writing
def write_dataset(
    dataset: Dataset,
    path: str | os.PathLike,
    *,
    layout: str = "calibopt",
    period: int | str | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``dataset`` to ``path`` atomically; see the module docstring for the layouts."""
    if layout not in ("calibopt", "policyengine"):
        raise InvalidProblemError(f"layout={layout!r} is not one of 'calibopt', 'policyengine'.")
    with atomic_output(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w") as f:
        write_into(dataset, f, layout=layout, period=period)


def write_into(
    dataset: Dataset, f: h5py.File, *, layout: str = "calibopt", period: int | str | None = None
) -> None:
    """Write ``dataset`` into an open, empty HDF5 file (what :func:`write_dataset` does inside
    its temporary file), for writers that manage the file themselves."""
    if layout == "calibopt":
        _write_calibopt(dataset, f)
    else:
        period = dataset.period if period is None else period
        if period is None:
            raise InvalidProblemError(
                "the PolicyEngine layout needs a period: pass period=... or set "
                "Dataset(period=...)."
            )
        _write_policyengine(dataset, f, str(period))


def _column_kind(series: pd.Series) -> str:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(series.dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(series.dtype):
        return "number"
    if pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
        return "string"
    raise InvalidProblemError(
        f"column {series.name!r} has dtype {series.dtype}, which cannot be written to HDF5; "
        f"convert it to a number, bool or string column."
    )


def _column_array(series: pd.Series, kind: str) -> np.ndarray:
    if kind in ("string", "category"):
        values = series.astype(object).where(series.notna(), "")
        return np.array([str(v) for v in values], dtype=object)
    if kind == "bool":
        return series.to_numpy(dtype=bool)
    arr = series.to_numpy()
    if arr.dtype == object:  # pandas nullable numbers with NA
        arr = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return arr


def _check_name(name: str, where: str) -> None:
    if "/" in name or name in ("", ".", ".."):
        raise InvalidProblemError(f"{where} name {name!r} cannot be an HDF5 name (no '/').")


def write_table(group: h5py.Group, frame: pd.DataFrame) -> None:
    """Write a DataFrame as one dataset per column into ``group`` (column order kept)."""
    group.attrs["columns"] = json.dumps([str(c) for c in frame.columns])
    for col in frame.columns:
        _check_name(str(col), "column")
        kind = _column_kind(frame[col])
        arr = _column_array(frame[col], kind)
        if kind in ("string", "category"):
            ds = group.create_dataset(str(col), data=arr, dtype=h5py.string_dtype("utf-8"))
        else:
            ds = group.create_dataset(str(col), data=arr)
        ds.attrs["kind"] = kind


def read_table(group: h5py.Group) -> pd.DataFrame:
    """Read a DataFrame written by :func:`write_table`."""
    data = {}
    for col in json.loads(group.attrs["columns"]):
        ds = group[col]
        kind = ds.attrs.get("kind", "number")
        if kind in ("string", "category"):
            values = ds.asstr()[...]
            data[col] = pd.Series(values, dtype="category" if kind == "category" else "str")
        else:
            data[col] = ds[...]
    return pd.DataFrame(data)


def _write_calibopt(dataset: Dataset, f: h5py.File) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["period"] = json.dumps(dataset.period)
    f.attrs["name"] = json.dumps(dataset.name)
    f.attrs["entities"] = json.dumps(list(dataset.entities))
    for entity, frame in dataset.entities.items():
        write_table(f.create_group(entity), frame)


def _write_policyengine(dataset: Dataset, f: h5py.File, period: str) -> None:
    columns: dict[str, np.ndarray] = {}

    def put(name: str, arr: np.ndarray) -> None:
        if name in columns:
            raise InvalidProblemError(
                f"variable {name!r} would be written twice in the PolicyEngine layout; "
                f"rename the column."
            )
        _check_name(name, "variable")
        columns[name] = arr

    for entity, frame in dataset.entities.items():
        for col in frame.columns:
            if entity == "person" and col.endswith("_id") and col[:-3] in dataset.entities:
                if col != "person_id":
                    put(f"person_{col}", frame[col].to_numpy(dtype=np.int64))
                    continue
            if entity not in ("household", "person") and col == "household_id":
                continue  # derivable from the persons; PolicyEngine files do not store it
            kind = _column_kind(frame[col])
            arr = _column_array(frame[col], kind)
            if kind in ("string", "category"):
                arr = np.char.encode(arr.astype(str), "utf-8")
            put(str(col), arr)
    for name, arr in columns.items():
        f.create_group(name).create_dataset(period, data=arr)


# ---------------------------------------------------------------------------------- reading
def read_dataset(
    path: str | os.PathLike,
    *,
    period: int | str | None = None,
    entities: Mapping[str, str] | None = None,
) -> Dataset:
    """Read a dataset file in either layout (detected); see the module docstring."""
    if not os.path.exists(path):
        raise InvalidProblemError(f"dataset file {str(path)!r} does not exist.")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InvalidProblemError(
            f"{str(path)!r} is not a readable HDF5 file ({exc}); is it truncated or of "
            f"another format?"
        ) from None
    with f:
        if f.attrs.get("format") == FORMAT:
            return _read_calibopt(f, path)
        return _read_policyengine(f, path, period, entities or {})


def _read_calibopt(f: h5py.File, path: Any) -> Dataset:
    version = int(f.attrs.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise InvalidProblemError(
            f"{str(path)!r} has dataset format version {version}; this calibopt reads up to "
            f"{FORMAT_VERSION}. Upgrade calibopt."
        )
    tables = {entity: read_table(f[entity]) for entity in json.loads(f.attrs["entities"])}
    return Dataset(tables, period=json.loads(f.attrs["period"]), name=json.loads(f.attrs["name"]))


def _pe_arrays(f: h5py.File, path: Any, period: int | str | None) -> tuple[dict, Any]:
    """``{variable: array}`` for one period of a ``/<variable>/<period>`` file."""
    periods: set[str] = set()
    for item in f.values():
        if isinstance(item, h5py.Group):
            periods.update(item.keys())
    if period is None:
        if len(periods) > 1:
            raise InvalidProblemError(
                f"{str(path)!r} holds several periods {sorted(periods)}; pass period=..."
            )
        chosen = next(iter(periods), None)
    else:
        chosen = str(period)
        if periods and chosen not in periods:
            raise InvalidProblemError(
                f"{str(path)!r} has no data for period {chosen!r}; it has {sorted(periods)}."
            )
    arrays = {}
    for name, item in f.items():
        if isinstance(item, h5py.Dataset):  # flat files: /<variable>
            arrays[name] = item[...]
        elif chosen is not None and chosen in item:
            arrays[name] = item[chosen][...]
    for name, arr in arrays.items():
        if arr.dtype.kind == "S":
            arrays[name] = np.char.decode(arr, "utf-8").astype(object)
        elif arr.ndim != 1:
            raise InvalidProblemError(f"{str(path)!r}: variable {name!r} is not one-dimensional.")
    return arrays, chosen


def _read_policyengine(
    f: h5py.File, path: Any, period: int | str | None, declared: Mapping[str, str]
) -> Dataset:
    arrays, chosen = _pe_arrays(f, path, period)
    for required in ("person_id", "household_id", "person_household_id"):
        if required not in arrays:
            raise InvalidProblemError(
                f"{str(path)!r} is not a calibopt dataset and lacks {required!r}, which a "
                f"PolicyEngine-style /<variable>/<period> file must have."
            )
    groups = [
        name[: -len("_id")]
        for name in arrays
        if name.endswith("_id") and f"person_{name}" in arrays and name != "person_id"
    ]
    groups.sort(key=lambda e: (e != "household", e))
    sizes = {"person": len(arrays["person_id"])}
    sizes.update({e: len(arrays[f"{e}_id"]) for e in groups})
    links = {f"person_{e}_id" for e in groups}
    columns: dict[str, dict[str, np.ndarray]] = {e: {} for e in ["household", "person", *groups]}
    for e in groups:
        columns[e][f"{e}_id"] = arrays[f"{e}_id"]
        columns["person"][f"{e}_id"] = arrays[f"person_{e}_id"]
    columns["person"]["person_id"] = arrays["person_id"]
    ambiguous = []
    for name, arr in arrays.items():
        if name in links or any(name == f"{e}_id" for e in ["person", *groups]):
            continue
        entity = declared.get(name)
        known = _KNOWN_ENTITIES.get(name)
        if entity is None and known in sizes and sizes[known] == len(arr):
            entity = known
        if entity is None:
            fits = [e for e, n in sizes.items() if n == len(arr)]
            if len(fits) > 1:
                by_prefix = [e for e in fits if name.startswith(f"{e}_")]
                fits = by_prefix if len(by_prefix) == 1 else fits
            if not fits:
                raise InvalidProblemError(
                    f"{str(path)!r}: variable {name!r} has {len(arr)} values, which matches no "
                    f"entity (sizes {sizes})."
                )
            if len(fits) > 1:
                ambiguous.append(f"{name} ({'/'.join(fits)})")
                continue
            entity = fits[0]
        if entity not in columns or len(arr) != sizes[entity]:
            raise InvalidProblemError(
                f"{str(path)!r}: variable {name!r} declared on {entity!r} but has {len(arr)} "
                f"values (sizes {sizes})."
            )
        columns[entity][name] = arr
    if ambiguous:
        raise InvalidProblemError(
            f"{str(path)!r}: cannot tell the entity of {ambiguous[:10]} (two entities have "
            f"the same number of rows); pass entities={{variable: entity}}."
        )
    person_hh = columns["person"]["household_id"]
    for e in groups:
        if e == "household":
            continue
        # a group's household: the household of (any of) its persons
        pos = pd.Index(columns[e][f"{e}_id"]).get_indexer(columns["person"][f"{e}_id"])
        if (pos < 0).any():
            bad = columns["person"][f"{e}_id"][pos < 0][:5].tolist()
            raise InvalidProblemError(
                f"{str(path)!r}: person_{e}_id has dangling link(s) to {e} ids {bad}."
            )
        hh = np.zeros(sizes[e], dtype=np.int64)
        hh[pos] = person_hh
        columns[e] = {f"{e}_id": columns[e][f"{e}_id"], "household_id": hh} | {
            k: v for k, v in columns[e].items() if k != f"{e}_id"
        }
    tables = {e: pd.DataFrame(cols) for e, cols in columns.items()}
    period_value: Any = chosen
    if isinstance(chosen, str) and chosen.isdigit():
        period_value = int(chosen)
    return Dataset(tables, period=period_value, name=os.path.basename(str(path)))
