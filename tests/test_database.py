"""The targets database on SQLite and PostgreSQL (the same tests on both backends)."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from calibopt.datasets import synthetic_country
from calibopt.errors import InvalidProblemError
from calibopt.matrix import MatrixBuilder
from calibopt.targets import TargetFilter, TargetsDatabase, overview_select
from calibopt.targets.schema import strata, stratum_constraints, targets


def frame(rows):
    return pd.DataFrame(rows, columns=["variable", "period", "value", "constraints"])


BASIC = [
    ("household_count", 2024, 1_000.0, ""),
    ("household_count", 2024, 600.0, "state_fips == 37"),
    ("household_count", 2024, 400.0, "state_fips == 2"),
    ("household_count", 2024, 350.0, "congressional_district_geoid == 3701"),
    ("person_count", 2024, 75.5, "congressional_district_geoid == 3701; age >= 0; age < 5"),
    ("snap", 2024, 123_456_789.125, "state_fips == 37; snap > 0"),
]


def test_round_trip_overview_and_hierarchy(engine):
    db = TargetsDatabase.create(engine)
    assert db.add_targets(frame(BASIC)) == 6
    t = db.targets(period=2024)
    assert len(t) == 6
    by_name = {(r.variable, r.geographic_id, r.domain_variable): r for r in t.itertuples()}
    snap = by_name[("snap", "37", "snap")]
    assert snap.value == 123_456_789.125 and snap.geo_level == "state"
    kids = by_name[("person_count", "3701", "age")]
    assert kids.geo_level == "district" and kids.value == 75.5
    assert kids.constraints == (
        ("age", ">=", "0"),
        ("age", "<", "5"),
        ("congressional_district_geoid", "==", "3701"),
    )
    assert by_name[("household_count", "US", "")].geo_level == "national"
    # levels sort national, state, district
    assert t["geo_level"].tolist()[:1] == ["national"]
    assert t["geo_level"].tolist()[-2:] == ["district", "district"]
    # strata: domain stratum -> its geography -> state -> nation; children repeat the
    # parent's constraints
    with engine.connect() as conn:
        parents = dict(
            conn.execute(sa.select(strata.c.stratum_id, strata.c.parent_stratum_id)).all()
        )
        cons = pd.DataFrame(
            conn.execute(sa.select(stratum_constraints)).fetchall(),
            columns=[c.name for c in stratum_constraints.columns],
        )
    sets = (
        cons.groupby("stratum_id")
        .apply(
            lambda g: frozenset(zip(g.constraint_variable, g.operation, g.value, strict=True)),
            include_groups=False,
        )
        .to_dict()
    )
    kid_stratum = int(kids.stratum_id)
    district = parents[kid_stratum]
    state = parents[district]
    nation = parents[state]
    assert parents[nation] is None and nation not in sets
    assert sets[district] == {("congressional_district_geoid", "==", "3701")}
    assert sets[state] == {("state_fips", "==", "37")}
    assert sets[district] <= sets[kid_stratum]
    # the view and the expression agree
    view = sa.table(
        "target_overview",
        sa.column("target_id"),
        sa.column("geo_level"),
        sa.column("geographic_id"),
    )
    with engine.connect() as conn:
        from_view = sorted(
            conn.execute(
                sa.select(view.c.target_id, view.c.geo_level, view.c.geographic_id)
            ).fetchall()
        )
        ov = overview_select().subquery()
        from_expr = sorted(
            conn.execute(sa.select(ov.c.target_id, ov.c.geo_level, ov.c.geographic_id)).fetchall()
        )
    assert from_view == from_expr and len(from_view) == 6


def test_duplicates_and_replace(engine):
    db = TargetsDatabase.create(engine)
    db.add_targets(frame(BASIC))
    with pytest.raises(InvalidProblemError, match="already exist"):
        db.add_targets(frame(BASIC[:2]))
    db.add_targets(frame([("household_count", 2024, 999.0, "")]), replace=True)
    t = db.targets(period=2024, filter={"geo_levels": ["national"]})
    assert t["value"].tolist() == [999.0] and len(db.targets()) == 6
    with pytest.raises(InvalidProblemError, match="duplicate targets: rows 0 and 1"):
        db.add_targets(
            frame(
                [
                    ("x", 2024, 1.0, "age < 5; state_fips == 2"),
                    ("x", 2024, 2.0, "state_fips==2;age<5"),
                ]
            )
        )


def test_filters_and_sql_text_is_data(engine):
    db = TargetsDatabase.create(engine)
    db.add_targets(frame([*BASIC, ("snap'; DROP TABLE targets; --", 2024, 7.0, "")]))
    f = TargetFilter(domain_variables=["snap"])
    assert db.targets(f)["variable"].tolist() == ["snap"]
    assert db.targets({"domain_variables": [""]})["domain_variable"].eq("").all()
    assert len(db.targets({"geo_levels": "district"})) == 2
    assert db.targets({"geographic_ids": [37]})["variable"].tolist() == ["household_count", "snap"]
    assert len(db.targets({"variables": ["household_count"], "geo_levels": ["state"]})) == 2
    # SQL text in a filter value is a value: it matches only the row that holds that text
    evil = db.targets({"variables": ["snap'; DROP TABLE targets; --"]})
    assert evil["value"].tolist() == [7.0]
    assert db.targets({"variables": ["x' OR '1'='1"]}).empty
    assert db.targets({"geographic_ids": ["37' OR 1=1 --"]}).empty
    assert db.targets({"geo_levels": ["state"], "variables": ["') OR 1=1; --"]}).empty
    assert len(db.targets()) == 7
    assert {"strata", "targets", "stratum_constraints"} <= set(sa.inspect(engine).get_table_names())
    with pytest.raises(InvalidProblemError, match="geo_levels"):
        TargetFilter(geo_levels=["county"])
    with pytest.raises(InvalidProblemError, match="unknown key"):
        db.targets({"variable": ["snap"]})


def test_uprating_chains_and_missing_factor(engine):
    db = TargetsDatabase.create(engine)
    db.add_targets(
        frame(
            [
                ("snap", 2022, 100.0, ""),
                ("snap", 2021, 90.0, "state_fips == 37"),
                ("person_count", 2022, 50.0, ""),
                ("person_count", 2024, 55.0, ""),
                ("person_count", 2026, 60.0, ""),
            ]
        )
    )
    with pytest.raises(InvalidProblemError, match=r"\('snap', 2021, 2024\)"):
        db.targets(period=2024)
    db.add_uprating("snap", 2022, 2023, 1.05)
    db.add_uprating("snap", 2023, 2024, 1.03)
    db.add_uprating("snap", 2021, 2024, 1.2)
    t = db.targets(period=2024).set_index(["variable", "geographic_id"])
    assert t.loc[("snap", "US"), "value"] == 100.0 * 1.05 * 1.03
    assert t.loc[("snap", "US"), "original_value"] == 100.0
    assert t.loc[("snap", "37"), "value"] == 90.0 * 1.2
    # the latest period at or before the one asked is used; later ones are ignored
    assert t.loc[("person_count", "US"), "value"] == 55.0
    assert t.loc[("person_count", "US"), "uprating_factor"] == 1.0
    assert db.targets(period=2026, filter={"variables": "person_count"})["value"].tolist() == [60.0]
    with pytest.raises(InvalidProblemError, match="> 0"):
        db.add_uprating("snap", 2022, 2023, -1.0)


def test_active_reform_and_tolerance(engine):
    db = TargetsDatabase.create(engine)
    rows = pd.DataFrame(
        {
            "variable": ["a", "a", "b"],
            "period": [2024] * 3,
            "value": [1.0, 2.0, 3.0],
            "constraints": ["", "", ""],
            "reform_id": [0, 1, 0],
            "active": [True, True, False],
            "tolerance": [0.05, None, None],
            "source": ["IRS", None, "x"],
        }
    )
    db.add_targets(rows)
    t = db.targets(period=2024)
    assert t["variable"].tolist() == ["a"] and t["value"].tolist() == [1.0]
    assert t["tolerance"].tolist() == [0.05] and t["source"].tolist() == ["IRS"]
    assert db.targets(period=2024, reform_id=1)["value"].tolist() == [2.0]
    assert len(db.targets(period=2024, active_only=False)) == 2


def test_csv_round_trip(engine, tmp_path):
    db = TargetsDatabase.create(engine)
    db.add_targets(frame(BASIC))
    db.add_targets(
        pd.DataFrame(
            {
                "variable": ["tax_unit_count"],
                "period": [2024],
                "value": [3.0],
                "constraints": ["filing_status in joint,single"],
                "tolerance": [0.025],
            }
        )
    )
    path = tmp_path / "t.csv"
    assert db.to_csv(path) == 7
    other = TargetsDatabase.create(f"sqlite:///{tmp_path / 'copy.db'}")
    assert other.load_csv(path) == 7
    cols = [
        "variable",
        "period",
        "value",
        "tolerance",
        "geo_level",
        "geographic_id",
        "domain_variable",
        "constraints",
    ]
    a = db.targets().sort_values(["variable", "value"])[cols].reset_index(drop=True)
    b = other.targets().sort_values(["variable", "value"])[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(InvalidProblemError, match="already exists"):
        db.to_csv(path)


def test_bad_csv_rows(tmp_path):
    db = TargetsDatabase.create(f"sqlite:///{tmp_path / 'db.sqlite'}")
    bad = tmp_path / "bad.csv"
    bad.write_text("variable,period,value,constraints\nsnap,2024,1,age =~ 5\n")
    with pytest.raises(InvalidProblemError, match="cannot read the constraint"):
        db.load_csv(bad)
    bad.write_text("variable,period,value,constraints\nsnap,2024,abc,\n")
    with pytest.raises(InvalidProblemError, match="not a number"):
        db.load_csv(bad)
    bad.write_text("variable,value\nsnap,1\n")
    with pytest.raises(InvalidProblemError, match="period"):
        db.load_csv(bad)
    bad.write_text("variable,period,value,constraints\nsnap,2024,1,state_fips > 3\n")
    with pytest.raises(InvalidProblemError, match="must use '=='"):
        db.load_csv(bad)
    bad.write_text(
        "variable,period,value,constraints\nsnap,2024,1,"
        "state_fips == 37; congressional_district_geoid == 201\n"
    )
    with pytest.raises(InvalidProblemError, match="not in state 37"):
        db.load_csv(bad)
    assert db.targets().empty


def test_corrupt_empty_and_missing_files(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(InvalidProblemError, match="not a readable database"):
        TargetsDatabase(junk)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(InvalidProblemError, match="the database is empty"):
        TargetsDatabase(empty)
    with pytest.raises(InvalidProblemError, match="does not exist"):
        TargetsDatabase(tmp_path / "nope.db")
    with pytest.raises(InvalidProblemError, match="does not exist"):
        TargetsDatabase(f"sqlite:///{tmp_path / 'nope2.db'}")
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "nope2.db").exists()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE people (id INTEGER)")
    with pytest.raises(InvalidProblemError, match="no 'strata'"):
        TargetsDatabase(other)


# ------------------------------------------------------------------ the users' own databases
USERS_DDL = """
CREATE TABLE strata (
    stratum_id INTEGER PRIMARY KEY,
    definition_hash VARCHAR(64) NOT NULL,
    parent_stratum_id INTEGER REFERENCES strata(stratum_id),
    notes VARCHAR
);
CREATE TABLE stratum_constraints (
    stratum_id INTEGER NOT NULL REFERENCES strata(stratum_id),
    constraint_variable VARCHAR NOT NULL,
    operation VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    notes VARCHAR,
    PRIMARY KEY (stratum_id, constraint_variable, operation)
);
CREATE TABLE targets (
    target_id INTEGER PRIMARY KEY,
    variable VARCHAR NOT NULL,
    period INTEGER NOT NULL,
    stratum_id INTEGER NOT NULL REFERENCES strata(stratum_id),
    reform_id INTEGER NOT NULL,
    value FLOAT,
    active BOOLEAN NOT NULL,
    tolerance FLOAT,
    source VARCHAR,
    notes VARCHAR
);
CREATE VIEW target_overview AS SELECT t.target_id, t.variable FROM targets t;
"""


def users_database(path, country, *, extra_sql=""):
    """A SQLite file with the users' schema (raw DDL), filled with the country's targets."""
    conn = sqlite3.connect(path)
    conn.executescript(USERS_DDL + extra_sql)
    sid = 0
    ids = {}
    for t in country.targets.itertuples():
        key = t.constraints
        if key not in ids:
            sid += 1
            ids[key] = sid
            conn.execute("INSERT INTO strata VALUES (?, ?, NULL, NULL)", (sid, f"h{sid}"))
            conn.executemany(
                "INSERT INTO stratum_constraints VALUES (?, ?, ?, ?, NULL)",
                [(sid, v, op, val) for v, op, val in key],
            )
        conn.execute(
            "INSERT INTO targets VALUES (NULL, ?, ?, ?, 0, ?, 1, NULL, 'census', NULL)",
            (t.variable, t.period, ids[key], t.value),
        )
    conn.commit()
    return conn


def test_users_sqlite_database_builds_the_same_matrix(tmp_path):
    country = synthetic_country("tiny", seed=4)
    path = tmp_path / "policy_data.db"
    users_database(path, country).close()
    db = TargetsDatabase(path)
    assert not db.has_uprating
    t = db.targets(period=2024)
    assert len(t) == len(country.targets)
    m = MatrixBuilder(db, country.dataset, country.geographies, rules=country.rules).build()
    np.testing.assert_array_equal(m.X @ country.true_weights, m.targets["value"].to_numpy())
    ours = MatrixBuilder(
        country.targets_database(), country.dataset, country.geographies, rules=country.rules
    ).build()
    a = ours.targets.set_index("name")
    np.testing.assert_array_equal(a.loc[m.targets["name"], "value"], m.targets["value"])
    assert (m.X != ours.X[[a.index.get_loc(n) for n in m.targets["name"]]]).nnz == 0


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "INSERT INTO targets VALUES (NULL, 'snap', 2024, 9999, 0, 5.0, 1, NULL, NULL, NULL)",
            "stratum that does not exist",
        ),
        (
            "INSERT INTO targets SELECT NULL, variable, period, stratum_id, reform_id, "
            "value + 1, active, tolerance, source, notes FROM targets WHERE target_id = 3",
            "duplicate target rows",
        ),
        (
            "UPDATE stratum_constraints SET operation = '=~' WHERE constraint_variable "
            "= 'age' AND operation = '<'",
            "unknown operation '=~'",
        ),
    ],
)
def test_users_database_orphans_duplicates_and_bad_operations(tmp_path, sql, message):
    country = synthetic_country("tiny", seed=4)
    conn = users_database(tmp_path / "users.db", country)
    conn.execute(sql)
    conn.commit()
    conn.close()
    with pytest.raises(InvalidProblemError, match=message):
        TargetsDatabase(tmp_path / "users.db").targets(period=2024)


def test_synthetic_targets_through_each_backend(engine):
    country = synthetic_country("tiny", seed=2)
    db = TargetsDatabase.create(engine)
    country.write_targets(db)
    m = MatrixBuilder(db, country.dataset, country.geographies, rules=country.rules).build()
    np.testing.assert_array_equal(m.X @ country.true_weights, m.targets["value"].to_numpy())
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(targets)).scalar_one()
    assert n == len(country.targets) == len(m.targets)


# ------------------------------------------------------------------ tolerance: one unit
def test_users_percent_tolerance_reads_as_a_fraction(tmp_path):
    """The users' schema stores a percentage: their 5 is calibopt's 0.05, in ``targets()``,
    in the exported CSV and in the problem; the stored value is left as it was."""
    country = synthetic_country("tiny", seed=4)
    path = tmp_path / "users.db"
    conn = users_database(path, country)
    conn.execute("UPDATE targets SET tolerance = 5 WHERE variable = 'household_count'")
    conn.commit()
    conn.close()
    db = TargetsDatabase(path)
    t = db.targets(period=2024)
    hc = t["variable"] == "household_count"
    n_hc = int((country.targets["variable"] == "household_count").sum())
    assert hc.sum() == n_hc == 20  # nation, 3 states, 6 districts; all and with SNAP
    assert t.loc[hc, "tolerance"].tolist() == [0.05] * n_hc
    assert t.loc[~hc, "tolerance"].isna().all()
    m = MatrixBuilder(db, country.dataset, country.geographies, rules=country.rules).build()
    p = m.to_problem(default_tolerance=0.001)
    in_hc = (m.targets["variable"] == "household_count").to_numpy()
    assert in_hc.sum() == n_hc
    assert np.all(p.tolerance[in_hc] == 0.05) and np.all(p.tolerance[~in_hc] == 0.001)
    lo, hi = p.target_bands()
    np.testing.assert_allclose(hi[in_hc] - lo[in_hc], 0.1 * p.targets[in_hc], rtol=1e-14)
    assert db.to_csv(tmp_path / "t.csv") == len(t)
    csv = pd.read_csv(tmp_path / "t.csv")
    assert "tolerance" not in csv.columns
    exported = csv.loc[csv["variable"] == "household_count", "tolerance_fraction"]
    assert exported.tolist() == [0.05] * n_hc
    db.close()
    with sqlite3.connect(path) as raw:
        stored = raw.execute("SELECT DISTINCT tolerance FROM targets ORDER BY 1").fetchall()
    assert stored == [(None,), (5.0,)]


def test_tolerance_is_stored_as_the_users_percentage(engine):
    db = TargetsDatabase.create(engine)
    db.add_targets(
        pd.DataFrame(
            {
                "variable": ["a", "b", "c"],
                "period": [2024] * 3,
                "value": [1.0, 2.0, 3.0],
                "constraints": ["", "", ""],
                "tolerance": [0.05, 0.001, None],
            }
        )
    )
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT variable, tolerance FROM targets ORDER BY 1")).all()
        view = conn.execute(
            sa.text("SELECT tolerance FROM target_overview WHERE variable = 'a'")
        ).scalar_one()
    assert [tuple(r) for r in stored] == [("a", 5.0), ("b", 0.1), ("c", None)]
    assert view == 5.0  # the users' view shows their unit
    back = db.targets().set_index("variable")["tolerance"]
    assert back["a"] == 0.05 and back["b"] == 0.001 and np.isnan(back["c"])


def test_tolerances_are_fractions_on_the_way_in(tmp_path):
    db = TargetsDatabase.create("sqlite://")
    rows = pd.DataFrame(
        {"variable": ["a"], "period": [2024], "value": [1.0], "constraints": [""], "tolerance": [5]}
    )
    with pytest.raises(InvalidProblemError, match=r"row 0 \(a\): tolerance 5 .*divide it by 100"):
        db.add_targets(rows)
    with pytest.raises(InvalidProblemError, match="not a fraction in"):
        db.add_targets(rows.assign(tolerance=-0.01))
    csv = tmp_path / "t.csv"
    for header in ("tolerance", "tolerance_percent"):
        csv.write_text(f"variable,period,value,constraints,{header}\nsnap,2024,1,,5\n")
        with pytest.raises(InvalidProblemError, match=f"'{header}' does not say its unit"):
            db.load_csv(csv)
    csv.write_text("variable,period,value,constraints,tolerance_fraction\nsnap,2024,1,,0.05\n")
    assert db.load_csv(csv) == 1
    assert db.targets()["tolerance"].tolist() == [0.05]
