"""Typed errors from the targets database, and no half-made database files.

Out-of-range integers must be an InvalidProblemError naming the row and the column (the
database driver's OverflowError before), and a first load that fails must leave no new empty
database file behind (``TargetsDatabase.create`` wrote the schema before reading the CSV).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibopt.cli import main
from calibopt.errors import InvalidProblemError
from calibopt.targets import TargetsDatabase
from calibopt.targets import database as database_module

GOOD = "variable,period,value,constraints\nsnap,2024,100,\nsnap,2024,60,state_fips == 37\n"
BAD = "variable,period,value,constraints\nsnap,2024,100,\nsnap,2024,abc,state_fips == 37\n"


def one_row(**overrides):
    row = {"variable": "snap", "period": 2024, "value": 1.0, "constraints": "", "reform_id": 0}
    row |= overrides
    return pd.DataFrame({k: [v] for k, v in row.items()})


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("period", 1e30),
        ("period", 2**31),
        ("period", -(2**40)),
        ("period", np.int64(2**40)),
        ("reform_id", 2**63),
        ("reform_id", 1e300),
    ],
)
def test_out_of_range_integers_name_the_row_and_column(engine, column, value):
    db = TargetsDatabase.create(engine)
    frame = pd.concat([one_row(), one_row(**{column: value}, constraints="state_fips == 37")])
    with pytest.raises(InvalidProblemError, match=rf"target row 1 \(snap\): column `{column}`"):
        db.add_targets(frame.reset_index(drop=True))
    assert db.targets(period=None).empty  # nothing written, not even the good row
    with pytest.raises(InvalidProblemError, match="out of range"):
        db.add_targets(one_row(**{column: value}))


def test_out_of_range_arguments_when_reading_and_uprating(engine):
    db = TargetsDatabase.create(engine)
    db.add_targets(one_row())
    with pytest.raises(InvalidProblemError, match=r"period: 1e\+30 is out of range"):
        db.targets(period=1e30)
    with pytest.raises(InvalidProblemError, match=r"reform_id: .* is out of range"):
        db.targets(reform_id=2**70)
    with pytest.raises(InvalidProblemError, match=r"to_period: .* is out of range"):
        db.add_uprating("snap", 2024, 1e30, 1.1)
    with pytest.raises(InvalidProblemError, match="from_period must be an integer"):
        db.add_uprating("snap", "next year", 2025, 1.1)
    assert db.targets(period=2024)["value"].tolist() == [1.0]


@pytest.mark.parametrize("form", ["path", "url"])
def test_a_failed_first_load_leaves_no_database_file(tmp_path, form):
    path = tmp_path / "new.db"
    url = path if form == "path" else f"sqlite:///{path}"
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD)
    db = TargetsDatabase.create(url)
    with pytest.raises(InvalidProblemError, match=r"row 1 .*'abc' is not a number"):
        db.load_csv(bad)
    assert not path.exists()
    with pytest.raises(InvalidProblemError):
        db.add_targets(one_row(period=1e30))
    assert not path.exists()
    # the same object still works, and the first good write creates the file
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    assert db.load_csv(good) == 2
    assert path.exists()
    db.close()
    assert sorted(TargetsDatabase(path).targets()["value"]) == [60.0, 100.0]


def test_a_database_error_in_the_first_write_removes_the_new_file(tmp_path, monkeypatch):
    path = tmp_path / "new.db"
    db = TargetsDatabase.create(path)

    def broken(conn, sets):
        raise InvalidProblemError("simulated failure inside the transaction")

    monkeypatch.setattr(database_module, "ensure_strata", broken)
    with pytest.raises(InvalidProblemError, match="simulated"):
        db.add_targets(one_row())
    assert not path.exists()
    monkeypatch.undo()
    assert db.add_targets(one_row()) == 1 and path.exists()


def test_a_failed_load_leaves_an_existing_database_as_it_was(tmp_path):
    path = tmp_path / "t.db"
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    with TargetsDatabase.create(path) as db:
        db.load_csv(good)
    before = path.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD.replace("2024", "2025"))
    with TargetsDatabase.create(path) as db:
        with pytest.raises(InvalidProblemError, match="not a number"):
            db.load_csv(bad)
        with pytest.raises(InvalidProblemError, match="already exist"):
            db.load_csv(good)  # fails inside the transaction: rolled back, file kept
    assert path.read_bytes() == before
    assert len(TargetsDatabase(path).targets()) == 2


def test_failed_targets_load_command_leaves_no_file(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD)
    new = tmp_path / "new.db"
    assert main(["targets", "load", str(bad), "--db", str(new)]) == 1
    assert "'abc' is not a number" in capsys.readouterr().err
    assert not new.exists()
    assert list(tmp_path.iterdir()) == [bad]
    assert main(["targets", "load", str(tmp_path / "missing.csv"), "--db", str(new)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not new.exists()
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    assert main(["targets", "load", str(good), "--db", str(new)]) == 0
    before = new.read_bytes()
    assert main(["targets", "load", str(bad), "--db", str(new)]) == 1
    assert new.read_bytes() == before


def test_create_in_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidProblemError, match=r"directory .* does not exist"):
        TargetsDatabase.create(tmp_path / "no" / "such" / "t.db")
    assert not (tmp_path / "no").exists()
