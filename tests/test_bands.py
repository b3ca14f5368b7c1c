"""Tolerance bands (interior point on the band slacks, exact finish) on nested geographies.

A state's targets are the sums of its districts' and the nation's the sums of the states', so
the band constraints are linearly dependent; with noiseless targets every state band is implied
by its districts' bands. Optimality is checked from scratch: ``g = clip(F(X' lambda))``, the
bands, complementary slackness and a zero duality gap (the dual value of the multipliers equals
the primal objective), which together prove the weights optimal.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import calibopt as co
from calibopt.solvers.distances import get_distance


def duality_gap(problem, result, dist_name: str) -> float:
    """Primal objective minus the dual value of the result's multipliers (relative)."""
    dist = get_distance(dist_name)
    glo, ghi = problem.g_bounds()
    d = problem.initial_weights
    lam = result.multipliers
    u = problem.X.T @ lam
    g = dist.F(u, glo, ghi)
    lo_b, hi_b = problem.target_bands()
    dual = float(np.sum(np.where(lam > 0, lam * lo_b, lam * hi_b)))
    dual -= dist.conjugate_sum(d, u, g, glo, ghi)
    primal = float(d @ dist.G(result.g, glo, ghi))
    return (primal - dual) / max(abs(primal), 1e-300)


def check_kkt(problem, result, dist_name: str, tol: float = 1e-9) -> int:
    """KKT conditions of the band program; returns the number of bands binding."""
    dist = get_distance(dist_name)
    glo, ghi = problem.g_bounds()
    lam = result.multipliers
    g = dist.F(problem.X.T @ lam, glo, ghi)
    np.testing.assert_allclose(result.g, g, rtol=1e-10, atol=1e-13)
    est = problem.X @ result.weights
    lo_b, hi_b = problem.target_bands()
    scale = np.abs(problem.targets)
    assert np.all(est >= lo_b - tol * scale) and np.all(est <= hi_b + tol * scale)
    at_lo = np.abs(est - lo_b) <= tol * scale
    at_hi = np.abs(est - hi_b) <= tol * scale
    # multipliers push only at the end they hold: > 0 at the lower end, < 0 at the upper
    assert np.all((lam <= 0) | at_lo) and np.all((lam >= 0) | at_hi)
    assert abs(duality_gap(problem, result, dist_name)) < tol
    return int(np.sum(lam != 0))


@pytest.fixture(scope="module")
def small_country():
    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    c = synthetic_country("small", seed=0)
    return MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()


@pytest.mark.parametrize(
    "method, dist, ratio",
    [("linear", "linear", None), ("raking", "raking", None), ("truncated", "linear", (0, 20))],
)
def test_nested_bands_small_country_optimal(small_country, method, dist, ratio):
    """The noiseless small country (605 targets, 80,000 columns) with 1% bands: the
    active-set loop used before pinned a district and its state at contradictory ends and
    stalled; the interior point ends at the optimum, proven by the KKT conditions."""
    p = small_country.to_problem(default_tolerance=0.01, ratio_bounds=ratio)
    r = co.calibrate(p, method=method, fallback=None)
    assert r.status == "optimal" and r.solver == "newton", r.message
    assert "exact finish" in r.message
    binding = check_kkt(p, r, dist)
    assert binding > 300  # most bands bind, states with all their districts
    assert r.iterations < 40


