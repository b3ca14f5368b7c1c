"""Tolerance bands: a primal-dual interior point on the band slacks, finished exactly.

The program is ``min sum_i d_i G(g_i)`` subject to ``lo_j <= X_j w <= hi_j`` and
``glo <= g <= ghi`` (``w = d g``). Each band is written ``X_j w - e_j = m_j`` with ``m`` the
band's middle and ``|e_j| <= t_j`` its half-width (an exact target has ``t_j = 0`` and no
slack). The unknowns are the multipliers ``lambda`` of ``X w - e = m`` (the weights follow as in
:class:`~calibopt.solvers.newton.DualNewton`: ``g = clip(F(X' lambda))``), the slacks ``e``
with ``s_lo = t + e`` and ``s_hi = t - e`` and their multipliers ``z_lo, z_hi >= 0``:

    X w(lambda) - e = m,    lambda = z_lo - z_hi,    z_lo s_lo = z_hi s_hi = sigma mu.

Eliminating ``e`` and ``z`` from the Newton step leaves ``(X D F' X' + diag(1 / Theta))
dlambda = rhs`` with ``Theta = z_lo / s_lo + z_hi / s_hi``: the exact targets' Newton matrix
plus a diagonal, formed by the same fused pass over X. Mehrotra's predictor-corrector chooses
``sigma`` (one factorisation, two solves), the steps keep ``s`` and ``z`` positive (fraction to
the boundary) and are halved while the residual of ``X w - e = m`` does not fall (``F`` is
non-linear).

Linearly dependent bands need no care here: in nested geographies (a state's targets are the
sums of its districts') an active-set method pins a state and its districts at ends that
contradict one another, and its equality system has no solution; the interior point only
ever asks for a band's interior, and a target inside its band adds ``1 / Theta > 0`` to the
diagonal.

The finish is exact: once the complementarity is small, the targets at an end of their band
are identified, the linearly dependent ones among them left out (:func:`dependent_rows`;
consistent, since a point meeting them exists; their multipliers are folded into the kept
rows') and :meth:`DualNewton.solve` solves the equality problem on the rest from the
interior point's multipliers. Its answer is accepted when the KKT conditions hold: the other
targets inside their bands, the multipliers' signs those of their ends. Then multipliers are
exactly 0 inside the bands. When they do not, the guess is corrected (targets outside their
band join the ends they cross, wrong-signed ones leave) and Newton runs again, up to
:data:`FINISH_ROUNDS` rounds, as in a primal-dual active-set method; after that the interior
point goes on to a smaller gap and tries again. A problem without weights meeting every band
makes it stall, and the caller's LP certificate says why. Such a problem shows itself early:
its steps stay short (the residual and the complementarity barely fall while the barrier
parameter rises), so after :data:`PROBE_AFTER` slow iterations the caller's ``probe`` (the LP,
stopped at its first proof, within :data:`PROBE_SECONDS`) runs once and ends it there. A
feasible problem's steps usually lengthen at once and never call it; but very narrow bands
(0.01% on the small synthetic country, 0.1% on the 872,000-column one) keep them short too: a
few targets that X nearly ties to others ask their slacks to move 20x their band's width, and
the step stops at the band's edge. So before the probe, the exact solution at the bands'
middles is tried (:func:`_middles`, a few Newton iterations with the dependent targets left
out): weights that meet every band prove the problem feasible without the LP, and when the
interior point then stalls they are its fallback (``info["witness"]``; the caller returns them,
status ``within_tolerance``, when it has no other solver). A stall without a slow start tries
the middles at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InfeasibleError
from .active_set import newton_exact
from .feasibility import dependent_rows, inconsistent
from .kernels import row_absmax, submatrix
from .newton import STALL_WINDOW, DualNewton
from .newton_parts import NewtonOutcome

__all__ = ["newton_bands"]

TO_BOUNDARY = 0.995
"""Fraction of the step to the boundary of ``s, z >= 0`` taken (Mehrotra)."""
POLISH_GAPS = (1e-4, 1e-6, 1e-9, 1e-12)
"""Scaled complementarity at which the exact finish is tried (one try per level). At 1e-4 the
interior point has found most targets at an end (on the full-size country 3,860 of 3,918) and
the finish's later rounds add the rest; trying at 1e-3 found fewer (3,600) and its rounds cost
more Newton iterations than the interior point's steps they saved."""
START_SLACK = 0.5
"""The starting slacks lie within this fraction of the half-width from the band's middle.
Most estimates at ``lambda = 0`` lie outside their band (91% on the synthetic country);
slacks started nearer the middle leave the first steps room on both sides (0.9 took 9
iterations of short steps on the full-size country, 0.5 took 5)."""
GAP_TOL = 1e-12
"""Scaled complementarity accepted as optimal when the exact finish never held."""
FINISH_ROUNDS = 4
"""Rounds of the exact finish: the first from the interior point's guess of the targets at an
end, each later one from the guess corrected by the round before (see :func:`_polish`)."""
HALVINGS = 30
"""Step halvings before the interior point gives up (no decrease of the residual)."""
PROBE_AFTER = 4
"""Interior-point iterations after which slow progress calls the caller's infeasibility probe."""
PROBE_SECONDS = 60.0
"""Seconds the infeasibility probe may always run (see :data:`PROBE_FACTOR`)."""
PROBE_FACTOR = 10.0
"""The probe may run ``max(PROBE_SECONDS, PROBE_FACTOR x`` the interior point's seconds so
far), the factor keeping a margin on a slower machine, where both take longer. The LP proves
the infeasible full-size country in 19-24 s, about 5x the interior point's time before it; a
feasible problem whose first steps happen to be short would otherwise wait for the LP's first
feasible point (more than 13 minutes on the full-size country, seen with smaller starting
multipliers). Without a proof in time the interior point goes on."""
MIDDLES_ITERATIONS = 30
"""Newton iterations allowed to the exact solution at the bands' middles (the feasibility
witness tried before the LP probe when the interior point is slow)."""
PROBE_RESIDUAL = 0.5
"""Share of its starting value the residual must fall under to show progress (see
:data:`PROBE_GAP`)."""
PROBE_GAP = 0.9
"""The probe runs when, after :data:`PROBE_AFTER` iterations, the residual has not fallen
below :data:`PROBE_RESIDUAL` of its starting value and the complementarity not below
:data:`PROBE_GAP` of its own. A feasible problem's steps lengthen at once; an infeasible one's
stay short, the barrier parameter rising. Measured after four iterations: the residual at
0.29 (full-size country) and 0.06 (tiny) of its start for noiseless bands, 0.95 and 0.77 with
2% noise, whose complementarity rose."""


