"""method="hard-concrete": gradients, loss agreement, sparsity vs brute force, reproducibility,
checkpoints, interrupts, polish, bounds and bad input."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import nnls

torch = pytest.importorskip("torch")

import calibopt as co  # noqa: E402
from calibopt.errors import (  # noqa: E402
    InfeasibleError,
    InvalidProblemError,
    SolverError,
)
from calibopt.solvers.hard_concrete.gates import GateSpec  # noqa: E402
from calibopt.solvers.hard_concrete.model import HardConcreteModel  # noqa: E402
from calibopt.solvers.loss import loss_weights, target_loss  # noqa: E402

FAST = dict(progress=False, threads=1)


def local_problem(n_geo=4, n_households=300, n_vars=4, seed=0, **kw) -> co.CalibrationProblem:
    """Households copied into every geography (columns geography-major); targets from a planted
    weighting where each household lives in one geography: district, state (2) and national
    totals of count and amount variables, grouped by level x variable."""
    rng = np.random.default_rng(seed)
    H, G, K = n_households, n_geo, n_vars
    F = np.where(rng.random((H, K)) < 0.6, rng.lognormal(2, 1, (H, K)), 0.0)
    F[:, 0] = 1.0  # household count
    state = np.arange(G) % 2
    rows, cols, vals = [], [], []
    for g in range(G):
        for k in range(K):
            nz = np.flatnonzero(F[:, k])
            for r in (g * K + k, G * K + state[g] * K + k, G * K + 2 * K + k):
                rows.append(np.full(nz.size, r))
                cols.append(g * H + nz)
                vals.append(F[nz, k])
    m = G * K + 3 * K
    X = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, G * H)
    )
    hw = rng.uniform(10, 100, H)
    w_true = np.zeros(G * H)
    w_true[rng.integers(0, G, H) * H + np.arange(H)] = hw
    groups = [f"district/{k}" for g in range(G) for k in range(K)]
    groups += [f"state/{k}" for s in range(2) for k in range(K)]
    groups += [f"national/{k}" for k in range(K)]
    return co.CalibrationProblem(
        X, X @ w_true, initial_weights=np.tile(hw / G, G), groups=groups, **kw
    )


@pytest.fixture(scope="module")
def problem():
    return local_problem()


def small_model(dtype=torch.float64, lambda_l0=0.3, lambda_l2=0.01, seed=1):
    rng = np.random.default_rng(seed)
    m, n = 6, 30
    X = sp.random(m, n, density=0.5, random_state=seed, format="csr") * 10
    b = rng.uniform(5, 20, m)
    b[2] = 0.0
    d = rng.uniform(0.5, 2, n)
    groups = ["a", "a", "b", "b", "b", "c"]
    omega = loss_weights(b, groups)
    root = np.sqrt(omega)
    model = HardConcreteModel(
        sp.csr_matrix(sp.diags(root) @ X),
        root * b,
        np.ones(m),
        d,
        log_lower=None,
        log_upper=None,
        spec=GateSpec(),
        lambda_l0=lambda_l0,
        lambda_l2=lambda_l2,
        init_log_alpha=0.5,
        dtype=dtype,
        device=torch.device("cpu"),
    )
    return model, X, b, d, groups


def _loss(model, X, b, d, groups, lw, la, u, lam0, lam2):
    """The training loss from its definition, in float64 numpy, for finite differences."""
    spec = model.spec
    s = 1 / (1 + np.exp(-(np.log(u) - np.log1p(-u) + la) / spec.beta))
    z = np.clip(s * (spec.zeta - spec.gamma) + spec.gamma, 0, 1)
    w = np.exp(lw) * z
    fit = target_loss(X, w, targets=b, groups=groups)[0]
    p = 1 / (1 + np.exp(-(la - spec.beta * np.log(-spec.gamma / spec.zeta))))
    return fit + lam0 * p.sum() + lam2 * np.sum((w / d) ** 2)


# ---------------------------------------------------------------------------- gradients, loss
def test_gradient_matches_finite_differences():
    model, X, b, d, groups = small_model()
    rng = np.random.default_rng(5)
    n = d.size
    lw = np.log(d) + rng.normal(0, 0.3, n)
    la = rng.normal(0, 1.5, n)
    u = rng.uniform(0.05, 0.95, n)
    # keep every sampled gate strictly inside (0, 1) or clearly at an end (no kink nearby)
    model.load_state(lw, la)
    model.step_gradient(torch.as_tensor(u))
    g_lw = model.log_w.grad.numpy().copy()
    g_la = model.log_alpha.grad.numpy().copy()
    h = 1e-6
    fd_lw, fd_la = np.zeros(n), np.zeros(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = h
        f = lambda a, c: _loss(model, X, b, d, groups, a, c, u, 0.3, 0.01)  # noqa: E731
        fd_lw[i] = (f(lw + e, la) - f(lw - e, la)) / (2 * h)
        fd_la[i] = (f(lw, la + e) - f(lw, la - e)) / (2 * h)
    scale = max(np.abs(fd_lw).max(), np.abs(fd_la).max())
    np.testing.assert_allclose(g_lw, fd_lw, rtol=1e-6, atol=1e-7 * scale)
    np.testing.assert_allclose(g_la, fd_la, rtol=1e-6, atol=1e-7 * scale)
    # some gates are clipped at 0 or 1 (zero fit gradient there) and some are not
    s = 1 / (1 + np.exp(-(np.log(u) - np.log1p(-u) + la) / model.spec.beta))
    z = np.clip(1.2 * s - 0.1, 0, 1)
    assert ((z == 0) | (z == 1)).any() and ((z > 0) & (z < 1)).any()


def test_fit_term_and_gradient_equal_calibopt_loss():
    model, X, b, d, groups = small_model(lambda_l0=0.0, lambda_l2=0.0)
    rng = np.random.default_rng(2)
    w = rng.uniform(0.1, 3, d.size)
    # gates wide open (log_alpha large -> z = 1 for every draw), theta = log w
    model.load_state(np.log(w), np.full(d.size, 50.0))
    fit = model.step_gradient(torch.full((d.size,), 0.5, dtype=torch.float64))
    value, grad = target_loss(X, w, targets=b, groups=groups)
    assert float(fit) == pytest.approx(value, rel=1e-13)
    # d/dtheta = grad_w * w
    np.testing.assert_allclose(model.log_w.grad.numpy() / w, grad, rtol=1e-12, atol=1e-14)
    assert np.all(model.log_alpha.grad.numpy() == 0.0)


def test_float32_gradient_close_to_float64():
    m64, *_ = small_model(torch.float64)
    m32, *_ = small_model(torch.float32)
    u = torch.linspace(0.05, 0.95, m64.n, dtype=torch.float64)
    m64.step_gradient(u)
    m32.step_gradient(u.float())
    for a, b in ((m32.log_w.grad, m64.log_w.grad), (m32.log_alpha.grad, m64.log_alpha.grad)):
        tol = 1e-5 * float(b.abs().max())
        np.testing.assert_allclose(a.double().numpy(), b.numpy(), rtol=2e-4, atol=tol)


# ---------------------------------------------------------------------------- sparsity
def _min_support(X: np.ndarray, b: np.ndarray, kmax: int) -> int:
    """Smallest k such that some k columns reach b with w >= 0 (brute force, NNLS)."""
    for k in range(1, kmax + 1):
        for S in itertools.combinations(range(X.shape[1]), k):
            _, res = nnls(X[:, S], b)
            if res <= 1e-9 * np.linalg.norm(b):
                return k
    raise AssertionError("no support up to kmax")


def _planted(seed: int, m: int = 5, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, (m, n)).astype(float)
    X[0] = 1.0  # a count row: every column contributes
    planted = rng.choice(n, 3, replace=False)
    return X, X[:, planted] @ rng.uniform(20, 60, 3)


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_support_close_to_brute_force_minimum(seed):
    X, b = _planted(seed)
    kmin = _min_support(X, b, 5)
    assert kmin == 3
    p = co.CalibrationProblem(X, b, initial_weights=np.full(X.shape[1], b[0] / X.shape[1]))
    r = co.calibrate(p, method="hard-concrete", lambda_l0=0.2, lr=0.05, epochs=1500, **FAST)
    assert r.info["polish"]["accepted"] and r.status == "within_tolerance"
    assert r.max_rel_error <= 1e-12
    assert kmin <= r.nnz <= 2 * kmin
    if "l0-mip" in co.methods():  # the exact MIP of issue 4, when present, agrees on kmin
        assert co.calibrate(p, method="l0-mip").nnz == kmin


def test_repair_adds_units_until_the_targets_are_met():
    X, b = _planted(3)
    p = co.CalibrationProblem(X, b, initial_weights=np.full(X.shape[1], b[0] / X.shape[1]))
    kw = dict(lambda_l0=1.0, lr=0.05, epochs=400, **FAST)
    r = co.calibrate(p, method="hard-concrete", **kw)
    pol = r.info["polish"]
    assert pol["before"]["nnz"] == 1  # the penalty is so strong that one unit is kept ...
    sizes = [a["support"] for a in pol["attempts"]]
    assert sizes[0] == 1 and sizes == sorted(sizes) and len(sizes) >= 3
    assert [a["status"] for a in pol["attempts"]][-1] == "optimal"
    assert all(a["status"] != "optimal" for a in pol["attempts"][:-1])
    assert r.max_rel_error <= 1e-12 and 3 <= r.nnz <= sizes[-1]  # ... repair restores the fit
    norepair = co.calibrate(p, method="hard-concrete", repair=False, **kw)
    assert len(norepair.info["polish"]["attempts"]) == 1
    assert norepair.nnz == 1 and norepair.max_rel_error > 0.1
    assert "polish (linear) rejected" in norepair.message


def test_local_area_problem_sparse_and_exact_after_polish(problem):
    r = co.calibrate(problem, method="hard-concrete", lambda_l0=1e-3, epochs=600, **FAST)
    pol = r.info["polish"]
    before, after = pol["before"], pol["after"]
    # the planted weighting uses one column per household (300 of 1,200); the method must be
    # at least as sparse and exact after the polish
    assert r.nnz <= 300
    assert after["nnz"] == r.nnz <= before["nnz"]
    assert before["max_rel_error"] > 1e-3  # the gradient fit alone is approximate ...
    assert r.max_rel_error <= 1e-9  # ... the polish on its support is exact
    np.testing.assert_allclose(problem.X @ r.weights, problem.targets, rtol=1e-9)
    assert np.all(r.weights >= 0)
    assert "polish (linear) accepted" in r.message
    h = r.info["history"]
    assert list(h.columns[:4]) == ["fit", "live", "expected_l0", "l2"]
    assert h["live"].iloc[-1] < h["live"].iloc[0] == problem.n_units


def test_exact_zeros_without_polish(problem):
    r = co.calibrate(
        problem, method="hard-concrete", lambda_l0=1e-3, epochs=200, polish=None, **FAST
    )
    assert "polish" not in r.info
    assert 0 < r.nnz < problem.n_units
    assert np.count_nonzero(r.weights == 0.0) == problem.n_units - r.nnz
    best = r.info["hard_concrete"]["best"]
    assert best["live"] == r.nnz
    # the reported best evaluation (float32 on the device) matches the returned weights
    assert r.max_rel_error == pytest.approx(best["max_rel_error"], rel=1e-4)


def test_ratio_upper_bound_respected():
    p = local_problem(ratio_bounds=(0, 6))
    r = co.calibrate(p, method="hard-concrete", lambda_l0=1e-3, epochs=300, polish=None, **FAST)
    assert np.all(r.weights <= 6 * p.initial_weights * (1 + 1e-12))
    r2 = co.calibrate(p, method="hard-concrete", lambda_l0=1e-3, epochs=300, **FAST)
    assert np.all(r2.weights <= 6 * p.initial_weights * (1 + 1e-9))
    assert r2.info["polish"]["before"]["nnz"] == r.nnz


def test_zero_initial_weight_units_stay_zero():
    p = local_problem()
    d = p.initial_weights.copy()
    d[::7] = 0.0
    p = p.with_options(initial_weights=d)
    r = co.calibrate(p, method="hard-concrete", lambda_l0=1e-3, epochs=100, **FAST)
    assert np.all(r.weights[::7] == 0.0)


# ---------------------------------------------------------------------------- reproducibility
def test_cpu_float64_bit_for_bit_and_seed_matters(problem):
    kw = dict(dtype="float64", lambda_l0=1e-3, epochs=120, polish=None, **FAST)
    a = co.calibrate(problem, method="hard-concrete", seed=3, **kw)
    b = co.calibrate(problem, method="hard-concrete", seed=3, **kw)
    c = co.calibrate(problem, method="hard-concrete", seed=4, **kw)
    assert np.array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, c.weights)
    assert a.info["hard_concrete"]["dtype"] == "float64"


def test_checkpoint_resume_is_bit_for_bit(problem, tmp_path):
    kw = dict(dtype="float64", lambda_l0=1e-3, polish=None, patience=10_000, **FAST)
    full = co.calibrate(problem, method="hard-concrete", epochs=160, **kw)
    ck = tmp_path / "run.pt"
    first = co.calibrate(
        problem, method="hard-concrete", epochs=90, checkpoint=ck, checkpoint_every=30, **kw
    )
    assert ck.exists() and first.iterations == 90
    resumed = co.calibrate(
        problem, method="hard-concrete", epochs=160, checkpoint=ck, resume=True, **kw
    )
    assert resumed.info["hard_concrete"]["resumed_from_epoch"] == 90
    assert resumed.iterations == 160
    assert np.array_equal(full.weights, resumed.weights)
    assert list(os.listdir(tmp_path)) == ["run.pt"]  # no temporary files left behind
    # an existing checkpoint is never overwritten silently
    with pytest.raises(InvalidProblemError, match="resume=True"):
        co.calibrate(problem, method="hard-concrete", epochs=10, checkpoint=ck, **kw)
    # nor resumed for a different model
    with pytest.raises(InvalidProblemError, match="different problem"):
        co.calibrate(
            problem,
            method="hard-concrete",
            epochs=10,
            checkpoint=ck,
            resume=True,
            **(kw | {"lambda_l0": 2e-3}),
        )
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidProblemError, match="cannot read checkpoint"):
        co.calibrate(problem, method="hard-concrete", checkpoint=bad, resume=True, **kw)


# ---------------------------------------------------------------------------- stopping
def test_keyboard_interrupt_returns_best_so_far(problem):
    seen = []

    def cb(ev):
        seen.append(ev)
        if ev["epoch"] >= 50:
            raise KeyboardInterrupt

    r = co.calibrate(
        problem,
        method="hard-concrete",
        lambda_l0=1e-3,
        epochs=1000,
        eval_every=10,
        callback=cb,
        polish=None,
        **FAST,
    )
    assert r.status == "stopped"
    assert r.info["hard_concrete"]["stop_reason"] == "interrupted"
    assert "interrupted" in r.message
    objectives = [e["objective"] for e in seen]
    best = r.info["hard_concrete"]["best"]
    assert best["objective"] == min([r.info["history"]["objective"].iloc[0], *objectives])
    assert r.nnz == best["live"]


def test_ctrl_c_signal_stops_at_epoch_end(problem, tmp_path):
    def cb(ev):
        if ev["epoch"] == 40:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C delivers

    ck = tmp_path / "ck.pt"
    r = co.calibrate(
        problem,
        method="hard-concrete",
        lambda_l0=1e-3,
        epochs=1000,
        callback=cb,
        checkpoint=ck,
        checkpoint_every=1000,
        polish=None,
        **FAST,
    )
    hc = r.info["hard_concrete"]
    assert hc["stop_reason"] == "interrupted" and r.status == "stopped"
    assert hc["epochs"] == 40  # the signal came during epoch 40's evaluation: stop after it
    saved = torch.load(ck, weights_only=True)
    assert saved["epoch"] == hc["epochs"]  # the checkpoint holds the consistent final state
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_callback_stop_and_plateau(problem):
    r = co.calibrate(
        problem, method="hard-concrete", epochs=500, callback=lambda ev: True, polish=None, **FAST
    )
    assert r.info["hard_concrete"]["stop_reason"] == "callback" and r.iterations == 10
    # a tiny learning rate cannot improve the objective: the plateau rule stops the run
    r = co.calibrate(
        problem, method="hard-concrete", epochs=5000, lr=1e-9, patience=3, polish=None, **FAST
    )
    assert r.info["hard_concrete"]["stop_reason"] == "plateau"
    assert r.iterations == 30


def test_converged_stop_on_target_tolerance():
    p = local_problem()
    r = co.calibrate(
        p,
        method="hard-concrete",
        lambda_l0=0.0,
        epochs=3000,
        lr=0.05,
        init_keep_prob=0.999,
        stop_tolerance=0.5,
        patience=3,
        polish=None,
        **FAST,
    )
    assert r.info["hard_concrete"]["stop_reason"] == "converged"
    assert r.max_rel_error <= 0.5


def test_progress_bar_shows_fit_and_live_share(problem, capsys):
    co.calibrate(problem, method="hard-concrete", epochs=20, progress=True, polish=None, threads=1)
    err = capsys.readouterr().err
    assert "hard-concrete" in err and "live=" in err and "max=" in err and "mean=" in err


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "options, match",
    [
        ({"lambda_l0": -1.0}, "lambda_l0"),
        ({"lambda_l0": float("nan")}, "lambda_l0"),
        ({"lambda_l2": -0.1}, "lambda_l2"),
        ({"lr": 0.0}, "lr"),
        ({"epochs": -1}, "epochs"),
        ({"init_keep_prob": 1.0}, "init_keep_prob"),
        ({"device": "tpu"}, "unknown `device`"),
        ({"device": "mps"}, "not supported"),
        ({"device": 3}, "device"),
        ({"dtype": "float16"}, "dtype"),
        ({"polish": "simplex"}, "polish"),
        ({"solver": "adam"}, "one solver"),
        ({"beta": 0.0}, "beta"),
        ({"resume": True}, "checkpoint"),
    ],
)
def test_bad_options(problem, options, match):
    with pytest.raises(InvalidProblemError, match=match):
        co.calibrate(problem, method="hard-concrete", **({"epochs": 1} | FAST | options))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cuda_without_gpu_says_so(problem):
    msg = r"CUDA requested .* torch.cuda.is_available\(\) is False"
    with pytest.raises(SolverError, match=msg):
        co.calibrate(problem, method="hard-concrete", device="cuda", epochs=1, **FAST)


def test_all_zero_target_group_rejected():
    X = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    p = co.CalibrationProblem(X, [3.0, 0.0, 0.0], groups=["a", "z", "z"])
    with pytest.raises(InvalidProblemError, match=r"\['z'\].*every target equal to 0"):
        co.calibrate(p, method="hard-concrete", epochs=1, **FAST)


def test_unreachable_target_is_infeasible():
    X = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]]))
    p = co.CalibrationProblem(
        X, [3.0, 5.0], initial_weights=[1.0, 1.0, 0.0], target_names=["ok", "lost"]
    )
    with pytest.raises(InfeasibleError, match="lost") as exc:
        co.calibrate(p, method="hard-concrete", epochs=1, **FAST)
    assert exc.value.targets == ["lost"]


def test_nan_in_input_rejected_by_the_problem():
    with pytest.raises(InvalidProblemError, match="non-finite"):
        co.CalibrationProblem(np.array([[1.0, np.nan]]), [1.0])


def test_missing_torch_gives_install_hint(monkeypatch):
    from calibopt.solvers.hard_concrete.backend import require_torch

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(SolverError, match=r"pip install calibopt\[torch\]"):
        require_torch()


def test_import_calibopt_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, calibopt as co\n"
        "assert 'hard-concrete' in co.methods()\n"
        "p = co.CalibrationProblem(np.eye(2), [1.0, 2.0])\n"
        "try:\n"
        "    co.calibrate(p, method='hard-concrete')\n"
        "except co.SolverError as e:\n"
        "    print('OK', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK") and "calibopt[torch]" in out.stdout
