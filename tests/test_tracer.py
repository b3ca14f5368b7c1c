"""MatrixTracer and ColumnMap: every column and row round-trips; groups partition the rows."""

from __future__ import annotations

import numpy as np
import pytest

from calibopt.datasets import synthetic_country
from calibopt.errors import InvalidProblemError
from calibopt.matrix import MatrixBuilder
from calibopt.targets import parse_constraints


@pytest.fixture(scope="module")
def built():
    c = synthetic_country("small", seed=5)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    return c, m


def test_every_column_round_trips(built):
    c, m = built
    cm = m.columns
    cols = np.arange(cm.n_columns)
    located = cm.locate(cols)
    np.testing.assert_array_equal(cm.column(located["household_id"], located["geography"]), cols)
    n = c.dataset.n_households
    np.testing.assert_array_equal(located["household_index"], cols % n)
    np.testing.assert_array_equal(located["geography"], c.geographies[cols // n])
    np.testing.assert_array_equal(located["household_id"], c.dataset.ids("household")[cols % n])
    np.testing.assert_array_equal(located["state_fips"], located["geography"] // 100)
    tracer = m.tracer()
    info = tracer.column_info(12345)
    assert tracer.column_of(info["household_id"], info["geography"]) == 12345
    with pytest.raises(InvalidProblemError, match="outside"):
        cm.locate([cm.n_columns])
    with pytest.raises(InvalidProblemError, match="unknown household"):
        cm.column(-5, c.geographies[0])
    with pytest.raises(InvalidProblemError, match="not among"):
        cm.column(c.dataset.ids("household")[0], 9999)


def test_every_row_round_trips(built):
    _, m = built
    tracer = m.tracer()
    for row in range(m.X.shape[0]):
        info = tracer.row_info(row)
        assert tracer.row_of(name=info["name"]) == row
        assert tracer.row_of(target_id=info["target_id"]) == row
        rec = m.targets.iloc[row]
        assert info["value"] == rec["value"] and info["variable"] == rec["variable"]
        assert info["geographic_id"] == rec["geographic_id"] and info["group"] == rec["group"]
        text = info["constraints"]
        assert (parse_constraints(text) if text != "(national)" else ()) == rec["constraints"]
        assert info["nnz"] == m.X.indptr[row + 1] - m.X.indptr[row]
    with pytest.raises(InvalidProblemError, match="outside"):
        tracer.row_info(m.X.shape[0])
    with pytest.raises(InvalidProblemError, match="no row"):
        tracer.row_of(name="nowhere/nothing")


def test_household_columns_and_entries(built):
    c, m = built
    tracer = m.tracer()
    hh_id = int(c.dataset.ids("household")[17])
    positions = tracer.household_columns(hh_id)
    n = c.dataset.n_households
    assert list(positions) == c.geographies.tolist()
    assert list(positions.values()) == [g * n + 17 for g in range(len(c.geographies))]
    # its value in a state SNAP row: non-zero only in that state's districts
    home = int(c.dataset.household["state_fips"].iloc[17])
    row = tracer.row_of(name=f"{home}/household_count")
    for geo, col in positions.items():
        expected = 1.0 if geo // 100 == home else 0.0
        assert m.X[row, col] == expected
    entries = tracer.column_entries(positions[c.geographies[0]])
    np.testing.assert_array_equal(
        entries["value"], m.X[:, [positions[c.geographies[0]]]].toarray().ravel()[entries["row"]]
    )
    assert (entries["value"] != 0).all() and len(entries) > 10
    row_entries = tracer.row_entries(row)
    assert (row_entries["state_fips"] == home).all() and (row_entries["value"] == 1).all()
    assert len(row_entries) == n * int((c.geographies // 100 == home).sum())


def test_groups_partition_the_rows(built):
    _, m = built
    tracer = m.tracer()
    groups = tracer.groups()
    seen = np.zeros(m.X.shape[0], dtype=int)
    for gid, label, n_targets in groups[["group_id", "group", "n_targets"]].itertuples(index=False):
        rows = tracer.group_rows(gid)
        assert len(rows) == n_targets
        assert rows.equals(tracer.group_rows(label))
        assert (m.targets["group"].to_numpy()[rows["row_index"]] == label).all()
        seen[rows["row_index"]] += 1
    assert (seen == 1).all()
    labels = set(groups["group"])
    assert {
        "national/household_count",
        "state/snap[snap]",
        "district/person_count[age]",
        "district/household_count[snap]",
    } <= labels
    states = groups.set_index("group").loc["state/snap[snap]", "n_targets"]
    assert states == 8
    assert groups.set_index("group").loc["district/person_count[age]", "n_targets"] == 4 * 40
    with pytest.raises(InvalidProblemError, match="no target group"):
        tracer.group_rows("county/snap")


def test_printed_structure(built):
    _, m = built
    lines = []
    m.tracer().print_structure(out=lines.append)
    text = lines[0]
    assert f"{m.X.shape[0]:,} rows (targets) x {m.X.shape[1]:,} columns" in text
    assert "40 districts x 2,000 households" in text
    assert f"non-zeros {m.X.nnz:,}" in text
    assert "... 30 more in between" in text
    assert "state/snap[snap]" in text