@pytest.mark.parametrize("method, dist", [("linear", "linear"), ("raking", "raking")])
def test_finish_corrects_its_guess(monkeypatch, small_country, method, dist):
    """The exact finish, tried at a complementarity of 1e-4, misses a few targets at an end
    (they come out just outside their band); its next round adds them at the end they cross
    and restarts Newton from the round's multipliers, so the first try holds: the optimum,
    proven by the KKT conditions, without the interior point's last iterations."""
    from calibopt.solvers import bands

    tries = []
    real = bands._polish

    def spy(engine, *a, **k):
        solves = []
        real_solve = engine.solve
        monkeypatch.setattr(
            engine, "solve", lambda *b, **c: solves.append(1) or real_solve(*b, **c)
        )
        res = real(engine, *a, **k)
        monkeypatch.setattr(engine, "solve", real_solve)
        tries.append((len(solves), res is not None and res[1] is not None))
        return res

    monkeypatch.setattr(bands, "_polish", spy)
    p = small_country.to_problem(default_tolerance=0.01)
    r = co.calibrate(p, method=method, fallback=None)
    assert r.status == "optimal" and "exact finish" in r.message, r.message
    check_kkt(p, r, dist)
    # one try, accepted after a corrected round (the first guess alone does not hold)
    assert len(tries) == 1 and tries[0][1] and 2 <= tries[0][0] <= bands.FINISH_ROUNDS
    assert r.info["interior_iterations"] <= 10 and r.iterations <= 15


def test_probe_has_a_time_budget(monkeypatch):
    """A feasible problem whose first steps looked slow gets the probe with a time budget
    (:data:`PROBE_SECONDS` at least); the LP finds no proof and the interior point goes on
    to the optimum."""
    from calibopt.solvers import bands

    monkeypatch.setattr(bands, "_slow", lambda history, gaps: True)
    # (the bands' middles would prove feasibility without the LP: left out here)
    monkeypatch.setattr(bands, "_middles", lambda *a, **k: False)
    budgets = []
    real_bands = bands.newton_bands

    def spy(*a, probe=None, **k):
        return real_bands(*a, probe=lambda s: budgets.append(s) or probe(s), **k)

    monkeypatch.setattr("calibopt.formulations.distance.newton_bands", spy)
    p = nested_problem(0)
    r = co.calibrate(p, method="raking", fallback=None)
    assert len(budgets) == 1 and budgets[0] >= bands.PROBE_SECONDS
    assert r.status == "optimal"
    check_kkt(p, r, "raking")


@pytest.mark.parametrize("method", ["linear", "raking"])
def test_tight_bands_stall_returns_the_middles(monkeypatch, small_country, method):
    """Bands of 0.01% on the small country: the interior point's steps stay short (the
    slacks of a few near-dependent targets block them) and it stalls. Its slow start tries
    the exact solution at the bands' middles first: those weights meet every band, so
    neither the LP probe nor the certificate runs, and without a fallback they are the
    answer (``within_tolerance``: not the band program's optimum)."""
    import calibopt.formulations.distance_prepare as dp

    calls = []
    monkeypatch.setattr(dp.Prepared, "certify", lambda *a, **k: calls.append(k) or 0.0)
    p = small_country.to_problem(default_tolerance=1e-4)
    r = co.calibrate(p, method=method, fallback=None)
    assert calls == []
    assert r.status == "within_tolerance" and r.info["weights_from"] == "bands' middles"
    assert "stalled" in r.message and "bands' middles" in r.message
    assert r.fit.ok and r.info["middles_iterations"] >= 1
    # the middles are the targets: the weights are the exact fit's (an independent run)
    exact = co.calibrate(small_country.to_problem(default_tolerance=0.0), method=method)
    assert exact.status == "optimal"
    np.testing.assert_allclose(r.weights, exact.weights, rtol=1e-8, atol=1e-8)


def test_tight_bands_failed_fallback_keeps_the_middles(monkeypatch, small_country):
    """With a fallback that fails, the certificate is still skipped (the middles proved the
    problem feasible) and the middles' weights are returned, the failure named."""
    import calibopt.formulations.distance as distance
    import calibopt.formulations.distance_prepare as dp

    calls = []
    monkeypatch.setattr(dp.Prepared, "certify", lambda *a, **k: calls.append(k) or 0.0)

    def broken(*a, **k):
        raise RuntimeError("no solver here")

    monkeypatch.setattr(distance, "solve_cvxpy", broken)
    r = co.calibrate(small_country.to_problem(default_tolerance=1e-4), method="linear")
    assert calls == [] and r.status == "within_tolerance"
    assert "fallback failed too (RuntimeError: no solver here)" in r.message
    assert r.info["weights_from"] == "bands' middles" and r.fit.ok


