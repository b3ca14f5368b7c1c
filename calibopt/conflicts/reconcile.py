"""``reconcile(targets, hierarchy)``: make a hierarchy of published totals add up, minimally.

Published statistics disagree: districts do not add up to their state, states to the nation.
Before calibrating, :func:`reconcile` finds the smallest reliability-weighted change of the
targets that makes every family add up exactly (a parent equals the sum of its children), a
least-squares projection in the style of forecast reconciliation (WLS / MinT with a diagonal
covariance); with ``bounds`` or ``max_change`` a QP. The engine is
:func:`calibopt.solvers.reconcile.reconcile_values`.

>>> from calibopt.conflicts import reconcile, target_hierarchy
>>> rec = reconcile(matrix.targets, target_hierarchy(matrix.targets), fixed=national_names)
>>> rec.changes                    # per target: original, reconciled, change, ...
>>> problem = rec.apply(matrix.to_problem())

Guarantee: the families add up to rounding level, and no other values do better in the
metric ``sum_j p_j (x_j - b_j)^2`` (``p`` = reliability). In particular, when the true totals
add up, the reconciled values are at least as close to them as the published ones in that
metric (a projection onto a set containing the truth never moves away from it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem
from ..solvers.reconcile import reconcile_values
from ..targets.hierarchy import hierarchy_rules
from ..validate import number

__all__ = ["Reconciliation", "reconcile"]

RELIABILITY = ("relative", "equal")


@dataclass
class Reconciliation:
    """What :func:`reconcile` returns.

    Attributes
    ----------
    values : pandas.Series
        Reconciled values by target name (every target given, in order).
    original : pandas.Series
    changes : pandas.DataFrame
        One row per target: ``name``, ``original``, ``reconciled``, ``change``,
        ``rel_change`` (change / |original|), ``reliability``, ``fixed``, ``at_bound``,
        ``in_hierarchy``.
    rules : list of (str, list of str)
        The families made to add up.
    residual : float
        Largest relative residual of the rules after reconciliation (rounding level).
    distance : float
        ``sum_j p_j (x_j - b_j)^2`` at the reconciled values (its minimum).
    method : str
    seconds : float
    """

    values: Any
    original: Any
    changes: Any
    rules: list[tuple[str, list[str]]]
    residual: float
    distance: float
    method: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def apply(self, problem: CalibrationProblem) -> CalibrationProblem:
        """``problem`` with its targets replaced by the reconciled values (by name)."""
        b = problem.targets.copy()
        pos = {n: j for j, n in enumerate(problem.target_names)}
        for name, value in self.values.items():
            j = pos.get(name)
            if j is not None:
                b[j] = value
        return problem.with_options(targets=b)

    def summary(self) -> str:
        """One paragraph."""
        ch = self.changes
        moved = ch[ch["change"] != 0]
        worst = moved.loc[moved["rel_change"].abs().idxmax()] if len(moved) else None
        text = (
            f"{len(self.rules)} families made to add up ({self.method}, {self.seconds:.3g} s; "
            f"largest rule residual {self.residual:.2g}); {len(moved)} of {len(ch)} targets "
            f"changed"
        )
        if worst is not None:
            text += (
                f", the most {worst['name']!r} by {100 * worst['rel_change']:+.3g}% "
                f"(median |change| {100 * moved['rel_change'].abs().median():.3g}%)"
            )
        return text + "."


def _as_series(targets: Any) -> Any:
    import pandas as pd

    if isinstance(targets, CalibrationProblem):
        return pd.Series(targets.targets, index=targets.target_names, dtype=float)
    if isinstance(targets, pd.DataFrame):
        if "value" not in targets:
            raise InvalidProblemError("a targets table needs a `value` column.")
        index = targets["name"] if "name" in targets else targets.index
        return pd.Series(targets["value"].to_numpy(float), index=index.astype(str))
    if isinstance(targets, pd.Series):
        return targets.astype(float).set_axis(targets.index.astype(str))
    if isinstance(targets, Mapping):
        return pd.Series({str(k): float(v) for k, v in targets.items()})
    raise InvalidProblemError(
        "`targets` must be a pandas Series (values by name), a table with `name` and `value` "
        f"columns, a mapping or a CalibrationProblem; got {type(targets).__name__}."
    )


def _per_target(value: Any, names: Any, what: str, default: float) -> np.ndarray:
    """A scalar, an array, a Series or a mapping (by name) as one number per target."""
    import pandas as pd

    k = len(names)
    if value is None:
        return np.full(k, default)
    if isinstance(value, Mapping):
        unknown = set(map(str, value)) - set(names)
        if unknown:
            raise InvalidProblemError(f"`{what}` names unknown targets {sorted(unknown)[:5]}.")
        return (
            pd.Series(value, dtype=float)
            .set_axis([str(i) for i in value])
            .reindex(names)
            .fillna(default)
            .to_numpy()
        )
    if isinstance(value, pd.Series):
        return (
            value.set_axis(value.index.astype(str)).reindex(names).fillna(default).to_numpy(float)
        )
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return np.full(k, float(arr))
    if arr.shape != (k,):
        raise InvalidProblemError(f"`{what}` has shape {arr.shape}; give one value per target.")
    return arr


def _reliability(reliability: Any, b: np.ndarray, names: Any) -> np.ndarray:
    if isinstance(reliability, str):
        if reliability not in RELIABILITY:
            raise InvalidProblemError(
                f"`reliability` must be one of {list(RELIABILITY)} or numbers, got {reliability!r}."
            )
        if reliability == "equal":
            return np.ones(b.size)
        scale = np.abs(b)
        return 1.0 / np.where(scale > 0, scale, max(float(scale.max(initial=0.0)), 1.0)) ** 2
    p = _per_target(reliability, names, "reliability", np.nan)
    if np.any(np.isnan(p)) or np.any(p <= 0):
        raise InvalidProblemError(
            "`reliability` must be > 0 for every target (inf keeps a target fixed)."
        )
    return p


def reconcile(
    targets: Any,
    hierarchy: Any,
    reliability: Any = "relative",
    *,
    fixed: Any = None,
    bounds: tuple[Any, Any] | None = None,
    max_change: float | None = None,
) -> Reconciliation:
    """The smallest weighted change of the targets that makes the hierarchy add up exactly.

    Parameters
    ----------
    targets
        Values by name: a pandas Series, a targets table with ``name`` and ``value``
        columns (e.g. ``CalibrationMatrix.targets``), a mapping, or a CalibrationProblem.
    hierarchy
        The families: ``{parent: [children]}`` (each parent = the sum of its children), a
        table with ``parent`` and ``child`` columns, or :func:`target_hierarchy`'s result.
        Category totals are families too (``{"persons": ["age<18", "age>=18"]}``).
    reliability
        Weight ``p_j`` of each target's squared change (its precision, 1 / variance; larger
        moves less; ``inf`` keeps it fixed): ``"relative"`` (default, ``1 / b_j^2``: every
        target's standard error proportional to its value, so relative changes are
        compared), ``"equal"``, or numbers (array, Series or mapping by name).
    fixed
        Names of targets to keep exactly (e.g. the national totals).
    bounds
        ``(lower, upper)`` on the reconciled values (scalars, arrays, Series or mappings;
        None for no bound), e.g. ``(0, None)``; solved as a QP.
    max_change
        Largest relative change of any target (a fraction): bounds ``b (1 -/+ max_change)``.

    Returns
    -------
    Reconciliation
    """
    import pandas as pd

    series = _as_series(targets)
    names = [str(n) for n in series.index]
    if len(set(names)) != len(names):
        raise InvalidProblemError("target names must be unique.")
    b = series.to_numpy(float)
    if not np.all(np.isfinite(b)):
        raise InvalidProblemError("`targets` has non-finite values.")
    pos = {n: j for j, n in enumerate(names)}
    rules = hierarchy_rules(hierarchy)
    rows, cols, vals = [], [], []
    for r, (parent, kids) in enumerate(rules):
        missing = [x for x in [parent, *kids] if x not in pos]
        if missing:
            raise InvalidProblemError(f"the hierarchy names unknown targets {missing[:5]}.")
        if not kids:
            raise InvalidProblemError(f"{parent!r} has no children in the hierarchy.")
        rows += [r] * (len(kids) + 1)
        cols += [pos[parent], *(pos[c] for c in kids)]
        vals += [1.0] + [-1.0] * len(kids)
    C = sp.csr_matrix((vals, (rows, cols)), shape=(len(rules), len(names)))
    p = _reliability(reliability, b, names)
    if fixed is not None:
        fixed_names = [fixed] if isinstance(fixed, str) else list(fixed)
        unknown = [f for f in fixed_names if str(f) not in pos]
        if unknown:
            raise InvalidProblemError(f"`fixed` names unknown targets {unknown[:5]}.")
        p[[pos[str(f)] for f in fixed_names]] = np.inf
    lo = np.full(b.size, -np.inf)
    hi = np.full(b.size, np.inf)
    if bounds is not None:
        lo = np.maximum(lo, _per_target(bounds[0], names, "bounds[0]", -np.inf))
        hi = np.minimum(hi, _per_target(bounds[1], names, "bounds[1]", np.inf))
    if max_change is not None:
        mc = number("max_change", max_change, low=0.0)
        lo = np.maximum(lo, b - mc * np.abs(b))
        hi = np.minimum(hi, b + mc * np.abs(b))
    out = reconcile_values(b, C, None, p, lower=lo, upper=hi)
    x = out.x
    in_rules = np.zeros(b.size, bool)
    in_rules[np.unique(C.indices)] = True
    change = x - b
    changes = pd.DataFrame(
        {
            "name": names,
            "original": b,
            "reconciled": x,
            "change": change,
            "rel_change": np.divide(change, np.abs(b), out=np.zeros_like(b), where=b != 0),
            "reliability": p,
            "fixed": ~np.isfinite(p),
            "at_bound": out.at_lower | out.at_upper,
            "in_hierarchy": in_rules,
        }
    )
    free = np.isfinite(p)
    distance = float(np.sum(p[free] * change[free] ** 2))
    return Reconciliation(
        values=pd.Series(x, index=names, name="value"),
        original=pd.Series(b, index=names, name="value"),
        changes=changes,
        rules=rules,
        residual=out.residual,
        distance=distance,
        method=out.method,
        seconds=out.seconds,
    )
