"""``calibopt targets`` and ``calibopt build-matrix`` end to end, and the demo stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from calibopt.cli import main
from calibopt.datasets import synthetic_country
from calibopt.demo.local_area import local_area_demo
from calibopt.matrix import CalibrationMatrix
from calibopt.targets import TargetsDatabase


def run(command: str, **paths) -> int:
    """Run ``calibopt`` with a command line whose {names} are filled from ``paths``."""
    return main(command.format(**{k: str(v) for k, v in paths.items()}).split())


def test_targets_and_build_matrix_commands(tmp_path, capsys):
    f = {
        name: tmp_path / name
        for name in (
            "t.db",
            "country.h5",
            "state.csv",
            "copy.db",
            "m.h5",
            "X.npz",
            "totals.csv",
            "d.csv",
            "x.h5",
            "y.h5",
            "nc.h5",
        )
    }
    p = {k.replace(".", "_"): v for k, v in f.items()}
    assert (
        run(
            "targets synthetic --db {t_db} --size tiny --dataset {country_h5} "
            "--layout policyengine",
            **p,
        )
        == 0
    )
    country = synthetic_country("tiny", seed=0)
    assert len(TargetsDatabase(f["t.db"]).targets()) == len(country.targets)
    assert run("targets overview --db {t_db}", **p) == 0
    assert f"{len(country.targets)} target(s)" in capsys.readouterr().out

    assert run("targets export --db {t_db} --out {state_csv} --geo-levels state", **p) == 0
    exported = pd.read_csv(f["state.csv"])
    assert (exported["geo_level"] == "state").all()
    assert len(exported) == (country.targets["geo_level"] == "state").sum()
    assert run("targets load {state_csv} --db {copy_db}", **p) == 0
    assert run("targets load {state_csv} --db {copy_db}", **p) == 1  # already there
    assert "already exist" in capsys.readouterr().err
    assert run("targets load {state_csv} --db {copy_db} --replace", **p) == 0

    build = "build-matrix --db {t_db} --data {country_h5} "
    assert (
        run(
            build + "--rules synthetic --out {m_h5} --npz {X_npz} --totals {totals_csv} "
            "--initial-weights {d_csv} --structure",
            **p,
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "MATRIX STRUCTURE" in printed and "1,440 columns" in printed
    m = CalibrationMatrix.load(f["m.h5"])
    np.testing.assert_array_equal(m.X @ country.true_weights, m.targets["value"].to_numpy())
    assert (sp.load_npz(f["X.npz"]) != m.X).nnz == 0
    tot = pd.read_csv(f["totals.csv"])
    assert tot["name"].tolist() == m.targets["name"].tolist()
    np.testing.assert_array_equal(pd.read_csv(f["d.csv"])["weight"], m.columns.design_weights(0.01))
    # refuses to overwrite; clear errors for bad input
    assert run(build + "--out {m_h5}", **p) == 1
    assert run(build + "--out {x_h5} --geographic-ids 9999", **p) == 1
    assert run(build + "--out {y_h5} --rules nomodule", **p) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "['9999']" in err and "module:name" in err
    assert (
        run(
            build + "--rules synthetic --geographies 3701,3702,3703 "
            "--variables snap household_count --out {nc_h5}",
            **p,
        )
        == 0
    )
    nc = CalibrationMatrix.load(f["nc.h5"])
    assert nc.columns.geographies.tolist() == [3701, 3702, 3703]
    assert set(nc.targets["variable"]) == {"snap", "household_count"}
    assert set(nc.targets["geographic_id"]) == {"37", "3701", "3702", "3703"}


def test_bad_database_on_the_command_line(tmp_path, capsys):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 100)
    assert run("targets overview --db {bad}", bad=bad) == 1
    assert "not a readable database" in capsys.readouterr().err


def test_uprate_command(tmp_path):
    db = tmp_path / "t.db"
    csv = tmp_path / "t.csv"
    csv.write_text("variable,period,value,constraints\nsnap,2022,100,\n")
    assert run("targets load {csv} --db {db}", csv=csv, db=db) == 0
    assert run("targets uprate --db {db} snap 2022 2024 1.1", db=db) == 0
    assert TargetsDatabase(db).targets(period=2024)["value"].tolist() == [pytest.approx(110.0)]


def test_local_area_demo_stage():
    lines: list[str] = []
    demo = local_area_demo("tiny", out=lines.append)
    assert demo.result.success and demo.result.max_rel_error < 1e-9
    assert (demo.fit["max_rel_error"] < 1e-9).all()
    assert (demo.fit["prior_max_rel_error"] > 1e-3).any()
    u = demo.untargeted
    err_prior = np.abs(u["prior"] / u["truth"] - 1).mean()
    err_cal = np.abs(u["calibrated"] / u["truth"] - 1).mean()
    assert err_cal < 0.5 * err_prior
    text = "\n".join(lines)
    assert "Fit by target group" in text and "district/person_count[age]" in text
    assert "once per state: 3 calls" in text
