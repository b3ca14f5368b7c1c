"""Totals, means and ratios with standard errors: ``total(y, design, calibration=...)``.

Each function takes one variable or many (a column name, a list of names, an array, a
DataFrame) and estimates all of them in one pass: the linearised scores of every variable are
residualised together (one regression on the calibration variables) and their covariance is
one sparse pass over the design. ``by=`` gives domain estimates (R's ``svyby``): a domain's
total is the total of ``y`` times the domain indicator over the whole sample, so the design
(strata, PSUs, calibration) stays the full sample's, as in R.

With a :class:`~calibopt.variance.ReplicateDesign` the variance comes from the replicate
weights instead (R's ``svrVar``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from ..result import CalibrationResult
from .calibration import Calibration
from .design import Design, DesignError
from .estimate import Estimate
from .linearisation import design_covariance, residualise

__all__ = ["evaluate", "mean", "ratio", "total"]


# ---------------------------------------------------------------------------- inputs
def _frame_of(source: Any) -> pd.DataFrame | None:
    return getattr(source, "data", None)


def _one_column(value: Any, name: str, data: pd.DataFrame | None, n: int, na_rm: bool = False):
    """(matrix, names) for one named or given variable; categories -> one column per level.

    Missing values raise, or with ``na_rm`` become NaN rows (every column of the variable)."""
    if isinstance(value, str):
        if data is None or value not in data.columns:
            have = [] if data is None else list(data.columns)[:20]
            raise DesignError(
                f"variable {value!r} is not a column of the design's data (columns: {have})."
            )
        series = data[value]
        name = value
    else:
        series = value
    if isinstance(series, pd.Series) and data is not None and not series.index.equals(data.index):
        raise DesignError(
            f"variable {name!r} is a Series whose index does not match the design's rows; "
            f"align it first (series.reindex(data.index))."
        )
    if isinstance(series, pd.Series) and pd.api.types.is_numeric_dtype(series.dtype):
        arr = series.to_numpy(dtype=np.float64, na_value=np.nan)  # nullable ints: NA -> NaN
    else:
        arr = np.asarray(series)
    if arr.shape[0] != n:
        raise DesignError(
            f"variable {name!r} has {arr.shape[0]} values but the design has {n} rows."
        )
    if arr.dtype.kind in "biuf":
        vals = np.asarray(arr, dtype=np.float64)
        if vals.ndim == 1:
            vals = vals[:, None]
        names = [name] if vals.shape[1] == 1 else [f"{name}{j}" for j in range(vals.shape[1])]
        if np.isfinite(vals.sum()):
            return vals, names
        bad = np.flatnonzero(~np.isfinite(vals).all(1))
        if not na_rm or np.isinf(vals).any():
            raise DesignError(
                f"variable {name!r} has missing or non-finite values at {bad.size} row(s) "
                f"(first: {bad[:5].tolist()}); pass na_rm=True to estimate over the rows where "
                f"it is known (R's na.rm: a domain, the design unchanged). Dropping the rows "
                f"from the data would change the design."
            )
        vals[bad] = np.nan
        return vals, names
    missing = np.asarray(pd.isna(arr), dtype=bool)
    if missing.any() and not na_rm:
        raise DesignError(
            f"variable {name!r} has {int(missing.sum())} missing value(s); pass na_rm=True to "
            f"estimate over the rows where it is known (R's na.rm)."
        )
    levels = _levels(arr[~missing])
    out = np.stack([(arr == lv).astype(np.float64) for lv in levels], axis=1)
    out[missing] = np.nan
    return out, [f"{name}={lv}" for lv in levels]


def _levels(labels: Any) -> list[Any]:
    if isinstance(labels, pd.Categorical) or isinstance(
        getattr(labels, "dtype", None), pd.CategoricalDtype
    ):
        return list(pd.Categorical(labels).categories)
    return sorted(pd.unique(np.asarray(labels, dtype=object)), key=lambda v: (str(type(v)), v))


def variables(y: Any, source: Any, n: int, na_rm: bool = False) -> tuple[np.ndarray, list[str]]:
    """The matrix ``(n, k)`` and names of the variables ``y`` (NaN rows where a value is
    missing, with ``na_rm``)."""
    data = _frame_of(source)
    if isinstance(y, pd.DataFrame):
        parts = [_one_column(y[c], str(c), data, n, na_rm) for c in y.columns]
    elif isinstance(y, list | tuple):
        parts = [
            _one_column(v, v if isinstance(v, str) else f"y{j}", data, n, na_rm)
            for j, v in enumerate(y)
        ]
    else:
        label = y if isinstance(y, str) else getattr(y, "name", None) or "y"
        parts = [_one_column(y, str(label), data, n, na_rm)]
    matrix = parts[0][0] if len(parts) == 1 else np.hstack([p[0] for p in parts])
    return matrix, [nm for p in parts for nm in p[1]]


def _domains(by: Any, source: Any, n: int) -> tuple[np.ndarray, list[Any], str]:
    data = _frame_of(source)
    if isinstance(by, str):
        if data is None or by not in data.columns:
            raise DesignError(f"`by`: column {by!r} is not in the design's data.")
        labels, name = data[by], by
    else:
        labels, name = by, getattr(by, "name", None) or "domain"
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise DesignError(f"`by` must have one label per row ({n}), got shape {arr.shape}.")
    if pd.isna(arr).any():
        raise DesignError("`by` has missing labels.")
    levels = _levels(labels)
    return np.stack([arr == lv for lv in levels], axis=1).astype(np.float64), levels, name


def _expand(Y: np.ndarray, names: list[str], D: np.ndarray | None, levels: list[Any] | None):
    """Columns ``y * 1{domain}`` for every (domain, variable), domain-major as R's svyby."""
    if D is None:
        return Y, names, None
    cols = [Y * D[:, [j]] for j in range(D.shape[1])]
    return (
        np.hstack(cols),
        [nm for _ in levels for nm in names],
        [lv for lv in levels for _ in names],
    )