class _Interior:
    """The interior-point iterates and the pieces of one step (all rows of X in play)."""

    def __init__(self, engine: DualNewton, mid, half, scale, absmax):
        self.engine, self.mid, self.t, self.scale = engine, mid, half, scale
        self.band = half > 0
        self.absmax = np.where(self.band, absmax, 0.0)
        p = mid.size
        self.lam = np.zeros(p)
        self.sl = half.copy()  # t + e
        self.su = half.copy()  # t - e
        self.zl = np.zeros(p)
        self.zu = np.zeros(p)

    def start(self, xw: np.ndarray, J: np.ndarray | None, ref: np.ndarray) -> None:
        """Slacks near the estimates at ``lambda = 0``, multipliers of the Newton step's size."""
        b, t = self.band, self.t
        e = np.clip(xw - self.mid, -START_SLACK * t, START_SLACK * t)
        self.sl = np.where(b, t + e, 0.0)
        self.su = np.where(b, t - e, 0.0)
        curv = np.diag(J) if J is not None else ref
        curv = np.where(curv > 0, curv, ref)
        zeta = np.maximum(np.abs(xw - self.mid), t) / np.where(curv > 0, curv, 1.0)
        self.zl = np.where(b, zeta, 0.0)
        self.zu = self.zl.copy()

    def e(self) -> np.ndarray:
        """The slacks, from whichever of ``s_lo``, ``s_hi`` is smaller (no cancellation)."""
        return np.where(self.sl <= self.su, self.sl - self.t, self.t - self.su)

    def residual(self, xw: np.ndarray, step: float = 0.0, de=None) -> np.ndarray:
        e = self.e() if de is None else self.e() + step * de
        return self.mid + e - xw

    def gaps(self) -> np.ndarray:
        return np.where(self.band, self.zl * self.sl + self.zu * self.su, 0.0)

    def measure(self) -> float:
        """Largest scaled complementarity ``(z s)_j max_i |X_ji| / t_j``: a bound on the change
        of ``x_i' lambda`` that the interior multipliers cause (dimensionless)."""
        if not self.band.any():
            return 0.0
        t = np.where(self.band, self.t, 1.0)
        return float(np.max(self.gaps() * self.absmax / t))

    def direction(self, solve, rho, sigma_mu, corr_l=None, corr_u=None):
        """The Newton step of the perturbed KKT system (``solve`` applies the factor)."""
        b, sl, su, zl, zu = self.band, self.sl, self.su, self.zl, self.zu
        cl = np.where(b, sigma_mu - zl * sl, 0.0)
        cu = np.where(b, sigma_mu - zu * su, 0.0)
        if corr_l is not None:
            cl -= corr_l
            cu -= corr_u
        with np.errstate(divide="ignore", invalid="ignore"):
            rb = self.lam - zl + zu
            q = np.where(b, cl / sl - cu / su - rb, 0.0)
            inv_theta = self.inv_theta()
        dlam = solve(rho + q * inv_theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            de = np.where(b, (q - dlam) * inv_theta, 0.0)
            dzl = np.where(b, (cl - zl * de) / sl, 0.0)
            dzu = np.where(b, (cu + zu * de) / su, 0.0)
        return dlam, de, dzl, dzu

    def inv_theta(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            theta = self.zl / self.sl + self.zu / self.su
            return np.where(self.band & (theta > 0), 1.0 / theta, 0.0)

    def max_step(self, de, dzl, dzu, fraction: float = 1.0) -> float:
        alpha = 1.0
        for v, dv in ((self.sl, de), (self.su, -de), (self.zl, dzl), (self.zu, dzu)):
            neg = self.band & (dv < 0)
            if neg.any():
                alpha = min(alpha, fraction * float(np.min(-v[neg] / dv[neg])))
        return alpha

    def take(self, alpha, dlam, de, dzl, dzu) -> None:
        b = self.band
        self.lam = self.lam + alpha * dlam
        self.sl = np.where(b, self.sl + alpha * de, 0.0)
        self.su = np.where(b, self.su - alpha * de, 0.0)
        self.zl = np.where(b, self.zl + alpha * dzl, 0.0)
        self.zu = np.where(b, self.zu + alpha * dzu, 0.0)


def _polish(engine: DualNewton, it: _Interior, J, lo, hi, gap, *, epsilon, max_iter):
    """The exact finish from the interior point (see the module docstring), or None.

    Returns ``(outcome, lam)`` with ``lam`` None when no round met the KKT conditions, or None
    when the ends guessed contradict one another (the interior point goes on). Each round
    after the first corrects the guess like a primal-dual active-set method: targets found
    outside their band join the targets at an end (at the end they cross), targets at an end
    whose multiplier has the wrong sign leave it, and Newton starts again from the round's
    multipliers.
    """
    band, t = it.band, np.where(it.band, it.t, 1.0)
    theta = min(1e-3, max(np.sqrt(gap), 1e-10))
    at_lo = band & (it.sl <= it.su) & (it.sl <= 2 * theta * t)
    at_hi = band & (it.su < it.sl) & (it.su <= 2 * theta * t)
    slack = epsilon * it.scale
    start = it.lam
    out = None
    spent = 0
    for _ in range(FINISH_ROUNDS):
        if spent >= max_iter:
            break
        ends = np.where(at_lo, lo, np.where(at_hi, hi, it.mid))
        rows = np.flatnonzero(~band | at_lo | at_hi)
        lam = np.zeros(it.mid.size)
        if J is not None and rows.size:
            keep, dropped, C = dependent_rows(submatrix(J, rows))
            if dropped.size:
                if inconsistent(C, ends[rows], keep, dropped).any():
                    return None if out is None else (out, None)
                # the dependent rows keep the interior point's multipliers (signs those of
                # their ends), the others are solved for: the weights are the same for any split
                lam[rows[dropped]] = it.lam[rows[dropped]]
                rows = rows[keep]
        out = _joined(out, engine.solve(
            ends[rows], rows, start[rows], epsilon=epsilon, max_iter=max_iter - spent,
            lam_fixed=lam,
        ))  # fmt: skip
        spent = out.iterations
        if not out.converged:
            return out, None
        lam[rows] = out.lam
        est = engine.last.xw
        inside = band & ~(at_lo | at_hi)
        below = inside & (est < lo - slack)
        above = inside & (est > hi + slack)
        size = np.abs(lam) * np.where(band, it.absmax, 0.0)
        tiny = 1e-9 * max(float(size.max(initial=0.0)), 1e-300)
        wrong = (at_lo & (lam < 0) & (size > tiny)) | (at_hi & (lam > 0) & (size > tiny))
        if not (below.any() or above.any() or wrong.any()):
            return out, lam
        at_lo = (at_lo & ~wrong) | below
        at_hi = (at_hi & ~wrong) | above
        start = lam
    return out, None


def _joined(first: NewtonOutcome | None, then: NewtonOutcome) -> NewtonOutcome:
    """``then`` with the iterations and history of ``first`` (an earlier round) before its own."""
    if first is not None:
        then.iterations += first.iterations
        then.history = first.history + then.history
    return then


def newton_bands(
    engine: DualNewton,
    T: np.ndarray,
    band_lower: np.ndarray,
    band_upper: np.ndarray,
    *,
    epsilon: float,
    max_iter: int,
    probe: Callable[[float], Any] | None = None,
) -> tuple[NewtonOutcome, np.ndarray, dict[str, Any]]:
    """Newton with tolerance bands (see the module docstring).

    Parameters
    ----------
    engine
        The dual Newton engine of the problem.
    T
        Targets (they scale the convergence rule, as for exact targets).
    band_lower, band_upper
        The band of each target (equal for exact targets).
    epsilon, max_iter
        Convergence rule (``max_j |r_j| / s_j``) and cap on the Newton iterations, interior
        point and exact finish together.
    probe
        Called once (its answer is ignored) when the first :data:`PROBE_AFTER` iterations
        cut neither the residual to :data:`PROBE_RESIDUAL` nor the complementarity to
        :data:`PROBE_GAP` of their starting values: the cheap evidence that no point meets
        every band. Its argument is the seconds it may take, ``max(PROBE_SECONDS,
        PROBE_FACTOR x`` the seconds spent here so far). The caller passes an infeasibility
        check that raises when it proves so (the phase-1 LP, stopped at its first proof, first
        feasible point or time limit), so an infeasible problem ends without running the
        interior point until it stalls. Before it, the exact solution at the bands' middles
        is tried (:func:`_middles`): when its weights meet every band the probe is not needed.

    Returns
    -------
    NewtonOutcome, ndarray, dict
        The outcome, the multipliers (one per target) and information for the result; when
        the interior point did not converge, ``info["witness"]`` may hold ``(g, lambda)`` of
        the exact solution at the bands' middles, which meets every band.
    """
    t0 = time.perf_counter()
    p = T.size
    rows = np.arange(p)
    scale = engine.row_scale(T, rows)
    mid = 0.5 * (band_lower + band_upper)
    half = np.maximum(0.5 * (band_upper - band_lower), 0.0)
    it = _Interior(engine, mid, half, scale, row_absmax(engine.Xc))
    ev = engine.evaluator
    ev.set_rows(rows)
    dense = p <= engine.dense_limit
    ev.composed = not dense
    speculate = dense and ev.fused() is not None
    slot = 0
    E = ev(it.lam, slot, gram=speculate)
    it.start(E.xw, E.J, engine.reference_curvature())
    history: list[float] = []
    gaps: list[float] = []
    tries = list(POLISH_GAPS)
    total = 0
    info: dict[str, Any] = {}
    out: NewtonOutcome | None = None
    converged, message = False, ""
    while True:
        rho = it.residual(E.xw)
        crit = float(np.max(np.abs(rho) / scale, initial=0.0))
        gap = it.measure()
        history.append(crit)
        gaps.append(gap)
        if tries and crit < max(epsilon, tries[0]) and gap < tries[0]:
            J = None
            if dense:
                J = engine._matrix(it.lam, slot, E, None, False)
            while tries and gap < tries[0]:
                tries.pop(0)
            res = _polish(
                engine, it, J, band_lower, band_upper, gap, epsilon=epsilon,
                max_iter=max(1, max_iter - total),
            )  # fmt: skip
            ev.set_rows(rows)
            ev.composed = not dense
            if res is not None:
                out, lam = res
                total += out.iterations
                if lam is not None:
                    n_at = int(np.sum(lam[it.band] != 0))
                    out.message += (
                        f"; tolerance bands: {len(history) - 1} interior-point iteration(s), "
                        f"then the exact finish with {n_at} band target(s) at an end"
                    )
                    out.iterations = total
                    out.history = history + out.history
                    out.seconds = time.perf_counter() - t0
                    info.update(active_band_targets=n_at, interior_iterations=len(history) - 1)
                    return out, lam, info
            E = ev(it.lam, slot, gram=speculate)
        if crit < epsilon and gap < GAP_TOL:
            converged = True
            message = (
                f"converged: max |T - Xw|/scale = {crit:.3g} < {epsilon:g} with the interior "
                f"point's complementarity at {gap:.3g} (the exact finish did not hold)"
            )
            break
        if total >= max_iter:
            message = f"stopped at the iteration cap ({max_iter}); max |T - Xw|/scale = {crit:.3g}"
            break
        if len(history) == PROBE_AFTER + 1 and _slow(history, gaps):
            # slow: first the exact solution at the bands' middles (a few Newton iterations);
            # weights meeting every band prove the problem feasible without the LP
            if _middles(engine, it.mid, band_lower, band_upper, scale, epsilon, info):
                probe = None
            if info.get("middles_iterations") is not None:  # (its Newton used the evaluator)
                ev.set_rows(rows)
                ev.composed = not dense
                E = ev(it.lam, slot, gram=speculate)
            if probe is not None:
                probe(max(PROBE_SECONDS, PROBE_FACTOR * (time.perf_counter() - t0)))
                probe = None
        if len(history) > STALL_WINDOW and (
            min(history[-STALL_WINDOW:]) > 0.5 * min(history[:-STALL_WINDOW])
            and min(gaps[-STALL_WINDOW:]) > 0.5 * min(gaps[:-STALL_WINDOW])
        ):
            message = (
                f"stalled: neither the residual (max |T - Xw|/scale = {crit:.3g}) nor the "
                f"complementarity ({gap:.3g}) fell 2x over the last {STALL_WINDOW} "
                f"interior-point iterations"
            )
            break
        total += 1
        step = _step(engine, it, E, rho, crit, slot, scale, epsilon, speculate)
        if step is None:
            message = (
                f"no step lowers the residual at interior-point iteration {len(history)} "
                f"(max |T - Xw|/scale = {crit:.3g})"
            )
            break
        E, slot = step, 1 - slot
    g = E.g.copy()
    engine.last = E
    out = NewtonOutcome(
        lam=it.lam.copy(),
        g=g,
        converged=converged,
        iterations=total,
        max_residual=history[-1],
        message=message,
        history=history,
        seconds=time.perf_counter() - t0,
        linear_solvers=list(engine._solvers),
    )
    info.update(interior_iterations=len(history) - 1, complementarity=gaps[-1])
    if not converged and "middles_iterations" not in info:
        _middles(engine, it.mid, band_lower, band_upper, scale, epsilon, info)
        engine.last = E
    return out, it.lam.copy(), info


def _middles(engine: DualNewton, mid, lo, hi, scale, epsilon, info: dict[str, Any]) -> bool:
    """Exact Newton to the bands' middles (at most :data:`MIDDLES_ITERATIONS` iterations).

    Records ``info["middles_iterations"]`` (None when the middles contradict one another on
    dependent targets: no Newton runs) and, when its weights meet every band,
    ``info["witness"] = (g, lambda)``; returns whether they do.
    """
    p, n = mid.size, engine.d.size
    glo = np.broadcast_to(-np.inf if engine.lo is None else engine.lo, (n,))
    ghi = np.broadcast_to(np.inf if engine.hi is None else engine.hi, (n,))
    names = [f"target {j}" for j in range(p)]
    info["middles_iterations"] = None
    try:
        out, lam, _ = newton_exact(
            engine, mid, names, glo, ghi, epsilon=epsilon, max_iter=MIDDLES_ITERATIONS
        )
    except InfeasibleError:
        return False
    info["middles_iterations"] = out.iterations
    xw = engine.last.xw
    slack = epsilon * scale
    if not np.all((xw >= lo - slack) & (xw <= hi + slack)):
        return False
    info["witness"] = (out.g, lam)
    return True


def _slow(history: list[float], gaps: list[float]) -> bool:
    """Neither the residual nor the complementarity fell to its share of its start
    (:data:`PROBE_RESIDUAL`, :data:`PROBE_GAP`)."""
    return history[-1] > PROBE_RESIDUAL * history[0] and gaps[-1] > PROBE_GAP * gaps[0]


def _step(engine, it: _Interior, E, rho, crit, slot, scale, epsilon, speculate):
    """One predictor-corrector step with halvings; the evaluation at the new point or None."""
    rows = np.arange(it.mid.size)
    pdiag = it.inv_theta()
    cg_tol = min(0.1, max(1e-12, np.sqrt(crit)))
    solve_mu = engine._system(rows, it.lam, slot, E, pdiag, cg_tol, None, crit, strict=False)

    def solve(r):
        x, how = solve_mu(r, 0.0)
        if how not in engine._solvers:
            engine._solvers.append(how)
        return x

    nb = max(int(it.band.sum()), 1)
    mu = float(it.gaps().sum()) / (2 * nb)
    dlam, de, dzl, dzu = it.direction(solve, rho, 0.0)
    a_aff = it.max_step(de, dzl, dzu)
    b = it.band
    gap_aff = np.where(
        b,
        (it.zl + a_aff * dzl) * (it.sl + a_aff * de) + (it.zu + a_aff * dzu) * (it.su - a_aff * de),
        0.0,
    )
    sigma = (float(gap_aff.sum()) / (2 * nb) / mu) ** 3 if mu > 0 else 0.0
    dlam, de, dzl, dzu = it.direction(solve, rho, sigma * mu, de * dzl, -de * dzu)
    alpha = it.max_step(de, dzl, dzu, TO_BOUNDARY)
    ev = engine.evaluator
    gram = speculate
    for _ in range(HALVINGS):
        E_try = ev(it.lam + alpha * dlam, 1 - slot, gram=gram)
        gram = False
        with np.errstate(over="ignore", invalid="ignore"):
            r_try = it.residual(E_try.xw, alpha, de)
            c_try = float(np.max(np.abs(r_try) / scale, initial=0.0))
        if np.isfinite(c_try) and (c_try <= (1 - 1e-4 * alpha) * crit or c_try < 0.1 * epsilon):
            it.take(alpha, dlam, de, dzl, dzu)
            return E_try
        alpha *= 0.5
    return None
