"""Bad input gives a CalibrationError subclass whose message names the argument."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import calibopt as co
from calibopt import InvalidProblemError


def small():
    X = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0], [2.0, 3.0, 0.0, 1.0]])
    return X, np.array([10.0, 5.0, 14.0]), np.array([2.0, 3.0, 2.0, 3.0])


def test_valid_problem_roundtrip():
    X, b, d = small()
    p = co.CalibrationProblem(sp.csc_matrix(X), b, initial_weights=d, target_names=["n", "a", "x"])
    assert p.n_targets == 3 and p.n_units == 4 and p.nnz == 9
    np.testing.assert_array_equal(p.X.toarray(), X)
    np.testing.assert_array_equal(p.csc.toarray(), X)
    assert p.target_names == ["n", "a", "x"]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (
            lambda X, b, d: (np.where(X == 2.0, np.nan, X), b, d),
            r"`X` has 1 non-finite entry.*row 2, column 0",
        ),
        (lambda X, b, d: (np.where(X == 3.0, np.inf, X), b, d), r"`X` has 1 non-finite"),
        (
            lambda X, b, d: (X, np.array([10.0, np.nan, 1.0]), d),
            r"`targets` has non-finite.*target_1",
        ),
        (
            lambda X, b, d: (X, b, np.array([1.0, np.inf, 1.0, 1.0])),
            r"`initial_weights` has non-finite",
        ),
        (lambda X, b, d: (X, b[:2], d), r"`targets` has length 2 but `X` has 3 rows"),
        (lambda X, b, d: (X, b, d[:3]), r"`initial_weights` has length 3 but `X` has 4 columns"),
        (
            lambda X, b, d: (X, b, np.array([1.0, -2.0, 1.0, 1.0])),
            r"`initial_weights` must be >= 0.*unit\(s\) \[1\]",
        ),
        (lambda X, b, d: (np.zeros((0, 4)), np.zeros(0), d), r"`X` is empty"),
        (lambda X, b, d: (X.astype(object), b, d), r"`X` must be numeric"),
        (lambda X, b, d: (X[None], b, d), r"two-dimensional"),
    ],
)
def test_bad_arrays(mutate, match):
    X, b, d = mutate(*small())
    with pytest.raises(InvalidProblemError, match=match):
        co.CalibrationProblem(X, b, initial_weights=d)


def test_non_finite_in_sparse_matrix_is_located():
    X, b, d = small()
    S = sp.csr_matrix(X)
    S.data[5] = np.nan  # row 1 holds columns 0 and 2: entries 4 and 5
    with pytest.raises(InvalidProblemError, match=r"row 1, column 2"):
        co.CalibrationProblem(S, b, initial_weights=d)


def test_transposed_matrix_hint():
    X, b, d = small()
    with pytest.raises(InvalidProblemError, match="Transpose X"):
        co.CalibrationProblem(X.T, b, initial_weights=d)


def test_dataframe_with_text_column():
    X, b, d = small()
    df = pd.DataFrame(X.T, columns=["n", "a", "x"]).T
    df[1] = ["1", "0", "3"]  # a text column (unit 1)
    with pytest.raises(InvalidProblemError, match="non-numeric column"):
        co.CalibrationProblem(df, b, initial_weights=d)


def test_bounds_validation():
    X, b, d = small()
    with pytest.raises(InvalidProblemError, match=r"`bounds`: lower > upper.*unit 2"):
        co.CalibrationProblem(X, b, initial_weights=d, bounds=([0, 0, 5, 0], [9, 9, 4, 9]))
    with pytest.raises(InvalidProblemError, match=r"`ratio_bounds`: lower > upper"):
        co.CalibrationProblem(X, b, initial_weights=d, ratio_bounds=(2.0, 0.5))
    with pytest.raises(InvalidProblemError, match=r"must be a pair"):
        co.CalibrationProblem(X, b, initial_weights=d, bounds=5)
    with pytest.raises(InvalidProblemError, match=r"NaN"):
        co.CalibrationProblem(X, b, initial_weights=d, bounds=(np.nan, None))
    with pytest.raises(InvalidProblemError, match=r"`tolerance` must be finite and >= 0"):
        co.CalibrationProblem(X, b, initial_weights=d, tolerance=-0.1)


def test_names_and_groups():
    X, b, d = small()
    with pytest.raises(InvalidProblemError, match=r"must be unique; duplicated: \['a'\]"):
        co.CalibrationProblem(X, b, initial_weights=d, target_names=["a", "b", "a"])
    with pytest.raises(InvalidProblemError, match=r"`target_names` has 2 names but there are 3"):
        co.CalibrationProblem(X, b, initial_weights=d, target_names=["a", "b"])
    with pytest.raises(InvalidProblemError, match=r"`groups` has length 2"):
        co.CalibrationProblem(X, b, initial_weights=d, groups=["g", "g"])


def test_method_solver_and_option_errors():
    X, b, d = small()
    p = co.CalibrationProblem(X, b, initial_weights=d)
    with pytest.raises(InvalidProblemError, match=r"unknown method 'rakign'; available:.*raking"):
        co.calibrate(p, method="rakign")
    with pytest.raises(InvalidProblemError, match=r"unknown option\(s\) \['epsilonn'\].*epsilon"):
        co.calibrate(p, method="raking", epsilonn=1e-9)
    with pytest.raises(co.SolverError, match=r"not an installed cvxpy solver"):
        co.calibrate(p, method="raking", solver="GUROBI_NOT_HERE")
    with pytest.raises(co.SolverError, match=r"exponential-cone models"):
        co.calibrate(p, method="raking", solver="OSQP")
    with pytest.raises(InvalidProblemError, match=r"logit distance needs finite bounds"):
        co.calibrate(p, method="logit")
    with pytest.raises(InvalidProblemError, match=r"'truncated' needs finite bounds"):
        co.calibrate(p.with_options(bounds=None), method="truncated")
    with pytest.raises(InvalidProblemError, match=r"`penalty` must be > 0"):
        co.calibrate(p, method="linear", penalty=-1.0)
    with pytest.raises(InvalidProblemError, match=r"either a tolerance or `penalty`"):
        co.calibrate(p.with_options(tolerance=0.01), method="linear", penalty=10.0)
    with pytest.raises(InvalidProblemError, match=r"must be a calibopt.CalibrationProblem"):
        co.calibrate(X, method="linear")
    with pytest.raises(InvalidProblemError, match=r"`epsilon` must be > 0"):
        co.calibrate(p, method="linear", epsilon=0)


def test_zero_design_weight_with_positive_lower_bound():
    X, b, d = small()
    d = d.copy()
    d[1] = 0.0
    p = co.CalibrationProblem(X, b, initial_weights=d, bounds=([0, 1, 0, 0], None))
    with pytest.raises(InvalidProblemError, match=r"unit\(s\) \[1\] have initial weight 0"):
        co.calibrate(p, method="linear")


class TestMargins:
    data = pd.DataFrame(
        {
            "sex": ["F", "M", "F", "M", "F"],
            "age": [1, 2, 3, 1, 2],
            "income": [10.0, 20.0, 30.0, 40.0, 50.0],
            "pw": [2.0, 2.0, 3.0, 3.0, 4.0],
        }
    )

    def test_matrix_built_exactly(self):
        margins = {"sex": {"F": 8, "M": 6}, "age": {1: 5, 2: 6, 3: 3}, "income": 400.0}
        p = co.problem_from_margins(self.data, margins, weights="pw", population=14)
        assert p.target_names == [
            "(population)",
            "sex=F",
            "sex=M",
            "age=1",
            "age=2",
            "age=3",
            "income",
        ]
        assert list(p.groups) == ["(population)", "sex", "sex", "age", "age", "age", "income"]
        expected = np.array(
            [
                [1, 1, 1, 1, 1],
                [1, 0, 1, 0, 1],
                [0, 1, 0, 1, 0],
                [1, 0, 0, 1, 0],
                [0, 1, 0, 0, 1],
                [0, 0, 1, 0, 0],
                [10, 20, 30, 40, 50],
            ],
            dtype=float,
        )
        np.testing.assert_array_equal(p.X.toarray(), expected)
        np.testing.assert_array_equal(p.targets, [14, 8, 6, 5, 6, 3, 400])
        np.testing.assert_array_equal(p.initial_weights, self.data["pw"])

    def test_dataframe_margins_equal_dict_margins(self):
        tidy = pd.DataFrame(
            {
                "variable": ["sex", "sex", "age", "age", "age", "income"],
                "level": ["F", "M", 1, 2, 3, None],
                "total": [8, 6, 5, 6, 3, 400.0],
            }
        )
        a = co.problem_from_margins(self.data, tidy, weights="pw")
        b = co.problem_from_margins(
            self.data,
            {"sex": {"F": 8, "M": 6}, "age": {1: 5, 2: 6, 3: 3}, "income": 400.0},
            weights="pw",
        )
        assert (a.X != b.X).nnz == 0 and a.target_names == b.target_names

    def test_margin_level_absent_from_sample(self):
        with pytest.raises(
            InvalidProblemError, match=r"level\(s\) \['X'\] that no unit in the sample has"
        ):
            co.problem_from_margins(self.data, {"sex": {"F": 8, "M": 6, "X": 1}})

    def test_sample_level_absent_from_margins(self):
        with pytest.raises(
            InvalidProblemError, match=r"has level\(s\) \['M'\] with no population total"
        ):
            co.problem_from_margins(self.data, {"sex": {"F": 8}})

    def test_unknown_variable_and_non_numeric_continuous(self):
        with pytest.raises(InvalidProblemError, match=r"names variable\(s\) \['region'\]"):
            co.problem_from_margins(self.data, {"region": {"N": 3}})
        with pytest.raises(InvalidProblemError, match=r"`data\['sex'\]` is not numeric"):
            co.problem_from_margins(self.data, {"sex": 10.0})
        with pytest.raises(InvalidProblemError, match=r"`weights` column 'wt' is not in `data`"):
            co.problem_from_margins(self.data, {"income": 10.0}, weights="wt")

    def test_missing_values(self):
        data = self.data.assign(sex=["F", None, "F", "M", "F"])
        with pytest.raises(InvalidProblemError, match=r"missing value\(s\), first at row 1"):
            co.problem_from_margins(data, {"sex": {"F": 8, "M": 6}})


def test_effective_bounds_closed_form():
    # absolute bounds (1, u), ratio bounds (0.5, 3); a unit with d = 0 keeps w = 0 (g = 1)
    d = np.array([0.0, 1.0, 2.0, 4.0])
    p = co.CalibrationProblem(
        np.ones((1, 4)), [7.0], initial_weights=d, bounds=(1.0, [5.0, 5.0, 5.0, 3.0]),
        ratio_bounds=(0.5, 3.0),
    )  # fmt: skip
    lo, hi = p.weight_bounds()
    np.testing.assert_array_equal(lo, [1.0, 1.0, 1.0, 2.0])
    np.testing.assert_array_equal(hi, [5.0, 3.0, 5.0, 3.0])
    glo, ghi = p.g_bounds()
    np.testing.assert_array_equal(glo, [1.0, 1.0, 0.5, 0.5])
    np.testing.assert_array_equal(ghi, [1.0, 3.0, 2.5, 0.75])
    # scalar bounds: the returned arrays are the caller's to change, the problem's are not
    q = co.CalibrationProblem(np.ones((1, 3)), [3.0], bounds=(0.0, None))
    lo, hi = q.weight_bounds()
    lo[:] = 9.0
    np.testing.assert_array_equal(q.weight_bounds()[0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(hi, [np.inf] * 3)
    assert not q.lower.flags.writeable
