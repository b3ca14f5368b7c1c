"""The misfit LP over many units, solved by sifting (column generation on the weights).

See :class:`SiftedMisfit`; the program is :mod:`calibopt.solvers.misfit`'s.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .misfit import (
    MisfitInputs,
    MisfitSolution,
    highs_misfit,
    misfit_model,
    scaled_matrix,
    solution_misses,
    solve_misfit,
)

__all__ = ["SIFT_MIN_UNITS", "SiftedMisfit"]


SIFT_MIN_UNITS = 50_000
"""From this many units (and more than 20 per target) the misfit LP is solved by sifting."""


RETRIES: tuple[dict[str, Any], ...] = (
    {"simplex_strategy": 1},
    {"solver": "ipm", "run_crossover": "on"},
)
"""HiGHS settings of the cold re-solves tried, in order, when a solve ends without an optimum
(e.g. status "Unknown" in a late lexicographic pass of the 80,000-unit synthetic country)."""


class SiftedMisfit:
    """The misfit LP over many units, solved by sifting (column generation on the weights).

    Only a working set of weight columns is in the HiGHS model; every other weight is parked
    at a finite bound (its contribution moved into the band rows). After each solve, the
    reduced cost ``-A_i' y`` of every parked weight is priced from the band-row duals ``y``
    (one sparse product); the most improving ones join the working set and the model is
    re-solved from its basis, until none improves. The final basis is optimal for the whole
    LP, so its dual solution is a basic one (a vertex), as without sifting.

    ``system`` is the data of :func:`misfit_inputs`; the other parameters are those of
    :func:`misfit_model`; ``sift=None`` sifts when there are at least :data:`SIFT_MIN_UNITS`
    units and more than 20 per target.
    """

    def __init__(
        self,
        system: MisfitInputs,
        *,
        objective: str = "max",
        weights: np.ndarray | None = None,
        hard: np.ndarray | None = None,
        sift: bool | None = None,
        seed: int = 0,
    ) -> None:
        m, n = system.X.shape
        self.m, self.n = m, n
        self.c = np.asarray(system.col_scale, dtype=np.float64)
        self.s = np.asarray(system.scale, dtype=np.float64)
        self.A = scaled_matrix(system.X, self.s, self.c)
        self.AT = self.A.T.tocsr()
        self.lo = np.asarray(system.band_lo, dtype=np.float64) / self.s
        self.hi = np.asarray(system.band_hi, dtype=np.float64) / self.s
        self.xlo = np.asarray(system.wlo, dtype=np.float64) / self.c
        self.xhi = np.asarray(system.whi, dtype=np.float64) / self.c
        self.objective = objective
        self.k, self.hard = weights, hard
        self.caps = np.full(m, np.inf)
        self.row_on = np.ones(m, bool)
        # a parked weight sits at its lower bound if finite, else its upper; free ones never park
        self.park = np.where(
            np.isfinite(self.xlo), self.xlo, np.where(np.isfinite(self.xhi), self.xhi, np.nan)
        )
        free = np.isnan(self.park)
        if sift is None:
            sift = n >= SIFT_MIN_UNITS and n > 20 * m
        if sift:
            rng = np.random.default_rng(seed)
            size = min(n, 4 * m + 500)
            start = np.zeros(n, bool)
            start[rng.choice(n, size=size, replace=False)] = True
            # the largest entry of each row, so that every row can move
            big = np.abs(self.AT).argmax(axis=0)
            start[np.asarray(big).ravel()] = True
            start |= free
        else:
            start = np.ones(n, bool)
        self.working = np.flatnonzero(start)
        self.in_set = start
        self.offset = self.A @ np.where(start, 0.0, np.nan_to_num(self.park))
        self.model = misfit_model(
            self.A[:, self.working],
            self.lo - self.offset,
            self.hi - self.offset,
            self.xlo[self.working],
            self.xhi[self.working],
            np.ones(m),
            objective=objective,
            weights=weights,
            hard=hard,
        )
        self.h = highs_misfit(self.model)
        k0 = self.working.size
        self.n_extra = self.model.lp.n_cols - k0
        self.hcol = np.arange(k0)  # HiGHS column of each working weight
        self.extra = np.arange(k0, k0 + self.n_extra)
        self.rounds = 0
        self.priced = 0

    # ------------------------------------------------------------------ rows
    def _row_bounds(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        on = self.row_on[rows]
        lo = np.where(on, self.lo[rows] - self.offset[rows], -np.inf)
        hi = np.where(on, self.hi[rows] - self.offset[rows], np.inf)
        return lo, hi

    def free_rows(self, rows: np.ndarray) -> None:
        """Drop targets: their band rows become free."""
        rows = np.asarray(rows, dtype=np.int32)
        self.row_on[rows] = False
        lo, hi = self._row_bounds(rows)
        self.h.changeRowsBounds(rows.size, rows, lo, hi)

    def cap_targets(self, rows: np.ndarray, caps: np.ndarray) -> None:
        """``objective="max"``: hold targets' misses within ``caps`` and take them out of ``t``
        (their link rows become free). A relaxation of the current solution when the caps
        are at least its misses, so the next solve starts from the current basis."""
        if self.objective != "max":
            raise ValueError("caps apply to the max objective only")
        rows = np.asarray(rows, dtype=np.int64)
        self.caps[rows] = caps
        cols = self.extra[rows].astype(np.int32)
        c = np.asarray(caps, dtype=np.float64) * np.ones(rows.size)
        self.h.changeColsBounds(cols.size, cols, -c, c)
        links = np.concatenate([rows + self.m, rows + 2 * self.m]).astype(np.int32)
        inf = np.full(links.size, np.inf)
        self.h.changeRowsBounds(links.size, links, -inf, inf)

    def weights(self, x: np.ndarray) -> np.ndarray:
        """Weights ``w = c * x`` from a solution of :meth:`solve`."""
        return x[: self.n] * self.c

    def misses(self, x: np.ndarray) -> np.ndarray:
        """Per target, the relative miss of a solution of :meth:`solve` (signed)."""
        return solution_misses(x, self.n, self.m, self.objective)

    # ------------------------------------------------------------------ solving
    def _rebuild(self, **options: Any) -> None:
        """A fresh HiGHS model of the current working set (freed rows stay free)."""
        lo, hi = self._row_bounds(np.arange(self.m))
        self.model = misfit_model(
            self.A[:, self.working],
            lo,
            hi,
            self.xlo[self.working],
            self.xhi[self.working],
            np.ones(self.m),
            objective=self.objective,
            weights=self.k,
            hard=self.hard,
            caps=self.caps,
        )
        self.h = highs_misfit(self.model, **options)
        k0 = self.working.size
        self.hcol = np.arange(k0)
        self.extra = np.arange(k0, k0 + self.n_extra)

    def _add(self, cols: np.ndarray) -> None:
        sub = self.A[:, cols]
        self.h.addCols(
            cols.size,
            np.zeros(cols.size),
            self.xlo[cols],
            self.xhi[cols],
            sub.nnz,
            sub.indptr[:-1].astype(np.int32),
            sub.indices.astype(np.int32),
            sub.data,
        )
        self.in_set[cols] = True
        first = self.hcol.size + self.n_extra
        self.hcol = np.concatenate([self.hcol, np.arange(first, first + cols.size)])
        self.working = np.concatenate([self.working, cols])
        contrib = sub @ self.park[cols]
        rows = np.flatnonzero(contrib)
        self.offset[rows] -= contrib[rows]
        lo, hi = self._row_bounds(rows)
        self.h.changeRowsBounds(rows.size, rows.astype(np.int32), lo, hi)

    def reduced_costs(self, y: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """``-A_i' y`` for some weight columns (all by default)."""
        if cols is None:
            return -(self.AT @ y)
        return -(self.AT[cols] @ y)

    def solve(self, time_limit: float | None = None) -> MisfitSolution:
        """Solve to optimality over every weight (sifting rounds as needed).

        The solution's ``x`` holds every weight (scaled), then the model's other columns;
        ``row_dual`` the band rows then the other rows; ``col_dual`` is None (use
        :meth:`reduced_costs`).
        """
        t0 = time.perf_counter()
        deadline = t0 + (np.inf if time_limit is None else time_limit)
        iterations = 0
        retries = list(RETRIES)
        while True:
            sol = solve_misfit(
                self.h, time_limit=None if time_limit is None else deadline - time.perf_counter()
            )
            iterations += sol.iterations
            self.rounds += 1
            if not sol.optimal and time.perf_counter() < deadline and retries:
                # HiGHS can misreport a warm start or stall numerically on a capped model:
                # rebuild cold, with the dual simplex, then the interior point + crossover
                self._rebuild(**retries.pop(0))
                continue
            if not sol.optimal:
                return MisfitSolution(
                    False,
                    sol.status,
                    float("nan"),
                    None,
                    None,
                    None,
                    time.perf_counter() - t0,
                    iterations,
                )
            if self.in_set.all():
                break
            y = sol.row_dual[: self.m]
            out = np.flatnonzero(~self.in_set)
            z = self.reduced_costs(y, out)
            self.priced += 1
            at_lower = self.park[out] == self.xlo[out]
            gain = np.where(at_lower, -z, z)
            tol = 1e-9 * max(1.0, float(np.max(np.abs(y), initial=0.0)))
            improving = np.flatnonzero(gain > tol)
            if improving.size == 0:
                break
            k = min(improving.size, max(2 * self.m, self.working.size // 2))
            best = improving[np.argsort(-gain[improving], kind="stable")[:k]]
            self._add(np.sort(out[best]))
        x = np.where(self.in_set, 0.0, self.park)
        x[self.working] = sol.x[self.hcol]
        full = np.concatenate([x, sol.x[self.extra]])
        return MisfitSolution(
            True,
            sol.status,
            sol.value,
            full,
            sol.row_dual,
            None,
            time.perf_counter() - t0,
            iterations,
        )
