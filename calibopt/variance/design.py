"""A survey design: weights, strata, clusters per stage and finite population corrections.

:class:`Design` is R ``survey``'s ``svydesign(id=~a+b, strata=~s, weights=~w, fpc=~f1+f2)``:

* ``psu`` names the sampling unit of each stage (a list for multi-stage designs, outermost
  first); units of a later stage are nested in the units of the stage before (their labels may
  repeat across clusters, as in R);
* ``strata`` names the first stage's strata (or one per stage); a later stage without its own
  strata is stratified by the cluster of the stage before, as R does;
* ``fpc`` gives, per stage, the population size (numbers >= 1) or the sampling fraction
  (numbers <= 1) of the stratum; without it the design is taken as sampled with replacement and
  only the first stage contributes to the variance (R's ultimate-cluster approximation);
* ``lonely_psu`` says what a stratum with a single PSU does: R's ``survey.lonely.psu``.

Rows of the design are the units of the calibration problem (its columns), in the same order.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from ..validate import choice

__all__ = ["LONELY_PSU", "Design", "DesignError"]

LONELY_PSU = ("fail", "remove", "certainty", "adjust", "average")
"""R's ``survey.lonely.psu`` choices for a stratum holding a single PSU:

* ``"fail"``: raise (R's default);
* ``"remove"`` and ``"certainty"``: the stratum contributes nothing to the variance;
* ``"adjust"``: its PSU total is centred at zero instead of the stratum mean (conservative);
* ``"average"``: the stratum gets the average variance of the other strata.
"""

_CERTAIN = 1e-7  # R: a stratum with sampling fraction within 1e-7 of 1 has no variance


class DesignError(InvalidProblemError):
    """The survey design is malformed (missing columns, bad nesting, bad fpc, ...)."""


def _codes(*columns: np.ndarray) -> np.ndarray:
    """Integer codes 0..k-1 of the distinct combinations of ``columns`` (order of appearance)."""
    code = pd.factorize(columns[0], use_na_sentinel=False)[0].astype(np.int64)
    for col in columns[1:]:
        other = pd.factorize(col, use_na_sentinel=False)[0].astype(np.int64)
        code = pd.factorize(code * (other.max() + 1) + other)[0].astype(np.int64)
    return code


def _count_per_group(groups: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Per row: how many distinct ``members`` share the row's ``groups`` code (both codes)."""
    pairs = pd.unique(groups * (int(members.max()) + 1) + members)
    counts = np.bincount(pairs // (int(members.max()) + 1), minlength=int(groups.max()) + 1)
    return counts[groups]


def first_of_group(codes: np.ndarray) -> np.ndarray:
    """For each code 0..k-1, the position of one row holding it (which one is unspecified:
    use it for attributes that are constant within the group)."""
    first = np.empty(int(codes.max()) + 1, dtype=np.int64)
    first[codes] = np.arange(codes.shape[0])
    return first


class Design:
    """A (multi-stage, stratified, clustered) survey design, as R's ``svydesign``.

    Parameters
    ----------
    data
        A DataFrame with one row per unit (the columns of the calibration problem, same order);
        columns named by the other arguments are looked up in it, as are the variables of
        :func:`calibopt.variance.total` and friends. May be None when every argument is an array.
    weights
        Design weights ``d`` (column name or array); default: the inverse of the inclusion
        probabilities implied by ``fpc`` (R does the same), or 1 with a warning.
    strata
        Stratum of each unit at the first stage (column name or array), or a list, one per stage.
    psu
        Sampling unit of each stage: a column name or array (one stage) or a list (outermost
        first, R's ``id=~a+b``); None: every row is its own PSU (R's ``id=~1``).
    fpc
        Per stage (same length as ``psu``): population sizes (all >= 1) or sampling fractions
        (all <= 1) of the stratum; None for sampling with replacement.
    nest
        PSU labels restart within each stratum (R's ``nest=TRUE``); otherwise a PSU label found
        in two strata is an error.
    lonely_psu
        What a stratum with a single PSU does (see :data:`LONELY_PSU`).

    Raises
    ------
    DesignError
        Missing columns, lengths that do not match, NaN in design columns, PSUs not nested in
        strata, fpc neither all sizes nor all fractions, more units sampled than the population
        holds, an fpc varying within a stratum, a lonely PSU with ``lonely_psu="fail"``.
    """

    def __init__(
        self,
        data: Any = None,
        weights: Any = None,
        strata: Any = None,
        psu: Any = None,
        fpc: Any = None,
        *,
        nest: bool = False,
        lonely_psu: str = "fail",
    ) -> None:
        if data is not None and not isinstance(data, pd.DataFrame):
            try:
                data = pd.DataFrame(data)
            except Exception as exc:
                raise DesignError(
                    f"`data` must be a DataFrame (or something pandas turns into one), got "
                    f"{type(data).__name__}: {exc}"
                ) from None
        self.data = data
        self.lonely_psu = choice("lonely_psu", lonely_psu, LONELY_PSU)
        self.nest = bool(nest)
        self.n = self._infer_length(weights, strata, psu, fpc)
        stages = self._stage_list(psu, "psu")
        if not stages:
            stages = [np.arange(self.n)]
        self.n_stages = len(stages)
        strata_cols = self._stage_list(strata, "strata")
        if len(strata_cols) > self.n_stages:
            raise DesignError(
                f"`strata` has {len(strata_cols)} stages but `psu` has {self.n_stages}; give at "
                f"most one strata column per stage."
            )
        self.has_strata = bool(strata_cols)
        fpcs = self._stage_list(fpc, "fpc", numeric=True)
        if fpcs and len(fpcs) != self.n_stages:
            raise DesignError(
                f"`fpc` has {len(fpcs)} stage(s) but `psu` has {self.n_stages}: give one fpc per "
                f"stage (R's svydesign(id=~a+b, fpc=~f1+f2)), or none for sampling with "
                f"replacement."
            )
        self._build_codes(stages, strata_cols)
        self.popsize = self._popsizes(fpcs) if fpcs else None
        self.weights = self._weights(weights)
        self._check_lonely()

    # ------------------------------------------------------------------ inputs
    def _column(self, value: Any, name: str, numeric: bool = False) -> np.ndarray:
        """A design column by name (in ``data``) or as an array of length ``n``."""
        if isinstance(value, str):
            if self.data is None or value not in self.data.columns:
                have = [] if self.data is None else list(self.data.columns)
                raise DesignError(
                    f"`{name}`: column {value!r} is not in `data`"
                    + (f" (columns: {have[:20]})" if have else " (no data given)")
                    + "."
                )
            series = self.data[value]
        else:
            series = value
            if isinstance(value, pd.Series) and self.data is not None:
                if not value.index.equals(self.data.index):
                    raise DesignError(
                        f"`{name}` is a Series whose index does not match `data`'s rows; "
                        f"align it (series.reindex(data.index)) or pass a column name."
                    )
        arr = np.asarray(series)
        if arr.ndim != 1 or arr.shape[0] != self.n:
            raise DesignError(
                f"`{name}` has shape {arr.shape} but the design has {self.n} rows "
                f"(one value per unit)."
            )
        if numeric:
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise DesignError(f"`{name}` must be numeric.") from None
            bad = np.flatnonzero(~np.isfinite(arr) & ~np.isposinf(arr))
        else:
            bad = np.flatnonzero(pd.isna(arr))
        if bad.size:
            raise DesignError(
                f"`{name}` has missing or non-finite value(s) at row(s) {bad[:5].tolist()}."
            )
        return arr

    def _stage_list(self, value: Any, name: str, numeric: bool = False) -> list[np.ndarray]:
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return [self._column(v, f"{name}[{i}]", numeric) for i, v in enumerate(value)]
        return [self._column(value, name, numeric)]

    def _infer_length(self, *values: Any) -> int:
        if self.data is not None:
            return len(self.data)
        for value in values:
            items = value if isinstance(value, list | tuple) else [value]
            for item in items:
                if isinstance(item, str):
                    raise DesignError(f"column name {item!r} given but no `data`.")
                if item is not None and np.ndim(item) == 1:
                    return int(np.shape(item)[0])
        raise DesignError("a design needs `data` or at least one array (weights, psu, ...).")

    # ------------------------------------------------------------------ structure
    def _build_codes(self, stages: list[np.ndarray], strata_cols: list[np.ndarray]) -> None:
        """Cluster and stratum codes per stage, nested as R's svydesign nests them."""
        n_s = len(strata_cols)
        first_strata = _codes(strata_cols[0]) if strata_cols else np.zeros(self.n, np.int64)
        clusters: list[np.ndarray] = []
        for s in range(len(stages)):
            parts = [*stages[: s + 1]]
            if self.nest and strata_cols:
                parts = [*strata_cols[: min(s + 1, n_s)], *parts]
            clusters.append(_codes(*parts))
        if clusters[0].max() == 0 and not (self.nest and strata_cols):
            raise DesignError(
                "the design has a single primary sampling unit, so no variance can be estimated "
                "(R: 'Design has only one primary sampling unit'); check the `psu` column."
            )
        if not self.nest and strata_cols:
            # R's check.strata: a first-stage PSU must lie in one stratum
            per_psu = _count_per_group(clusters[0], first_strata)
            bad = np.flatnonzero(per_psu > 1)
            if bad.size:
                i = int(bad[0])
                raise DesignError(
                    f"PSUs are not nested in strata: PSU {stages[0][i]!r} (row {i}) appears in "
                    f"{int(per_psu[i])} strata. If PSU labels restart within each stratum, pass "
                    f"nest=True; otherwise fix the PSU or stratum column."
                )
        strata = [first_strata]
        for s in range(1, self.n_stages):
            own = _codes(strata_cols[min(s, n_s - 1)]) if n_s else np.zeros(self.n, np.int64)
            strata.append(_codes(own, clusters[s - 1]))
        self.clusters = clusters
        self.strata = strata
        self.sampsize = [
            _count_per_group(h, c).astype(np.float64) for h, c in zip(strata, clusters)
        ]
        self._psu_labels = stages[0]
        self._strata_labels = strata_cols[0] if strata_cols else None

    def _popsizes(self, fpcs: list[np.ndarray]) -> list[np.ndarray]:
        """Population sizes per stage from sizes or fractions (R's ``as.fpc``)."""
        values = np.stack(fpcs, axis=1)
        is_size = bool(np.any(values > 1))
        if is_size != bool(np.all(values >= 1)):
            big = np.argwhere(values > 1)
            small = np.argwhere(values < 1)
            where = ""
            if big.size and small.size:
                where = (
                    f" (row {big[0][0]} stage {big[0][1] + 1}: {values[tuple(big[0])]:g}; row "
                    f"{small[0][0]} stage {small[0][1] + 1}: {values[tuple(small[0])]:g})"
                )
            raise DesignError(
                "`fpc` must be all population sizes (>= 1) or all sampling fractions (<= 1)"
                + where
                + (
                    "; every fpc equals 1, which is ambiguous (a population of 1 or a full "
                    "sample): give sizes or fractions explicitly."
                    if not where
                    else "."
                )
            )
        if np.any(values < 0):
            raise DesignError("`fpc` must not be negative.")
        out = []
        for s in range(self.n_stages):
            n_s = self.sampsize[s]
            with np.errstate(divide="ignore"):
                pop = (
                    values[:, s]
                    if is_size
                    else np.where(values[:, s] > 0, n_s / values[:, s], np.inf)
                )
            bad = np.flatnonzero(pop < n_s * (1 - 1e-12))
            if bad.size:
                i = int(bad[0])
                raise DesignError(
                    f"`fpc` implies more than 100% sampling at stage {s + 1}: row {i} has "
                    f"population size {pop[i]:g} but {n_s[i]:g} sampled units in its stratum."
                )
            h = self.strata[s]
            varies = pop != pop[first_of_group(h)][h]
            if varies.any():
                row = int(np.flatnonzero(varies)[0])
                raise DesignError(
                    f"`fpc` varies within a stratum at stage {s + 1} (the stratum of row "
                    f"{row}); the fpc is a property of the stratum: give one value per stratum."
                )
            out.append(pop)
        return out

    def _weights(self, weights: Any) -> np.ndarray:
        if weights is None:
            if self.popsize is None:
                warnings.warn(
                    "no weights or fpc given: assuming equal probability (weights 1), as R does",
                    stacklevel=3,
                )
                return np.ones(self.n)
            prob = np.ones(self.n)
            for n_s, pop in zip(self.sampsize, self.popsize):
                with np.errstate(divide="ignore"):
                    prob *= np.where(np.isinf(pop), 1.0, n_s / pop)
            return 1.0 / prob
        w = self._column(weights, "weights", numeric=True)
        if not np.all(np.isfinite(w)):
            raise DesignError("`weights` must be finite.")
        bad = np.flatnonzero(w < 0)
        if bad.size:
            raise DesignError(
                f"`weights` must be >= 0; {bad.size} negative value(s), first at row {bad[0]}."
            )
        return w

    def fraction(self, stage: int) -> np.ndarray:
        """``1 - n/N`` per row at ``stage`` (0-based): 1 without fpc (with replacement)."""
        if self.popsize is None:
            return np.ones(self.n)
        pop = self.popsize[stage]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.isinf(pop), 1.0, (pop - self.sampsize[stage]) / pop)

    def variance_stages(self) -> int:
        """Stages that contribute to the variance: all with fpc, else the first (R)."""
        return self.n_stages if self.popsize is not None else 1

    def _check_lonely(self) -> None:
        if self.lonely_psu != "fail":
            return
        for s in range(self.variance_stages()):
            lonely = (self.sampsize[s] == 1) & (self.fraction(s) >= _CERTAIN)
            if lonely.any():
                i = int(np.flatnonzero(lonely)[0])
                label = (
                    f"stratum {self._strata_labels[i]!r}"
                    if s == 0 and self._strata_labels is not None
                    else f"the stratum of row {i}"
                )
                raise DesignError(
                    f"{label} has only one PSU at stage {s + 1}, so its variance cannot be "
                    f"estimated. Choose lonely_psu= 'remove' / 'certainty' (no contribution), "
                    f"'adjust' (centre at zero) or 'average' (mean of the other strata), as R's "
                    f"options(survey.lonely.psu=...); or merge the stratum with a neighbour."
                )

    # ------------------------------------------------------------------ views
    @property
    def n_psu(self) -> int:
        """Number of first-stage sampling units."""
        return int(self.clusters[0].max()) + 1

    def column(self, name: str) -> np.ndarray:
        """A column of ``data`` as an array (raises naming the column when it is missing)."""
        return self._column(name, name)

    def __repr__(self) -> str:
        n_strata = int(self.strata[0].max()) + 1
        fpc = "with fpc" if self.popsize is not None else "with replacement"
        return (
            f"Design({self.n} units, {self.n_psu} PSUs in {n_strata} strata, "
            f"{self.n_stages} stage(s), {fpc}, lonely_psu={self.lonely_psu!r})"
        )

    # the consumers: calibration and replicates (imported late: they import this module)
    def calibrate(
        self, problem: Any, method: Any = "raking", solver: str | None = None, **options: Any
    ) -> Any:
        """Calibrate ``problem`` (whose units are this design's rows) and keep what variance
        estimation needs; see :class:`calibopt.variance.Calibration`."""
        from .calibration import Calibration

        return Calibration.run(self, problem, method, solver, **options)

    def replicates(self, type: str = "bootstrap", **options: Any) -> Any:
        """Replicate weights of this design; see :func:`calibopt.variance.replicate_weights`."""
        from .replicates import replicate_weights

        return replicate_weights(self, type, **options)
