"""The fast paths of issue 17 give the same answers as the plain ones.

* the fused Newton pass (one pass over X) equals the composed NumPy evaluation;
* the NumPy kernels used until numba's cache is warm equal the compiled ones;
* merging indistinguishable units (categorical cells) equals Newton on every unit;
* the phase-1 LP by column generation equals SciPy's LP over every column, and its dual
  bound proves infeasibility on every unit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

import calibopt as co
from calibopt.errors import InfeasibleError
from calibopt.formulations.distance_prepare import prepare
from calibopt.solvers import _kernel_cache, kernels
from calibopt.solvers import phase_one as p1
from calibopt.solvers.distances import Linear, Logit, Raking, Truncated
from calibopt.solvers.evaluate import Evaluator
from calibopt.solvers.feasibility import lp_certificate
from calibopt.solvers.newton import DualNewton


@pytest.fixture(params=["numba", "numpy"])
def kernel_mode(request, monkeypatch):
    monkeypatch.setenv("CALIBOPT_KERNELS", request.param)
    monkeypatch.setitem(_kernel_cache._state, "ready", False)
    yield request.param
    _kernel_cache._state["ready"] = False


def _matrix(seed=0, m=9, n=3000, density=0.3):
    X = sp.random(m, n, density=density, random_state=seed, format="csc")
    X.data = X.data + 0.1
    X.sort_indices()
    return X


@pytest.mark.parametrize("dist", [Linear(), Raking(), Logit(), Truncated()], ids=repr)
@pytest.mark.parametrize("n", [3000, 120_000])  # serial and threaded kernels
@pytest.mark.parametrize("every", [False, True], ids=["rows-out-of-play", "every-row"])
def test_fused_pass_equals_composed(dist, n, every, monkeypatch):
    monkeypatch.setenv("CALIBOPT_KERNELS", "numba")  # (auto could switch in mid-test)
    monkeypatch.setitem(_kernel_cache._state, "ready", False)
    rng = np.random.default_rng(1)
    X = _matrix(n=n, density=0.6 if n > 10_000 else 0.3)
    d = rng.uniform(0.5, 2.0, n)
    bounded = isinstance(dist, Logit | Truncated)
    lo = np.full(n, 0.4) if bounded else None
    hi = rng.uniform(1.5, 3.0, n) if bounded else None
    fused = Evaluator(X, d, lo, hi, dist)
    plain = Evaluator(X, d, lo, hi, dist)
    plain.composed = True
    rows = np.arange(X.shape[0]) if every else np.array([0, 2, 3, 7])
    for ev in (fused, plain):
        ev.set_rows(rows)
    assert (fused._pairpos.size == 0) == every  # the kernels' every-row path, or rowpos
    lam = rng.normal(size=X.shape[0]) * 0.3
    for relax in (False, True):
        a = fused(lam, 0, gram=True, relax=relax)
        b = plain(lam, 1, gram=True, relax=relax)
        np.testing.assert_allclose(a.g, b.g, rtol=1e-14)
        np.testing.assert_allclose(a.xw, b.xw, rtol=1e-12)
        assert a.conj == pytest.approx(b.conj, rel=1e-12)
        assert a.u is None  # one pass: u is never stored
        J = plain.gram(b.u, b.g, relax=relax)
        np.testing.assert_allclose(a.J, J, rtol=1e-12, atol=1e-12 * np.abs(J).max())


def test_numpy_kernels_equal_compiled(monkeypatch):
    X = _matrix(seed=3)
    rng = np.random.default_rng(2)
    v, lam = rng.uniform(0, 2, X.shape[1]), rng.normal(size=X.shape[0])
    lo, hi = rng.uniform(0, 1, X.shape[1]), rng.uniform(1, 3, X.shape[1])
    hi[5] = np.inf
    out = {}
    for mode in ("numba", "numpy"):
        monkeypatch.setenv("CALIBOPT_KERNELS", mode)
        monkeypatch.setitem(_kernel_cache._state, "ready", False)
        assert (kernels.compiled() is None) == (mode == "numpy")
        out[mode] = (
            kernels.weighted_gram(X, v),
            kernels.rmatvec(X, lam),
            kernels.matvec(X, v),
            kernels.weighted_row_sq(X, v),
            kernels.weighted_row_abs(X, v),
            kernels.row_absmax(X),
            *kernels.row_ranges(X, lo, hi),
        )
    _kernel_cache._state["ready"] = False
    for a, b in zip(out["numba"], out["numpy"]):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(out["numpy"][0], (X @ sp.diags(v) @ X.T).toarray(), rtol=1e-12)


@pytest.mark.parametrize("m", [131, 200])  # several 64-row tiles, an odd and an even count
def test_parallel_gram_and_transpose_equal_scipy(m, monkeypatch):
    monkeypatch.setenv("CALIBOPT_KERNELS", "numba")
    monkeypatch.setitem(_kernel_cache._state, "ready", False)
    X = sp.random(m, 60_000, density=0.05, random_state=m, format="lil")
    X[:, 7] = 1.5  # units with more entries than the pair buffers start with (64)
    X[::3, 59_000] = 2.0
    X = X.tocsr()
    assert X.nnz >= kernels.SERIAL_NNZ  # the threaded kernels
    v = np.random.default_rng(m).uniform(0, 2, X.shape[1])
    C = kernels.to_csc(X)
    R = X.tocsc()
    R.sort_indices()
    assert C.has_sorted_indices
    for a, b in ((C.indptr, R.indptr), (C.indices, R.indices), (C.data, R.data)):
        np.testing.assert_array_equal(a, b)
    J = kernels.weighted_gram(C, v)
    ref = (R @ sp.diags(v) @ R.T).toarray()
    np.testing.assert_allclose(J, ref, rtol=1e-12, atol=1e-13 * np.abs(ref).max())
    assert np.array_equal(J, J.T)
    # the fused pass's Newton matrix on a subset of rows (tiles of the subset, not of X)
    rows = np.arange(0, m, 2)
    ev = Evaluator(C, np.ones(X.shape[1]), None, None, Raking())
    ev.set_rows(rows)
    lam = np.zeros(m)
    Jf = ev(lam, 0, gram=True).J
    np.testing.assert_array_equal(kernels.submatrix(J, rows), J[np.ix_(rows, rows)])
    np.testing.assert_allclose(Jf, ((R @ R.T).toarray())[np.ix_(rows, rows)], rtol=1e-12)
    ev.set_rows(np.arange(m))  # every row in play
    np.testing.assert_allclose(ev(lam, 0, gram=True).J, (R @ R.T).toarray(), rtol=1e-12)
    _kernel_cache._state["ready"] = False


def _margins_problem(n=20_000, seed=0, **options):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {"a": rng.integers(0, 5, n), "b": rng.integers(0, 7, n), "c": rng.integers(0, 3, n)}
    )
    d = rng.uniform(0.5, 2.0, n)
    hidden = d * np.exp(0.2 * rng.standard_normal(n))
    margins = {v: dict(enumerate(np.bincount(df[v], hidden))) for v in df}
    return co.problem_from_margins(df, margins, weights=d, **options)


@pytest.mark.parametrize(
    "method, options",
    [("raking", {}), ("linear", {}), ("truncated", {"ratio_bounds": (0.7, 1.6)}),
     ("logit", {"ratio_bounds": (0.5, 2.0)}), ("raking", {"tolerance": 0.002})],
)  # fmt: skip
def test_merged_cells_equal_every_unit(method, options, kernel_mode):
    p = _margins_problem(**options)
    merged = prepare(p, co.solvers.distances.get_distance(method), method, collapse=True)
    assert merged.labels is not None and merged.Xc.shape[1] <= 5 * 7 * 3
    r = co.calibrate(p, method=method)
    assert r.status == "optimal"
    # the same program on every unit: no merging (the engine on the uncollapsed matrix)
    full = prepare(p, merged.dist, method, collapse=False)
    eng = DualNewton(full.Xc, full.d, full.glo, full.ghi, full.dist)
    if options.get("tolerance"):
        # the bands bind where the multipliers say: compare through the KKT weights instead
        lam = r.multipliers
        g = eng.g_at(lam)
    else:
        g = eng.solve(p.targets).g
    np.testing.assert_allclose(r.weights, full.d * g, rtol=1e-9)


def _phase_one_problem(seed):
    rng = np.random.default_rng(seed)
    X = _matrix(seed=seed, m=8, n=3000)
    X = sp.vstack([X, X[0] + 0.5 * X[1]]).tocsc()
    w0 = rng.uniform(0, 2, 3000)
    b = X @ w0
    b[-1] *= 1 + 0.03 * seed  # contradicts rows 0 and 1 beyond the 1% bands
    return X, b * 0.99, b * 1.01, np.zeros(3000), np.full(3000, 2.5)


def _scipy_shortfall(X, lo_b, hi_b, wlo, whi):
    m, n = X.shape
    c = np.maximum(np.maximum(abs(lo_b), abs(hi_b)), 1)
    A = sp.hstack([X, -sp.identity(m), sp.identity(m), -sp.identity(m)])
    cost = np.r_[np.zeros(n + m), 1 / c, 1 / c]
    bounds = np.c_[np.r_[wlo, lo_b, np.zeros(2 * m)], np.r_[whi, hi_b, np.full(2 * m, np.inf)]]
    return linprog(cost, A_eq=A, b_eq=np.zeros(m), bounds=bounds, method="highs").fun


@pytest.mark.parametrize("seed", [0, 2, 5])
@pytest.mark.parametrize("all_columns", [10, 50_000])
def test_phase_one_column_generation_equals_full_lp(seed, all_columns, monkeypatch):
    monkeypatch.setattr(p1, "ALL_COLUMNS", all_columns)
    X, lo_b, hi_b, wlo, whi = _phase_one_problem(seed)
    res = p1.phase_one(X, lo_b, hi_b, wlo, whi, batch=100)
    want = _scipy_shortfall(X, lo_b, hi_b, wlo, whi)
    assert res.optimal
    assert res.shortfall == pytest.approx(want, rel=1e-6, abs=1e-9)
    # the dual bound is computed from y on every unit, whatever the master held
    c = np.maximum(np.maximum(abs(lo_b), abs(hi_b)), 1)
    assert p1.dual_bound(X, res.y, lo_b, hi_b, wlo, whi, c) == pytest.approx(res.bound)
    assert res.bound <= want * (1 + 1e-9) + 1e-12
    assert res.bound == pytest.approx(want, rel=1e-5, abs=1e-9)
    if all_columns == 10:
        assert res.columns < X.shape[1]  # it did not need every unit
    names = [f"t{j}" for j in range(X.shape[0])]
    if want > 1e-6:
        with pytest.raises(InfeasibleError) as info:
            lp_certificate(X, lo_b, hi_b, wlo, whi, names)
        assert "t8" in info.value.targets and info.value.certificate is not None
    else:
        assert lp_certificate(X, lo_b, hi_b, wlo, whi, names) <= 1e-9


def test_phase_one_time_limit_keeps_a_valid_bound(monkeypatch):
    """Out of time, the column generation stops between rounds with ``optimal`` False and a
    bound that is still a lower bound on the shortfall; the certificate then proves nothing
    (NaN, no exception), where without the limit it raises."""
    monkeypatch.setattr(p1, "ALL_COLUMNS", 10)
    X, lo_b, hi_b, wlo, whi = _phase_one_problem(5)
    want = _scipy_shortfall(X, lo_b, hi_b, wlo, whi)
    full = p1.phase_one(X, lo_b, hi_b, wlo, whi, batch=100)
    assert want > 1e-3 and full.optimal and full.rounds >= 2
    clock = iter(range(10**6))  # one second per reading
    monkeypatch.setattr(p1.time, "perf_counter", lambda: float(next(clock)))
    res = p1.phase_one(X, lo_b, hi_b, wlo, whi, batch=100, time_limit=1.5)
    assert res.rounds == 1 and not res.optimal
    assert res.bound <= want * (1 + 1e-9) + 1e-12
    names = [f"t{j}" for j in range(X.shape[0])]
    assert np.isnan(lp_certificate(X, lo_b, hi_b, wlo, whi, names, time_limit=0.0))


def test_first_call_does_not_wait_for_numba(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, calibopt as co\n"
        "from calibopt.solvers import _kernel_cache as kc\n"
        "p = co.CalibrationProblem(np.array([[1.,1,1,1],[1,0,1,0]]), [8., 4.5],\n"
        "                          initial_weights=np.full(4, 2.))\n"
        "r = co.calibrate(p, method='raking')\n"
        "proc = kc._state['proc']\n"
        "print(r.status, 'numba' in sys.modules, proc is not None)\n"
        "if proc is not None:\n    proc.kill()\n"
    )
    env = {
        **__import__("os").environ,
        "NUMBA_CACHE_DIR": str(tmp_path),
        "CALIBOPT_KERNELS": "auto",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # solved by the NumPy kernels, numba not even imported; the compile runs in the background
    assert out.stdout.split() == ["optimal", "False", "True"]


def test_warm_up_compiles_the_cell_kernels_anew(tmp_path, monkeypatch):
    # numba checks a cached cell kernel against _numba_cells.py only, yet they inline helpers
    # from _numba_kernels.py: a warm-up (the kernels' digest changed) drops their entries
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "calibopt" / "solvers"
    folder.mkdir(parents=True)
    cells = folder / "_numba_cells._evaluate_cells-167.py311.nbi"
    other = folder / "_numba_kernels._evaluate-301.py311.nbi"
    data = folder / "_numba_cells._evaluate_cells-167.py311.1.nbc"
    for f in (cells, other, data):
        f.write_text("x")
    _kernel_cache._purge_cell_kernels()
    assert not cells.exists() and other.exists() and data.exists()