# ---------------------------------------------------------------------------- statistics
def evaluate(statistic: str, Y: np.ndarray, den: np.ndarray | None, W: np.ndarray) -> np.ndarray:
    """Estimates for weight columns ``W`` (``(n, r)``): shape ``(r, k)``."""
    num = W.T @ Y
    if statistic == "total":
        return num
    if statistic == "mean":
        return num / W.sum(axis=0)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / (W.T @ den)


def _scores(statistic: str, Y: np.ndarray, den: np.ndarray | None, w: np.ndarray):
    """Point estimates and influence values ``a`` (the scores are ``w a``)."""
    est = evaluate(statistic, Y, den, w[:, None])[0]
    if statistic == "total":
        return est, Y
    if statistic == "mean":
        return est, (Y - est) / w.sum()
    return est, (Y - est * den) / (w @ den)


def _resolve(design: Any, calibration: Any, problem: Any):
    """(design, calibration or None, replicate design or None)."""
    from .replicate_design import ReplicateDesign

    if isinstance(design, ReplicateDesign):
        if calibration is not None:
            raise InvalidProblemError(
                "a ReplicateDesign carries its own (re-)calibration: give no `calibration`; "
                "re-calibrate replicates with reps.calibrate(problem, method, ...)."
            )
        return None, None, design
    if isinstance(design, Calibration):
        if calibration is not None:
            raise InvalidProblemError("give either a Calibration or `calibration=`, not both.")
        return design.design, design, None
    if not isinstance(design, Design):
        raise InvalidProblemError(
            f"`design` must be a calibopt.variance Design, Calibration or ReplicateDesign, got "
            f"{type(design).__name__}."
        )
    if calibration is None or isinstance(calibration, Calibration):
        if calibration is not None and calibration.design is not design:
            raise DesignError("`calibration` was made for another design.")
        return design, calibration, None
    if isinstance(calibration, CalibrationResult):
        if problem is None:
            raise InvalidProblemError(
                "`calibration` is a CalibrationResult: also give `problem=` (the calibrated "
                "problem, whose X holds the calibration variables), or pass "
                "design.calibrate(problem, method) instead."
            )
        return design, Calibration(design, problem, calibration), None
    raise InvalidProblemError(
        f"`calibration` must be a Calibration or a CalibrationResult, got "
        f"{type(calibration).__name__}."
    )


def _drop_missing(Y: np.ndarray, Den: np.ndarray | None) -> tuple[np.ndarray, Any, np.ndarray]:
    """R's ``na.rm``: rows where any variable is missing leave the estimate as rows outside a
    domain do (their values count as 0), the design stays whole. Returns Y, Den and the
    indicator of the rows kept."""
    known = ~np.isnan(Y).any(axis=1)
    if Den is not None:
        known &= ~np.isnan(Den).any(axis=1)
        Den = np.where(known[:, None], Den, 0.0)
    return np.where(known[:, None], Y, 0.0), Den, known.astype(np.float64)


