"""Study instances from real public data: R survey's api schools and the CPS to North
Carolina's published targets (issue 13, item 2, with the data of issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

import calibopt as co
from calibopt import status as st
from calibopt.studies import make_instance, problem_digest


def test_api_instance_is_a_stratified_sample_calibrated_to_the_population(api_data):
    pop = api_data.apipop
    inst = make_instance("api", "tiny", seed=0)
    p = inst.problem
    assert p.X.shape == (10, 200) and inst.provenance["schools"] == 200
    # design weights N_h / n_h: each school type's weights add up to its population count
    rows = {name: j for j, name in enumerate(p.target_names)}
    d = p.initial_weights
    for stype, count in pop["stype"].value_counts().items():
        j = next(j for name, j in rows.items() if name.startswith("stype") and stype in name)
        assert p.X[j] @ d == pytest.approx(count, rel=1e-12)
        assert p.targets[j] == count
    assert p.targets[rows["api99"]] == pop["api99"].sum()
    r = co.calibrate(p, method="raking")
    assert r.status == st.OPTIMAL and r.max_rel_error < 1e-12
    g = r.weights / d
    assert g.min() >= 0.5 - 1e-12 and g.max() <= 3.0 + 1e-12
    # seeded: the same seed gives the same problem byte for byte, another seed another one
    same = problem_digest(make_instance("api", "tiny", seed=0).problem)
    assert same == problem_digest(p)
    assert problem_digest(make_instance("api", "tiny", seed=1).problem) != same


def test_cps_state_instance_meets_north_carolinas_targets(cps_2023):
    inst = make_instance("cps-state", "tiny", seed=3)
    p = inst.problem
    names = p.target_names
    assert len(names) == 37 and all(n.startswith("37/") for n in names)
    assert not any("adjusted_gross_income<1;" in n for n in names)  # out of the CPS's reach
    units = cps_2023[0]
    agi = units.table("household")  # unit_ids are positions in the CPS
    assert p.n_units == inst.provenance["tax_units"] and p.unit_ids.max() < len(agi)
    # the design weights sum to the state's population target
    pop = names.index("37/person_count")
    assert p.X[[pop]] @ p.initial_weights == pytest.approx(p.targets[pop], rel=1e-12)
    # every tax unit with AGI >= $1M is in the sample (a certainty stratum)
    top = names.index("37/tax_unit_count|adjusted_gross_income>=1e+06;is_filer==1")
    full = make_instance("cps-state", "large", seed=0).problem
    assert (p.X[[top]] != 0).sum() == (full.X[[top]] != 0).sum() > 100
    r = co.calibrate(p, method="truncated")
    assert r.status == st.OPTIMAL and r.max_rel_error < 1e-12
    assert np.max(r.weights / p.initial_weights) <= 10 + 1e-9


def test_public_instances_in_a_study(api_data):
    study = co.compare(
        "api:tiny", methods=["linear", "raking", "l0-mip"], executor="in-process", time_limit=30
    )
    row = study.set_index("method")
    assert row.loc["linear", "status"] == row.loc["raking", "status"] == st.OPTIMAL
    assert row.loc["l0-mip", "status"] in (st.OPTIMAL, st.WITHIN_TOLERANCE)
    assert row.loc["l0-mip", "nnz"] < 200
