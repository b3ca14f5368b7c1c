"""Build a calibration problem from unit data and population margins, the way survey users work.

Margins are categorical counts (``{"region": {"N": 1200, "S": 800}}``) or continuous totals
(``{"income": 4.2e9}``), given as a dict or as a tidy DataFrame with columns
``variable``, ``level`` (missing for a continuous total) and ``total``. The matrix is built
sparse, column by column, without densifying: one entry per unit per margin variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import InvalidProblemError
from .problem import CalibrationProblem

__all__ = ["margins_matrix", "parse_margins", "problem_from_margins"]

POPULATION = "(population)"


def parse_margins(margins: Mapping[str, Any] | pd.DataFrame) -> dict[str, Any]:
    """Normalise margins to ``{variable: {level: total}}`` (categorical) or ``{variable: total}``.

    Parameters
    ----------
    margins
        A mapping ``variable -> mapping/Series of level -> count`` or ``variable -> total``,
        or a DataFrame with columns ``variable``, ``level`` and ``total`` where ``level`` is
        empty/NaN for a continuous total.
    """
    if isinstance(margins, pd.DataFrame):
        missing = {"variable", "total"} - set(margins.columns)
        if missing:
            raise InvalidProblemError(
                f"`margins` DataFrame lacks column(s) {sorted(missing)}; it needs 'variable', "
                f"'level' (empty for continuous totals) and 'total'."
            )
        out: dict[str, Any] = {}
        levels = (
            margins["level"]
            if "level" in margins.columns
            else pd.Series([None] * len(margins), index=margins.index)
        )
        for var, lev, tot in zip(margins["variable"], levels, margins["total"]):
            var = str(var)
            if lev is None or pd.isna(lev) or (isinstance(lev, str) and lev == ""):
                if var in out:
                    raise InvalidProblemError(f"`margins`: variable {var!r} given twice.")
                out[var] = tot
            else:
                cat = out.setdefault(var, {})
                if not isinstance(cat, dict):
                    raise InvalidProblemError(
                        f"`margins`: variable {var!r} has both a continuous total and levels."
                    )
                if lev in cat:
                    raise InvalidProblemError(f"`margins`: level {lev!r} of {var!r} given twice.")
                cat[lev] = tot
        return out
    if not isinstance(margins, Mapping):
        raise InvalidProblemError(
            f"`margins` must be a dict or a DataFrame, got {type(margins).__name__}."
        )
    out = {}
    for var, spec in margins.items():
        if isinstance(spec, pd.Series):
            spec = spec.to_dict()
        if isinstance(spec, Mapping):
            if len(spec) == 0:
                raise InvalidProblemError(f"`margins[{var!r}]` has no levels.")
            out[str(var)] = dict(spec)
        elif np.ndim(spec) == 0:
            out[str(var)] = spec
        else:
            raise InvalidProblemError(
                f"`margins[{var!r}]` must be a mapping level -> count or a scalar total, "
                f"got {type(spec).__name__}."
            )
    return out


def _total(value: Any, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidProblemError(
            f"`margins`: total for {where} is not numeric: {value!r}."
        ) from None
    if not np.isfinite(v):
        raise InvalidProblemError(f"`margins`: total for {where} is not finite ({v}).")
    return v


def _factorize(column: pd.Series) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """``(index, table, uniques)``: unit ``i`` has level ``uniques[table[index[i]]]``.

    ``table[index[i]] == -1`` marks a missing value. Integer columns of a moderate range index
    a table by value (a bincount, several times faster than hashing); other columns go
    through ``pandas.factorize`` (``index`` its codes, ``-1`` picking the table's last entry).
    """
    arr = column.to_numpy()
    if arr.dtype.kind in "iu" and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo <= max(1024, arr.size):
            if lo == 0 and arr.dtype == np.int64:
                shifted = arr
            else:
                shifted = (arr - lo).astype(np.int64, copy=False)
            present = np.flatnonzero(np.bincount(shifted, minlength=hi - lo + 1))
            table = np.full(hi - lo + 1, -1, dtype=np.int64)
            table[present] = np.arange(present.size)
            return shifted, table, [arr.dtype.type(lo + k) for k in present]
    codes, uniques = pd.factorize(column, sort=False)
    table = np.arange(len(uniques) + 1, dtype=np.int64)
    table[-1] = -1
    return np.asarray(codes), table, list(uniques)


def _categorical(
    column: pd.Series, spec: dict[Any, Any], var: str
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The margin's levels that some unit has, and ``(table, index)``: unit ``i`` is at
    position ``table[index[i]]`` among them.

    An absent level must have total 0 (dropped, as R ``survey`` does), otherwise its total
    cannot be reached; a missing value or a level without a total is an error.
    """
    index, table, uniques = _factorize(column)
    present = {str(u) for u in uniques}
    absent = [lev for lev in spec if str(lev) not in present]
    unreachable = [lev for lev in absent if _total(spec[lev], f"{var}={lev}") != 0]
    if unreachable:
        raise InvalidProblemError(
            f"`margins[{var!r}]` has level(s) {unreachable[:5]} that no unit in the sample has "
            f"but a non-zero total; their totals cannot be reached. Collapse them into "
            f"neighbouring levels or drop them."
        )
    levels = [lev for lev in spec if lev not in absent]
    # only pandas codes can be -1 (missing); the integer path's table ends at the largest value
    if table[-1] < 0 and table.size == len(uniques) + 1:
        missing = index < 0
        if missing.any():
            raise InvalidProblemError(
                f"`data[{var!r}]` has {int(missing.sum())} missing value(s), first at row "
                f"{int(np.flatnonzero(missing)[0])}; every unit needs a level of each "
                f"categorical margin."
            )
    lookup = {lev: k for k, lev in enumerate(levels)}
    # map each observed level to its margin position
    pos = np.empty(len(uniques), dtype=np.int64)
    absent_in_margins = []
    for k, u in enumerate(uniques):
        hit = lookup.get(u)
        if hit is None:
            # tolerate int/str/float spellings of the same level (1 vs "1" vs 1.0)
            for lev, j in lookup.items():
                if str(lev) == str(u):
                    hit = j
                    break
        if hit is None:
            absent_in_margins.append(u)
            pos[k] = -1
        else:
            pos[k] = hit
    if absent_in_margins:
        raise InvalidProblemError(
            f"`data[{var!r}]` has level(s) {absent_in_margins[:5]} with no population total in "
            f"`margins[{var!r}]` (levels there: {levels[:10]}); add their totals or recode them."
        )
    return levels, np.where(table >= 0, pos[table], -1), index


def margins_matrix(
    data: pd.DataFrame,
    margins: Mapping[str, Any] | pd.DataFrame,
    population: float | None = None,
) -> tuple[sp.csc_matrix, np.ndarray, list[str], list[str]]:
    """The sparse matrix, totals, target names and groups for margins over ``data``.

    Returns
    -------
    X : csc_matrix, shape (n_targets, n_units)
    totals : ndarray
    names : list of str
        ``"var=level"`` for categorical cells, ``"var"`` for continuous totals and
        ``"(population)"`` for the population count.
    groups : list of str
        The margin variable of each target.
    """
    if not isinstance(data, pd.DataFrame):
        raise InvalidProblemError(f"`data` must be a pandas DataFrame, got {type(data).__name__}.")
    n = len(data)
    if n == 0:
        raise InvalidProblemError("`data` has no rows.")
    spec = parse_margins(margins)
    if not spec and population is None:
        raise InvalidProblemError("`margins` is empty and no `population` was given.")
    dup = data.columns[data.columns.duplicated()].unique().tolist()
    if dup:
        raise InvalidProblemError(
            f"`data` has duplicated column name(s) {dup[:5]}; rename them so each margin "
            f"variable names one column."
        )
    missing = [v for v in spec if v not in data.columns]
    if missing:
        raise InvalidProblemError(
            f"`margins` names variable(s) {missing} that `data` lacks; data has "
            f"{list(data.columns)[:20]}."
        )
    # CSC with one entry per unit per margin variable, row indices increasing in each column
    k = len(spec) + (population is not None)
    indices = np.empty((n, k), dtype=np.int32)
    values = np.ones((n, k), dtype=np.float64)
    names: list[str] = []
    groups: list[str] = []
    totals: list[float] = []
    offset = 0
    col = 0
    if population is not None:
        indices[:, 0] = 0
        names.append(POPULATION)
        groups.append(POPULATION)
        totals.append(_total(population, "population"))
        offset = col = 1
    for var, s in spec.items():
        column = data[var]
        if isinstance(s, dict):
            levels, table, index = _categorical(column, s, var)
            # one gather straight into the matrix's column of row indices
            np.take((table + offset).astype(np.int32), index, out=indices[:, col], mode="clip")
            for lev in levels:
                names.append(f"{var}={lev}")
                groups.append(var)
                totals.append(_total(s[lev], f"{var}={lev}"))
            offset += len(levels)
        else:
            if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
                raise InvalidProblemError(
                    f"`data[{var!r}]` is not numeric (dtype {column.dtype}) but `margins[{var!r}]` "
                    f"is a continuous total; give level counts for a categorical variable."
                )
            vals = column.to_numpy(dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(vals))
            if bad.size:
                raise InvalidProblemError(
                    f"`data[{var!r}]` has {bad.size} missing or infinite value(s), first at row "
                    f"{int(bad[0])}."
                )
            indices[:, col] = offset
            values[:, col] = vals
            names.append(var)
            groups.append(var)
            totals.append(_total(s, var))
            offset += 1
        col += 1
    indptr = np.arange(0, k * n + 1, k, dtype=np.int64 if k * n >= 2**31 else np.int32)
    X = sp.csc_matrix((values.ravel(), indices.ravel(), indptr), shape=(offset, n))
    return X, np.asarray(totals), names, groups


def problem_from_margins(
    data: pd.DataFrame,
    margins: Mapping[str, Any] | pd.DataFrame,
    weights: str | np.ndarray | pd.Series | None = None,
    population: float | None = None,
    **problem_options: Any,
) -> CalibrationProblem:
    """A :class:`CalibrationProblem` from unit data and population margins.

    Parameters
    ----------
    data
        One row per unit; the margin variables are columns.
    margins
        Categorical counts ``{var: {level: count}}`` and continuous totals ``{var: total}``,
        or a DataFrame with columns ``variable``, ``level``, ``total``.
    weights
        Design weights: a column name of ``data`` or an array; default 1.
    population
        Optional population size (adds an intercept target ``"(population)"``).
    **problem_options
        Passed to :class:`CalibrationProblem` (``bounds``, ``ratio_bounds``, ``tolerance``).

    Examples
    --------
    >>> problem = problem_from_margins(sample, {"sex": {"F": 510, "M": 490}, "income": 3.1e7},
    ...                                weights="pw")
    """
    if not isinstance(data, pd.DataFrame):
        raise InvalidProblemError(
            f"`data` must be a pandas DataFrame (one row per unit), got {type(data).__name__}; "
            f"wrap it with pd.DataFrame(...)."
        )
    if isinstance(weights, str):
        if weights not in data.columns:
            raise InvalidProblemError(f"`weights` column {weights!r} is not in `data`.")
        d = data[weights]
        if not pd.api.types.is_numeric_dtype(d):
            raise InvalidProblemError(f"`weights` column {weights!r} is not numeric ({d.dtype}).")
        d = d.to_numpy(dtype=np.float64)
    else:
        d = weights
    X, totals, names, groups = margins_matrix(data, margins, population)
    return CalibrationProblem(
        X,
        totals,
        initial_weights=d,
        target_names=names,
        groups=groups,
        unit_ids=data.index.to_numpy(),
        **problem_options,
    )
