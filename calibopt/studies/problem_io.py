"""Save and load any :class:`~calibopt.CalibrationProblem` as one ``.npz`` file.

The file is an uncompressed zip (numpy's ``.npz`` layout) holding the CSR arrays of ``X``,
every per-unit and per-target vector that is not constant, and one ``problem.json`` member
with the rest: shape, target names, groups, constant vectors, whether ratio bounds were
given, unit ids (when they are not numbers) and free-form provenance (generator, seed, size,
source). ``numpy.load`` reads it like any ``.npz``; :func:`load_problem` can also
memory-map its arrays (``mmap=True``), so that worker processes of a study share the
pages of a large matrix instead of each holding a copy.

Names and groups round-trip as strings (numbers as written by ``str``); ``groups`` keep
numbers and booleans that JSON represents exactly.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidProblemError
from ..files import atomic_output
from ..problem import CalibrationProblem

__all__ = ["FORMAT", "load_problem", "problem_digest", "problem_meta", "save_problem"]

FORMAT = "calibopt-problem"
"""The ``format`` field of a saved problem's JSON."""
VERSION = 1
_VECTORS = (
    "targets",
    "initial_weights",
    "lower",
    "upper",
    "ratio_lower",
    "ratio_upper",
    "tolerance",
)


def _json_label(value: Any) -> Any:
    """A group label JSON keeps exactly (str, int, float, bool, None), else its ``str``."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and np.isfinite(value):
        return value
    return str(value)


def _json_float(x: float) -> Any:
    return x if np.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "nan")


def _from_json_float(x: Any) -> float:
    return float(x)


def problem_digest(problem: CalibrationProblem) -> str:
    """A SHA-256 digest of everything that defines ``problem`` (matrix, vectors, names,
    groups): two problems with the same digest give the same study rows."""
    h = hashlib.sha256()
    X = problem.X
    h.update(repr(X.shape).encode())
    for arr in (X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64)):
        h.update(np.ascontiguousarray(arr).tobytes())
    for name in _VECTORS:
        h.update(np.ascontiguousarray(getattr(problem, name), dtype=np.float64).tobytes())
    labels = [list(problem.target_names), [_json_label(g) for g in problem.groups]]
    h.update(json.dumps([labels, bool(problem.has_ratio_bounds)]).encode())
    return h.hexdigest()[:16]


def save_problem(
    problem: CalibrationProblem,
    path: str | os.PathLike,
    *,
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``problem`` to one ``.npz`` file (atomically).

    Parameters
    ----------
    problem
        Any calibration problem.
    path
        The file to write (``.npz`` is appended when missing).
    provenance
        JSON-serialisable facts about where the problem comes from (generator, size, seed,
        source, ...), read back by :func:`problem_provenance`.
    overwrite
        Replace an existing file.

    Returns
    -------
    Path
        The file written.
    """
    if not isinstance(problem, CalibrationProblem):
        raise InvalidProblemError(
            f"save_problem needs a CalibrationProblem, got {type(problem).__name__}."
        )
    p = Path(path)
    if p.suffix != ".npz":
        p = p.with_name(p.name + ".npz")
    X = problem.X
    idx = np.int32 if max(X.nnz, X.shape[1]) < np.iinfo(np.int32).max else np.int64
    arrays: dict[str, np.ndarray] = {
        "X_data": np.ascontiguousarray(X.data, dtype=np.float64),
        "X_indices": np.ascontiguousarray(X.indices, dtype=idx),
        "X_indptr": np.ascontiguousarray(X.indptr, dtype=idx),
    }
    constants: dict[str, Any] = {}
    for name in _VECTORS:
        v = np.asarray(getattr(problem, name), dtype=np.float64)
        if v.size and (v == v[0]).all():
            constants[name] = _json_float(float(v[0]))
        else:
            arrays[name] = v
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "digest": problem_digest(problem),
        "shape": [int(problem.n_targets), int(problem.n_units)],
        "target_names": list(problem.target_names),
        "groups": [_json_label(g) for g in problem.groups],
        "has_ratio_bounds": bool(problem.has_ratio_bounds),
        "constants": constants,
        "unit_ids": None,
        "provenance": dict(provenance or {}),
    }
    ids = problem.unit_ids
    if ids is not None:
        ids = np.asarray(ids)
        if ids.dtype.kind in "iufb":
            arrays["unit_ids"] = ids
            meta["unit_ids"] = "array"
        else:
            meta["unit_ids"] = [str(x) for x in ids]
    try:
        text = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidProblemError(f"`provenance` must be JSON-serialisable: {exc}") from None
    with atomic_output(p, overwrite=overwrite) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, arr, allow_pickle=False)
            zf.writestr("problem.json", text)
    return p


