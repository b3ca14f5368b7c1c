"""The calibration problem: validated data for every method.

A calibration problem asks for weights ``w`` (one per unit) close to initial (design) weights
``d`` such that the weighted totals ``X @ w`` hit the target totals ``b``:

* ``X`` has one row per target and one column per unit (``scipy.sparse`` CSR internally);
* ``b`` holds the target totals;
* absolute bounds ``lower <= w <= upper`` and ratio bounds ``L <= w / d <= U`` may apply
  (R ``survey``'s ``bounds=c(L, U)`` are ratio bounds on ``g = w / d``);
* a relative tolerance (a fraction: 0.01 is 1%) turns target ``j`` into
  ``|X_j w - b_j| <= tol_j |b_j|``.

Validation happens here, once, at the boundary: every bad input raises
:class:`~calibopt.errors.InvalidProblemError` naming the argument and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .errors import InvalidProblemError
from .validate import (
    broadcast,
    check_finite_matrix,
    check_order,
    float_vector,
    is_pandas,
    labels,
    pair,
    sparse_matrix,
)

__all__ = ["CalibrationProblem", "use_csc_converter"]

ArrayLike = Any

_CSC_CONVERTER: list[Callable[[sp.spmatrix], sp.csc_matrix]] = []


def _per_unit(value: Any, name: str, n: int, default: float) -> np.ndarray:
    """A bound per unit: a scalar or None as a read-only view repeating it (no memory per
    unit: at millions of units, filling such vectors costs more than a Newton iteration),
    a vector validated and copied."""
    if value is None or (np.ndim(value) == 0 and not is_pandas(value)):
        return np.broadcast_to(broadcast(value, name, 1, default), (n,))
    return broadcast(value, name, n, default)


def use_csc_converter(convert: Callable[[sp.spmatrix], sp.csc_matrix]) -> None:
    """Let :attr:`CalibrationProblem.csc` convert with ``convert(matrix) -> csc_matrix``.

    The engines register their parallel transposition here when imported
    (:func:`calibopt.solvers.kernels.to_csc`); without one, SciPy's ``tocsc`` runs.
    """
    _CSC_CONVERTER[:] = [convert]


_DEFAULT_BOUNDS = (0.0, None)


class CalibrationProblem:
    """A validated calibration problem.

    Every parameter has one meaning for every method:

    * **Weight domain.** ``bounds`` defaults to ``(0, None)``: weights are non-negative for
      every method unless you allow negative weights explicitly with ``bounds=None`` (no
      bounds at all, as R ``survey``'s linear calibration) or a finite negative lower bound.
      Methods whose model cannot produce negative weights (``raking``, ``ipf``,
      ``hard-concrete``) keep ``w >= 0`` whatever the bounds.
    * **Sparse methods** (``l0-mip``, ``reweighted-l1``, ``cross-category``,
      ``hard-concrete``) drop units by setting their weight to exactly 0; the bounds apply to
      the units they keep (``w_i = 0`` or ``lower_i <= w_i <= upper_i``).
    * **Tolerance** is a fraction (0.01 = 1%), here and in the targets database's API.
    * **Target met** means ``|X_j w - b_j| <= tol_j |b_j| + 1e-8 s_j`` with ``s_j = |b_j|``
      (or the row's gross activity at the initial weights where ``b_j = 0``); a bound holds
      up to ``1e-8`` of its size. One function decides it for every method:
      :func:`calibopt.fit.check_weights`.

    Parameters
    ----------
    X
        Matrix of shape ``(n_targets, n_units)``: entry ``(j, i)`` is unit ``i``'s contribution
        to target ``j``. ``scipy.sparse`` (any format), dense array or numeric DataFrame.
        Kept sparse (CSR); never densified.
    targets
        Target totals ``b``, length ``n_targets``.
    initial_weights
        Initial (design) weights ``d >= 0``, length ``n_units``; default all ones. Distance
        methods keep ``w = 0`` for units with ``d = 0``.
    bounds
        Absolute weight bounds ``(lower, upper)``: scalars, arrays of length ``n_units`` or
        None for no bound on that side; default ``(0, None)`` (non-negative weights);
        ``bounds=None`` removes both bounds.
    ratio_bounds
        Bounds ``(L, U)`` on ``g = w / d`` (R ``survey``'s ``bounds``), scalars or arrays.
    tolerance
        Relative tolerance per target (scalar or array, >= 0, a fraction): target ``j`` is met
        when ``|X_j w - b_j| <= tolerance_j * |b_j|``. 0 means exact.
    target_names
        Unique names (strings or numbers), default ``"target_0"``, ``"target_1"``, ...
    groups
        Group label per target (e.g. ``"state/snap"``), used by loss normalisation and by
        the diagnostics. Default: each target its own group.
    unit_ids
        Optional identifiers of the units (length ``n_units``), carried into results
        (``result.weights_series()``); :func:`calibopt.problem_from_margins` sets the data's
        index.

    Attributes
    ----------
    X : scipy.sparse.csr_matrix
    targets, initial_weights, lower, upper, ratio_lower, ratio_upper, tolerance : ndarray
        (a scalar bound is stored as a read-only view repeating it)
    target_names : list of str
    groups : ndarray of object
    """

    def __init__(
        self,
        X: ArrayLike,
        targets: ArrayLike,
        initial_weights: ArrayLike | None = None,
        bounds: tuple[ArrayLike, ArrayLike] | None = _DEFAULT_BOUNDS,
        ratio_bounds: tuple[ArrayLike, ArrayLike] | None = None,
        tolerance: ArrayLike = 0.0,
        target_names: Sequence[str] | None = None,
        groups: Sequence[Any] | None = None,
        unit_ids: ArrayLike | None = None,
    ) -> None:
        self._matrix = sparse_matrix(X)
        self._csr: sp.csr_matrix | None = None
        self._csc: sp.csc_matrix | None = None
        m, n = self._matrix.shape
        if m == 0 or n == 0:
            raise InvalidProblemError(
                f"`X` is empty (shape {self._matrix.shape}); a problem needs at least one target "
                f"and one unit."
            )
        check_finite_matrix(self._matrix)
        if is_pandas(targets) and target_names is None:
            target_names = [str(i) for i in targets.index]
        self.targets = float_vector(targets, "targets")
        if self.targets.shape[0] != m:
            raise InvalidProblemError(
                f"`targets` has length {self.targets.shape[0]} but `X` has {m} rows "
                f"(one row per target); X must be shaped (n_targets, n_units) = "
                f"({self.targets.shape[0]}, n_units). Transpose X if it is (units x targets)."
            )
        self.target_names = self._names(target_names, m)
        bad = np.flatnonzero(~np.isfinite(self.targets))
        if bad.size:
            raise InvalidProblemError(f"`targets` has non-finite value(s) at {self._label(bad)}.")
        if initial_weights is None:
            self.initial_weights = np.ones(n)
        else:
            self.initial_weights = float_vector(initial_weights, "initial_weights")
            if self.initial_weights.shape[0] != n:
                raise InvalidProblemError(
                    f"`initial_weights` has length {self.initial_weights.shape[0]} but `X` has "
                    f"{n} columns (one per unit)."
                )
        d = self.initial_weights
        bad = np.flatnonzero(~np.isfinite(d))
        if bad.size:
            raise InvalidProblemError(
                f"`initial_weights` has non-finite value(s) at unit(s) {bad[:5].tolist()}."
            )
        bad = np.flatnonzero(d < 0)
        if bad.size:
            raise InvalidProblemError(
                f"`initial_weights` must be >= 0; {bad.size} negative value(s), first at "
                f"unit(s) {bad[:5].tolist()} (e.g. {d[bad[0]]:g})."
            )
        lo, hi = pair(bounds, "bounds")
        self.lower = _per_unit(lo, "bounds[0] (lower)", n, -np.inf)
        self.upper = _per_unit(hi, "bounds[1] (upper)", n, np.inf)
        check_order(self.lower, self.upper, "bounds")
        rlo, rhi = pair(ratio_bounds, "ratio_bounds")
        self.ratio_lower = _per_unit(rlo, "ratio_bounds[0] (L)", n, -np.inf)
        self.ratio_upper = _per_unit(rhi, "ratio_bounds[1] (U)", n, np.inf)
        check_order(self.ratio_lower, self.ratio_upper, "ratio_bounds")
        self.has_ratio_bounds = ratio_bounds is not None
        tol = broadcast(tolerance, "tolerance", m, 0.0)
        bad = np.flatnonzero(~(tol >= 0) | ~np.isfinite(tol))
        if bad.size:
            raise InvalidProblemError(
                f"`tolerance` must be finite and >= 0; bad value at {self._label(bad)}."
            )
        self.tolerance = tol
        if groups is None:
            self.groups = np.asarray(self.target_names, dtype=object)
        else:
            g = np.asarray(labels(groups, "groups", m), dtype=object)
            if g.shape != (m,):
                raise InvalidProblemError(
                    f"`groups` has length {g.shape[0] if g.ndim else 0} but there are {m} targets."
                )
            self.groups = g
        if unit_ids is not None:
            ids = np.asarray(unit_ids)
            if ids.shape != (n,):
                raise InvalidProblemError(
                    f"`unit_ids` has shape {ids.shape} but there are {n} units."
                )
            self.unit_ids = ids
        else:
            self.unit_ids = None

    # ------------------------------------------------------------------ validation helpers
    def _names(self, names: Sequence[str] | None, m: int) -> list[str]:
        if names is None:
            return [f"target_{j}" for j in range(m)]
        names = [str(x) for x in labels(names, "target_names", m)]
        if len(names) != m:
            raise InvalidProblemError(
                f"`target_names` has {len(names)} names but there are {m} targets."
            )
        seen: dict[str, int] = {}
        dups = []
        for j, nm in enumerate(names):
            if nm in seen:
                dups.append(nm)
            seen.setdefault(nm, j)
        if dups:
            raise InvalidProblemError(
                f"`target_names` must be unique; duplicated: {sorted(set(dups))[:5]}."
            )
        return names

    def _label(self, idx: np.ndarray) -> str:
        names = getattr(self, "target_names", None)
        if names is None:
            return f"target position(s) {np.asarray(idx)[:5].tolist()}"
        shown = [f"{names[j]!r} (row {j})" for j in np.asarray(idx)[:5]]
        more = f" and {len(idx) - 5} more" if len(idx) > 5 else ""
        return ", ".join(shown) + more

    # ------------------------------------------------------------------ derived quantities
    @property
    def X(self) -> sp.csr_matrix:
        """The matrix (targets x units) in CSR format (converted once from CSC input)."""
        if self._csr is None:
            M = self._matrix
            self._csr = M if M.format == "csr" else M.tocsr()
            if not self._csr.has_sorted_indices:
                self._csr = self._csr.copy()
                self._csr.sort_indices()
        return self._csr

    @property
    def csc(self) -> sp.csc_matrix:
        """The matrix in CSC format with sorted indices (cached): unit-wise kernels use it."""
        if self._csc is None:
            M = self._matrix
            if M.format == "csc":
                self._csc = M
            else:
                self._csc = _CSC_CONVERTER[0](M) if _CSC_CONVERTER else M.tocsc()
            if not self._csc.has_sorted_indices:
                self._csc = self._csc.copy()
                self._csc.sort_indices()
        return self._csc

    @property
    def n_targets(self) -> int:
        """Number of targets (rows of X)."""
        return self._matrix.shape[0]

    @property
    def n_units(self) -> int:
        """Number of units (columns of X)."""
        return self._matrix.shape[1]

    @property
    def nnz(self) -> int:
        """Stored non-zeros of X."""
        return self._matrix.nnz

    def weight_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Effective absolute bounds on ``w``: the intersection of ``bounds`` and ``ratio_bounds``.

        Returns
        -------
        lower, upper : ndarray
            ``max(lower, L d)`` and ``min(upper, U d)`` (ratio bounds scale with ``d``).
        """
        if not self.has_ratio_bounds:
            return self.lower.copy(), self.upper.copy()
        d = self.initial_weights
        zero = d <= 0
        with np.errstate(invalid="ignore"):
            lo = np.multiply(self.ratio_lower, d)
            hi = np.multiply(self.ratio_upper, d)
        lo[zero] = -np.inf
        hi[zero] = np.inf
        np.maximum(lo, self.lower, out=lo)
        np.minimum(hi, self.upper, out=hi)
        return lo, hi

    def g_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Effective bounds on ``g = w / d`` (units with ``d = 0`` get ``[1, 1]``).

        Returns
        -------
        lower, upper : ndarray
            ``max(L, lower / d)`` and ``min(U, upper / d)``.
        """
        d = self.initial_weights
        with np.errstate(divide="ignore", invalid="ignore"):
            glo = np.divide(self.lower, d)
            ghi = np.divide(self.upper, d)
        if self.has_ratio_bounds:
            np.maximum(glo, self.ratio_lower, out=glo)
            np.minimum(ghi, self.ratio_upper, out=ghi)
        zero = np.flatnonzero(d <= 0)
        glo[zero] = 1.0
        ghi[zero] = 1.0
        return glo, ghi

    def require_consistent_bounds(self, method: str, *, multiplicative: bool = False) -> None:
        """Raise when some unit's bounds leave it no admissible weight.

        Methods whose bounds apply to every unit (the distance methods, ``ipf``,
        ``gradient``) call this; sparse methods instead drop such units (weight 0). With
        ``multiplicative`` (weights ``w = d g``), a unit with ``d = 0`` keeps ``w = 0``, so a
        positive lower bound on it is refused too.
        """
        if multiplicative:
            stuck = np.flatnonzero((self.initial_weights == 0) & (self.lower > 0))
            if stuck.size:
                raise InvalidProblemError(
                    f"unit(s) {stuck[:5].tolist()} have initial weight 0 but a positive lower "
                    f"bound; method {method!r} keeps w = d g = 0 for them. Give them a positive "
                    f"initial weight, or lower bound 0."
                )
        lo, hi = self.weight_bounds()
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            i = int(bad[0])
            d = self.initial_weights[i]
            raise InvalidProblemError(
                f"unit {i} (and {bad.size - 1} more) has no admissible weight for method "
                f"{method!r}: absolute bounds [{self.lower[i]:g}, {self.upper[i]:g}] and ratio "
                f"bounds [{self.ratio_lower[i]:g}, {self.ratio_upper[i]:g}] x d = {d:g} do not "
                f"intersect. Widen one of them, or use a sparse method, which may drop the unit."
            )

    def target_bands(self) -> tuple[np.ndarray, np.ndarray]:
        """The interval each target's estimate must lie in: ``b -/+ tolerance |b|``."""
        half = self.tolerance * np.abs(self.targets)
        return self.targets - half, self.targets + half

    def estimates(self, weights: ArrayLike) -> np.ndarray:
        """Weighted totals ``X @ w`` for a weight vector."""
        w = float_vector(weights, "weights", self.n_units)
        return self._matrix @ w

    def subproblem(
        self,
        units: np.ndarray | None = None,
        targets: np.ndarray | None = None,
        target_values: ArrayLike | None = None,
    ) -> CalibrationProblem:
        """A problem restricted to some units and/or targets (bounds and tolerances follow).

        Parameters
        ----------
        units, targets
            Integer positions (or boolean masks) to keep; None keeps all.
        target_values
            Replacement totals for the kept targets (e.g. block shares of a national total).
        """
        cols = np.arange(self.n_units) if units is None else np.asarray(units)
        rows = np.arange(self.n_targets) if targets is None else np.asarray(targets)
        if cols.dtype == bool:
            cols = np.flatnonzero(cols)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        X = self.X[rows][:, cols]
        b = self.targets[rows] if target_values is None else target_values
        sub = CalibrationProblem(
            X,
            b,
            initial_weights=self.initial_weights[cols],
            bounds=(self.lower[cols], self.upper[cols]),
            ratio_bounds=(self.ratio_lower[cols], self.ratio_upper[cols])
            if self.has_ratio_bounds
            else None,
            tolerance=self.tolerance[rows],
            target_names=[self.target_names[j] for j in rows],
            groups=self.groups[rows],
            unit_ids=None if self.unit_ids is None else self.unit_ids[cols],
        )
        return sub

    def with_options(self, **changes: Any) -> CalibrationProblem:
        """A copy with some constructor arguments replaced (e.g. ``tolerance=0.01``)."""
        args = dict(
            X=self._matrix,
            targets=self.targets,
            initial_weights=self.initial_weights,
            bounds=(self.lower, self.upper),
            ratio_bounds=(self.ratio_lower, self.ratio_upper) if self.has_ratio_bounds else None,
            tolerance=self.tolerance,
            target_names=self.target_names,
            groups=self.groups,
            unit_ids=self.unit_ids,
        )
        unknown = set(changes) - set(args)
        if unknown:
            raise InvalidProblemError(
                f"with_options got unknown argument(s) {sorted(unknown)}; accepted: {sorted(args)}."
            )
        args.update(changes)
        return CalibrationProblem(**args)

    def __repr__(self) -> str:
        return (
            f"CalibrationProblem({self.n_targets} targets x {self.n_units} units, "
            f"nnz={self.nnz}, tolerance max={self.tolerance.max():g})"
        )
