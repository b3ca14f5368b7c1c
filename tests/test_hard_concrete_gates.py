"""Hard Concrete gates: closed-form thresholds, Monte Carlo checks of the distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from calibopt.errors import InvalidProblemError  # noqa: E402
from calibopt.solvers.hard_concrete.gates import (  # noqa: E402
    GateSpec,
    deterministic_gates,
    prob_nonzero,
)

SPEC = GateSpec()


def _sample(log_alpha: float, n: int, spec: GateSpec = SPEC, seed: int = 0) -> np.ndarray:
    """Gates drawn straight from the definition (numpy, float64), independent of the package."""
    u = np.random.default_rng(seed).uniform(size=n)
    s = 1.0 / (1.0 + np.exp(-(np.log(u) - np.log1p(-u) + log_alpha) / spec.beta))
    return np.clip(s * (spec.zeta - spec.gamma) + spec.gamma, 0.0, 1.0)


def _det(log_alpha, spec: GateSpec = SPEC) -> np.ndarray:
    la = torch.as_tensor(np.atleast_1d(np.asarray(log_alpha, dtype=np.float64)))
    return deterministic_gates(la, spec).numpy()


def test_default_thresholds_closed_form():
    # 0 iff log_alpha <= beta log(-gamma/zeta) = (2/3) log(1/11); 1 iff >= (2/3) log 11
    assert SPEC.zero_threshold == pytest.approx((2 / 3) * math.log(1 / 11), rel=1e-15)
    assert SPEC.zero_threshold == pytest.approx(-1.5985969, abs=1e-7)
    assert SPEC.one_threshold == pytest.approx((2 / 3) * math.log(11), rel=1e-15)
    t0, t1 = SPEC.zero_threshold, SPEC.one_threshold
    g = _det([t0 - 10, t0 - 1e-9, t0, t0 + 1e-6, 0.0, t1 - 1e-6, t1, t1 + 1e-9, 30])
    assert g[0] == 0.0 and g[1] == 0.0 and g[2] == pytest.approx(0.0, abs=1e-15)
    assert 0.0 < g[3] < 1e-5
    # log_alpha = 0: sigmoid(0) = 1/2 -> 0.5 * 1.2 - 0.1 = 0.5 exactly
    assert g[4] == pytest.approx(0.5, abs=1e-15)
    assert 1.0 - 1e-5 < g[5] < 1.0
    assert g[6] == pytest.approx(1.0, abs=1e-15) and g[7] == 1.0 and g[8] == 1.0


def test_gate_values_interior():
    # clip(sigmoid(la/beta) * 1.2 - 0.1, 0, 1) at a few interior points, computed by hand
    for la in (-1.0, -0.3, 0.7, 1.2):
        expected = 1.2 / (1.0 + math.exp(-la / (2 / 3))) - 0.1
        assert _det(la)[0] == pytest.approx(expected, rel=1e-14)


def test_paper_gate_differs_and_agrees_at_unit_temperature():
    # the paper's clip(sigmoid(la) 1.2 - 0.1, 0, 1) is 0 only for la <= log(1/11) = -2.398
    paper = lambda la: min(1.0, max(0.0, 1.2 / (1.0 + math.exp(-la)) - 0.1))  # noqa: E731
    assert paper(-2.3978) > 0.0 and paper(-2.3980) == 0.0
    # at la = -2 the paper keeps the gate although P(z != 0) < 1/2; ours closes it
    assert paper(-2.0) == pytest.approx(0.0430435, abs=1e-7)
    assert _det(-2.0)[0] == 0.0
    assert float(prob_nonzero(torch.tensor(-2.0, dtype=torch.float64), SPEC)) == pytest.approx(
        1.0 / (1.0 + math.exp(-(-2.0 + (2 / 3) * math.log(11)))), rel=1e-14
    )
    # with beta = 1 the two estimators are the same function
    one = GateSpec(beta=1.0)
    for la in np.linspace(-4, 4, 17):
        assert _det(la, one)[0] == pytest.approx(paper(la), abs=1e-15)


def test_deterministic_gate_is_median_of_sampled_gate():
    n = 400_001
    for la in (-3.0, -1.7, -1.5, -0.5, 0.0, 0.8, 1.5, 1.7, 3.0):
        z = _sample(la, n, seed=int(10 * la + 100))
        med = np.median(z)
        # sampling error of the median: the gate's quantiles at 1/2 -/+ 4 sd of the rank
        q = np.quantile(z, [0.5 - 4 * 0.5 / math.sqrt(n), 0.5 + 4 * 0.5 / math.sqrt(n)])
        g = _det(la)[0]
        assert q[0] - 1e-12 <= g <= q[1] + 1e-12, (la, g, med, q)
        if g in (0.0, 1.0):
            assert med == g


def test_prob_nonzero_matches_sampling_and_median_rule():
    n = 200_000
    for la in (-4.0, -2.0, -1.0, 0.0, 2.0):
        z = _sample(la, n, seed=7)
        p = float(prob_nonzero(torch.tensor(la, dtype=torch.float64), SPEC))
        assert abs((z > 0).mean() - p) < 5 * math.sqrt(p * (1 - p) / n) + 1e-12
    la = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    closed = deterministic_gates(la, SPEC) == 0
    assert torch.equal(closed, prob_nonzero(la, SPEC) <= 0.5)


def test_log_alpha_for_inverts_prob_nonzero():
    for p in (0.01, 0.5, 0.95):
        la = SPEC.log_alpha_for(p)
        assert float(prob_nonzero(torch.tensor(la, dtype=torch.float64), SPEC)) == pytest.approx(
            p, rel=1e-12
        )
    with pytest.raises(InvalidProblemError):
        SPEC.log_alpha_for(1.0)


@pytest.mark.parametrize(
    "kwargs", [{"beta": 0.0}, {"beta": -1.0}, {"gamma": 0.1}, {"zeta": 0.9}, {"beta": math.nan}]
)
def test_bad_gate_parameters(kwargs):
    with pytest.raises(InvalidProblemError):
        GateSpec(**kwargs)