def _estimate(statistic, y, den, design, calibration, problem, by, residuals, na_rm) -> Estimate:
    base, cal, reps = _resolve(design, calibration, problem)
    source = reps if reps is not None else base
    n = source.n
    Y, names = variables(y, source, n, na_rm)
    Den = None
    if statistic == "ratio":
        Den, dnames = variables(den, source, n, na_rm)
        if Den.shape[1] not in (1, Y.shape[1]):
            raise InvalidProblemError(
                f"ratio: {Den.shape[1]} denominators for {Y.shape[1]} numerators; give one "
                f"denominator or one per numerator."
            )
        Den = np.broadcast_to(Den, Y.shape).copy()
        dnames = dnames * Y.shape[1] if len(dnames) == 1 else dnames
        names = [f"{a}/{b}" for a, b in zip(names, dnames)]
    known = None
    if na_rm:
        Y, Den, known = _drop_missing(Y, Den)
    D, levels, _ = _domains(by, source, n) if by is not None else (None, None, None)
    if statistic == "mean" and (D is not None or known is not None):
        # a mean over a domain (or over the rows where y is known) is a ratio
        inside = (np.ones((n, 1)) if D is None else D) * (1.0 if known is None else known[:, None])
        statistic_eff, Den = "ratio", np.repeat(inside, Y.shape[1], axis=1)
        Y, names, doms = _expand(Y, names, D, levels)
    else:
        statistic_eff = statistic
        if D is not None and Den is not None:
            Den = _expand(Den, names, D, levels)[0]
        Y, names, doms = _expand(Y, names, D, levels)
    if reps is not None:
        return reps.estimate_statistic(statistic_eff, Y, Den, names, doms, label=statistic)
    w = cal.weights if cal is not None else base.weights
    est, A = _scores(statistic_eff, Y, Den, w)
    info: dict[str, Any] = {}
    if cal is not None:
        X, q = cal.regression(residuals)
        A = residualise(A, X, q)
        info["residuals"] = residuals
    cov = design_covariance(base, w[:, None] * A)
    return Estimate(statistic, names, doms, est, cov, "linearisation", info)


def total(
    y: Any,
    design: Any,
    calibration: Any = None,
    *,
    problem: Any = None,
    by: Any = None,
    residuals: str = "design",
    na_rm: bool = False,
) -> Estimate:
    """Estimated totals of ``y`` with standard errors (R's ``svytotal`` / ``svyby``).

    Parameters
    ----------
    y
        A column name of the design's data, a list of names, an array ``(n,)`` or ``(n, k)``,
        a Series or a DataFrame; a non-numeric column gives one total per category.
    design
        A :class:`Design` (Horvitz-Thompson totals, or calibrated with ``calibration``), a
        :class:`Calibration` (``design.calibrate(...)``) or a :class:`ReplicateDesign`.
    calibration
        A :class:`Calibration`, or a :class:`~calibopt.CalibrationResult` with ``problem=``.
    problem
        The calibrated problem, when ``calibration`` is a bare result.
    by
        Domains (column name or labels): one estimate per domain and variable.
    residuals
        ``"design"`` (R survey's linearisation) or ``"derivative"`` (exact at the solution;
        see :mod:`calibopt.variance.calibration`).
    na_rm
        Rows where a variable is missing (NaN, NA) are left out as rows outside a domain are,
        the design kept whole (R's ``na.rm=TRUE``); without it, missing values raise.

    Returns
    -------
    Estimate
    """
    return _estimate("total", y, None, design, calibration, problem, by, residuals, na_rm)


def mean(
    y: Any,
    design: Any,
    calibration: Any = None,
    *,
    problem: Any = None,
    by: Any = None,
    residuals: str = "design",
    na_rm: bool = False,
) -> Estimate:
    """Estimated means of ``y`` (``sum w y / sum w``) with standard errors (R's ``svymean``);
    parameters as :func:`total`."""
    return _estimate("mean", y, None, design, calibration, problem, by, residuals, na_rm)


def ratio(
    numerator: Any,
    denominator: Any,
    design: Any,
    calibration: Any = None,
    *,
    problem: Any = None,
    by: Any = None,
    residuals: str = "design",
    na_rm: bool = False,
) -> Estimate:
    """Estimated ratios of totals ``sum w y / sum w x`` with standard errors (R's
    ``svyratio``): one denominator for every numerator, or one per numerator; other
    parameters as :func:`total`."""
    return _estimate(
        "ratio", numerator, denominator, design, calibration, problem, by, residuals, na_rm
    )