def _member_memmap(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """A read-only memory map of an uncompressed ``.npy`` member of a zip file."""
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if local[:4] != b"PK\x03\x04":
            raise InvalidProblemError(f"{str(path)!r}: corrupt zip member {info.filename}.")
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_len + extra_len
        fh.seek(start)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        offset = fh.tell()
    if dtype.hasobject:
        raise InvalidProblemError(f"{str(path)!r}: member {info.filename} holds objects.")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(
        path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C"
    )


def _read(path: Path, mmap: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if not path.is_file():
        raise InvalidProblemError(f"problem file {str(path)!r} does not exist.")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidProblemError(f"{str(path)!r} is not a saved problem (.npz): {exc}") from None
    with zf:
        names = set(zf.namelist())
        if "problem.json" not in names:
            raise InvalidProblemError(
                f"{str(path)!r} has no problem.json: not written by calibopt's save_problem."
            )
        meta = json.loads(zf.read("problem.json"))
        if meta.get("format") != FORMAT or int(meta.get("version", 0)) > VERSION:
            raise InvalidProblemError(
                f"{str(path)!r}: format {meta.get('format')!r} version {meta.get('version')} "
                f"is not one this calibopt reads ({FORMAT} <= {VERSION})."
            )
        arrays = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            if mmap and info.compress_type == zipfile.ZIP_STORED:
                arrays[key] = _member_memmap(path, zf, info)
            else:
                arrays[key] = np.lib.format.read_array(
                    io.BytesIO(zf.read(info)), allow_pickle=False
                )
    return meta, arrays


def load_problem(path: str | os.PathLike, *, mmap: bool = False) -> CalibrationProblem:
    """Read a problem written by :func:`save_problem`.

    Parameters
    ----------
    path
        The ``.npz`` file.
    mmap
        Memory-map the arrays (read-only) instead of reading them: processes that load the
        same file share its pages (the operating system's page cache), and loading is
        immediate whatever the size.

    Returns
    -------
    CalibrationProblem
    """
    meta, arrays = _read(Path(path), mmap)
    m, n = meta["shape"]
    const = meta["constants"]

    def vector(name: str, size: int) -> np.ndarray:
        if name in arrays:
            return arrays[name]
        return np.full(size, _from_json_float(const[name]))

    X = sp.csr_matrix((arrays["X_data"], arrays["X_indices"], arrays["X_indptr"]), shape=(m, n))
    ids = meta.get("unit_ids")
    unit_ids = arrays.get("unit_ids") if ids == "array" else (None if ids is None else ids)
    return CalibrationProblem(
        X,
        vector("targets", m),
        initial_weights=vector("initial_weights", n),
        bounds=(vector("lower", n), vector("upper", n)),
        ratio_bounds=(vector("ratio_lower", n), vector("ratio_upper", n))
        if meta["has_ratio_bounds"]
        else None,
        tolerance=vector("tolerance", m),
        target_names=meta["target_names"],
        groups=meta["groups"],
        unit_ids=unit_ids,
    )


def problem_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON part of a saved problem (shape, names, digest, ``provenance``), without
    reading its arrays."""
    p = Path(path)
    if not p.is_file():
        raise InvalidProblemError(f"problem file {str(p)!r} does not exist.")
    try:
        with zipfile.ZipFile(p) as zf:
            return dict(json.loads(zf.read("problem.json")))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InvalidProblemError(f"{str(p)!r} is not a saved problem: {exc}") from None