def nested_problem(seed: int, n_districts: int = 4, n: int = 400):
    """Districts, their state (the sum) and two totals per area; noiseless targets."""
    rng = np.random.default_rng(seed)
    district = rng.integers(0, n_districts, n)
    income = rng.lognormal(0, 1, n)
    rows = []
    for k in range(n_districts):
        rows += [(district == k) * 1.0, (district == k) * income]
    rows += [np.ones(n), income]  # the state: sums of the district rows
    X = sp.csr_matrix(np.array(rows))
    d = rng.uniform(0.5, 2.0, n)
    truth = d * rng.lognormal(0, 0.4, n)
    return co.CalibrationProblem(X, X @ truth, initial_weights=d, tolerance=0.01)


@pytest.mark.parametrize("method", ["linear", "raking"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nested_bands_match_clarabel(method, seed):
    p = nested_problem(seed)
    r = co.calibrate(p, method=method, fallback=None, epsilon=1e-12)
    assert r.status == "optimal" and r.solver == "newton", r.message
    check_kkt(p, r, method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = co.calibrate(p, method=method, solver="CLARABEL")
    assert r.objective <= other.objective * (1 + 1e-9)
    assert other.objective == pytest.approx(r.objective, rel=1e-6)


def test_infeasible_bands_still_certified():
    """Without weights meeting every band the interior point stalls and the LP certificate
    names the conflict (the check now runs only when Newton fails)."""
    p = nested_problem(0)
    b = p.targets.copy()
    b[-2] *= 1.2  # the state's count 20% above the sum of its districts (1% bands)
    bad = co.CalibrationProblem(p.X, b, initial_weights=p.initial_weights, tolerance=0.01)
    with pytest.raises(co.InfeasibleError):
        co.calibrate(bad, method="linear", fallback=None)


def tiny_country(noise: float):
    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    c = synthetic_country("tiny", seed=0, noise=noise)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    return m.to_problem(ratio_bounds=(0, 20), default_tolerance=0.01)


@pytest.mark.parametrize("method", ["truncated", "raking"])
def test_slow_start_probes_infeasibility(monkeypatch, method):
    """The realistic case of issue 17 in miniature (2% noise, 1% bands, g in [0, 20]): the
    first steps barely move, so the LP probe runs after PROBE_AFTER interior-point iterations
    and certifies infeasibility, instead of the interior point running until it stalls; the
    noiseless problem (feasible, its steps lengthen at once) never calls the probe."""
    from calibopt.solvers import bands

    steps = []
    real_step = bands._step
    monkeypatch.setattr(bands, "_step", lambda *a: steps.append(1) or real_step(*a))
    bad = tiny_country(0.02)
    with pytest.raises(co.InfeasibleError) as exc:
        co.calibrate(bad, method=method, fallback=None)
    assert len(steps) == bands.PROBE_AFTER < bands.STALL_WINDOW
    # the LP's duals name the targets in conflict, and they are the problem's own
    assert exc.value.targets and set(exc.value.targets) <= set(bad.target_names)
    # the same certificate as the full LP over the problem: the shortfall is positive
    from calibopt.solvers.feasibility import lp_certificate

    glo, ghi = bad.g_bounds()
    lo_b, hi_b = bad.target_bands()
    d = bad.initial_weights
    short = lp_certificate(
        sp.csc_matrix(bad.X), lo_b, hi_b, d * glo, d * ghi, bad.target_names,
        raise_if_infeasible=False,
    )  # fmt: skip
    assert short > 1e-3

    steps.clear()
    probes = []
    real_bands = bands.newton_bands

    def spy(*a, probe=None, **k):
        return real_bands(*a, probe=lambda s: probes.append(1) or probe(s), **k)

    monkeypatch.setattr("calibopt.formulations.distance.newton_bands", spy)
    good = tiny_country(0.0)
    r = co.calibrate(good, method=method, fallback=None)
    assert r.status == co.status.OPTIMAL and not probes
    check_kkt(good, r, "raking" if method == "raking" else "linear")
