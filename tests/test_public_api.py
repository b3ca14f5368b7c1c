"""R survey's api data through calibopt's loader: fingerprints, R's calibrations reproduced, and a
sparse method on a real sample.

References: tests/references/api (made by make_references.R there with R 4.2.2 and survey 4.1.1
from R's own data(api); see meta.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import calibopt as co

REFS = Path(__file__).parent / "references" / "api"
META = json.loads((REFS / "meta.json").read_text())
# case -> (method, ratio bounds, margins)
CASES = {
    "strat_raking": ("raking", None, ("stype", "api99")),
    "clus1_logit": ("logit", (0.7, 1.7), ("stype", "api99")),
    "clus2_linear": ("linear", None, ("stype", "api99")),
    "srs_rake": ("ipf", None, ("stype", "sch.wide")),
}


def margins(pop: pd.DataFrame, names: tuple[str, ...]) -> dict:
    out = {}
    for name in names:
        col = pop[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            out[name] = col.value_counts().astype(float).to_dict()
        else:
            out[name] = float(col.astype(float).sum())
    return out


def test_api_fingerprints(api_data):
    pop = api_data.apipop
    assert pop.shape == (6194, 37)
    assert {k: v.shape for k, v in api_data.frames().items() if k != "apipop"} == {
        "apisrs": (200, 39),
        "apistrat": (200, 39),
        "apiclus1": (183, 39),
        "apiclus2": (126, 40),
    }
    # the population totals R's examples use, as R's meta.json recorded them
    assert pop["stype"].value_counts().to_dict() == META["pop_types"]
    assert pop["sch.wide"].value_counts().to_dict() == META["pop_schwide"]
    assert int(pop["api99"].sum()) == META["totals"]["api99"]
    assert int(pop["enroll"].isna().sum()) == 37
    # sums of the design weights as R gives them (sum(apiclus2$pw) etc.; float32 storage)
    sums = {
        "apisrs": 6194.0,
        "apistrat": 6193.999958,
        "apiclus1": 6194.000324,
        "apiclus2": 5128.675,
    }
    for name, total in sums.items():
        assert getattr(api_data, name)["pw"].sum() == pytest.approx(total, abs=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_reproduces_r_calibration(api_data, case):
    method, ratio_bounds, names = CASES[case]
    sample = getattr(api_data, META["cases"][case]["sample"])
    ref = pd.read_csv(REFS / f"{case}.csv", dtype={"cds": str})
    assert (ref["cds"].to_numpy() == sample["cds"].to_numpy()).all()
    problem = co.problem_from_margins(
        sample, margins(api_data.apipop, names), weights="pw", ratio_bounds=ratio_bounds
    )
    result = co.calibrate(problem, method=method)
    assert result.status == co.OPTIMAL
    # R stops at max|T - X'w| / (1 + |T|) < 1e-12 (rake: its own IPF rule), we at 1e-10
    np.testing.assert_allclose(result.weights, ref["w"].to_numpy(), rtol=1e-9)
    if ratio_bounds is not None:
        g = result.weights / sample["pw"].to_numpy()
        assert g.min() >= ratio_bounds[0] - 1e-12 and g.max() <= ratio_bounds[1] + 1e-12
        assert g.max() == pytest.approx(ratio_bounds[1], abs=0.05)  # the bound matters here
    api00 = float(result.weights @ sample["api00"].to_numpy(dtype=float))
    assert api00 == pytest.approx(float(META["cases"][case]["api00_total"]), rel=1e-9)


def test_raking_equals_ipf_on_two_margins(api_data):
    """R's rake (IPF) and calibopt's dual-Newton raking reach the same weights."""
    sample = api_data.apisrs
    problem = co.problem_from_margins(
        sample, margins(api_data.apipop, ("stype", "sch.wide")), weights="pw"
    )
    ref = pd.read_csv(REFS / "srs_rake.csv")["w"].to_numpy()
    np.testing.assert_allclose(co.calibrate(problem, method="raking").weights, ref, rtol=1e-9)


def test_fewest_schools_for_the_population_margins(api_data):
    """Exact L0 on a real sample: the fewest apistrat schools whose weights (g <= 30)
    reproduce the school-type counts and the api99 total within 0.5%."""
    sample = api_data.apistrat
    problem = co.problem_from_margins(
        sample,
        margins(api_data.apipop, ("stype", "api99")),
        weights="pw",
        ratio_bounds=(0.0, 30.0),
        tolerance=0.005,
    )
    result = co.calibrate(problem, method="l0-mip", time_limit=60)
    row = result.info["blocks"].iloc[0]
    assert bool(row["proven_optimal"])
    assert result.max_rel_error <= 0.005 * (1 + 1e-9)
    g = result.weights / sample["pw"].to_numpy()
    assert g.max() <= 30 + 1e-9
    kept = sample.loc[result.weights > 0, "stype"].value_counts()
    # the H and M strata need at least ceil(count / (30 * pw)) schools each
    pw = sample.groupby("stype", observed=True)["pw"].first()
    for stype, count in META["pop_types"].items():
        assert kept[stype] >= np.ceil(count * 0.995 / (30 * pw[stype]))
    assert result.nnz == kept.sum()


def test_readme_first_example(api_data):
    """The README's first example: calibration brings the apistrat estimate of the population
    api00 total (known from apipop: 4,117,230) from -0.35% to -0.013%."""
    pop = api_data.apipop
    margins = {"stype": pop["stype"].value_counts().to_dict(), "api99": pop["api99"].sum()}
    problem = co.problem_from_margins(
        api_data.apistrat, margins, weights="pw", ratio_bounds=(0.7, 1.7)
    )
    result = co.calibrate(problem, method="logit")
    api00 = api_data.apistrat["api00"].to_numpy(dtype=float)
    assert int(pop["api00"].sum()) == 4_117_230
    assert float(api_data.apistrat["pw"] @ api00) == pytest.approx(4_102_207.90, abs=0.01)
    assert float(result.weights @ api00) == pytest.approx(4_116_707.19, abs=0.01)
    assert result.g.min() == pytest.approx(0.964272, abs=1e-6)
    assert result.g.max() == pytest.approx(1.041854, abs=1e-6)
    sparse = co.calibrate(
        problem.with_options(ratio_bounds=(0, 30), tolerance=0.005), method="l0-mip"
    )
    assert sparse.nnz == 8 and bool(sparse.info["blocks"]["proven_optimal"].iloc[0])
