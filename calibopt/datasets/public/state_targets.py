"""Published state targets (IRS SOI, Census) from ``policyengine-us-data`` into a TargetsDatabase.

The ``policyengine-us-data`` wheel ships the targets its users calibrate to under
``storage/calibration_targets/``. :func:`load_state_targets` writes these into a
:class:`~calibopt.targets.TargetsDatabase`, each with its real period and its source:

``agi``
    ``agi_state.csv``: IRS SOI state data, tax year 2022, 50 states + DC x 10 AGI bins:
    the number of returns (``tax_unit_count`` of filers in the bin) and their AGI
    (``adjusted_gross_income``), constraints ``is_filer == 1`` and the bin bounds
    ``adjusted_gross_income >= lo`` / ``< hi``.
``age``
    ``age_state.csv``: persons by 5-year age group (0-4 ... 85+), 50 states (the file has no
    DC), 2023 (its state totals equal the Census Vintage-2023 populations to the person).
``population``
    ``population_by_state.csv``: Census resident population, July 2023, 50 states + DC
    (Puerto Rico, also in the file, is skipped). Equal to the sum of the age groups, so with
    ``age`` it is a redundant (consistent) row.
``under5``
    The same file's ``population_under_5`` (``person_count`` with ``age < 5``). Off by
    default: it differs from the ``0-4`` age group of ``age_state.csv`` (another source),
    so both together are contradictory targets; :func:`target_conflicts` lists the gaps.
``national``
    ``soi_targets.csv``, Table 1.1 (all returns): the number of returns and total AGI,
    tax years 2022 and 2023.

Uprating: the state AGI targets are for 2022; the database gets the factors 2022 -> 2023 of
the national Table 1.1 totals (returns and AGI), so a 2023 calibration uses the state bins
grown by the national change (an assumption, recorded in each factor's source).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ...targets import TargetsDatabase
from ..geography import US_STATES
from .sources import SOURCES, PublicDataError, locate

__all__ = ["TARGET_SETS", "load_state_targets", "read_state_targets", "target_conflicts"]

TARGET_SETS = ("agi", "age", "population", "under5", "national")
_DEFAULT = ("agi", "age", "population", "national")
_RELEASE = SOURCES["targets"].release
_SOI_STATE = f"IRS SOI state data (in55cm), tax year 2022; {_RELEASE} agi_state.csv"
_AGE = f"Census population by age, 2023; {_RELEASE} age_state.csv"
_POP = f"Census resident population estimates, July 2023; {_RELEASE} population_by_state.csv"
_SOI_US = f"IRS SOI Publication 1304 Table 1.1, all returns; {_RELEASE} soi_targets.csv"
_FIPS = dict(zip(US_STATES["abbreviation"], US_STATES["state_fips"], strict=True))


def _bounds(lo: float, hi: float, variable: str) -> str:
    parts = []
    if np.isfinite(lo):
        parts.append(f"{variable} >= {lo:g}")
    if np.isfinite(hi):
        parts.append(f"{variable} < {hi:g}")
    return "; ".join(parts)


def _row(variable: str, period: int, value: float, constraints: str, source: str) -> dict:
    return {
        "variable": variable,
        "period": period,
        "value": float(value),
        "constraints": constraints,
        "source": source,
    }


def _agi_rows(folder: Path) -> list[dict]:
    agi = pd.read_csv(folder / "agi_state.csv")
    rows = []
    for r in agi.itertuples(index=False):
        fips = _FIPS[r.GEO_NAME]
        bins = _bounds(float(r.AGI_LOWER_BOUND), float(r.AGI_UPPER_BOUND), "adjusted_gross_income")
        cons = f"state_fips == {fips}; is_filer == 1; {bins}"
        var = "tax_unit_count" if r.VARIABLE.endswith("/count") else "adjusted_gross_income"
        rows.append(_row(var, 2022, r.VALUE, cons, _SOI_STATE))
    return rows


def _age_rows(folder: Path) -> list[dict]:
    age = pd.read_csv(folder / "age_state.csv")
    rows = []
    for _, r in age.iterrows():
        fips = _FIPS[r["GEO_NAME"]]
        for band in age.columns[2:]:
            if band.endswith("+"):
                cons = f"age >= {int(band[:-1])}"
            else:
                lo, hi = (int(x) for x in band.split("-"))
                cons = f"age >= {lo}; age < {hi + 1}"
            rows.append(_row("person_count", 2023, r[band], f"state_fips == {fips}; {cons}", _AGE))
    return rows


def _population_rows(folder: Path, column: str) -> list[dict]:
    pop = pd.read_csv(folder / "population_by_state.csv")
    pop = pop.loc[pop["state"].isin(list(_FIPS))]
    extra = "; age < 5" if column == "population_under_5" else ""
    return [
        _row("person_count", 2023, v, f"state_fips == {_FIPS[s]}{extra}", _POP)
        for s, v in zip(pop["state"], pop[column], strict=True)
    ]


def _national_table(folder: Path) -> pd.DataFrame:
    soi = pd.read_csv(folder / "soi_targets.csv")
    keep = (
        (soi["SOI table"] == "Table 1.1")
        & (soi["Filing status"] == "All")
        & soi["Full population"].astype(bool)
        & ~soi["Taxable only"].astype(bool)
        & soi["Variable"].isin(["adjusted_gross_income", "count"])
        & soi["Year"].isin([2022, 2023])
    )
    table = soi.loc[keep, ["Year", "Variable", "Value"]]
    if len(table) != 4:
        raise PublicDataError(f"soi_targets.csv: expected 4 national totals, found {len(table)}.")
    return table


def _national_rows(table: pd.DataFrame) -> list[dict]:
    names = {"count": "tax_unit_count", "adjusted_gross_income": "adjusted_gross_income"}
    return [
        _row(names[v], int(y), val, "is_filer == 1", _SOI_US)
        for y, v, val in table.itertuples(index=False)
    ]


def read_state_targets(
    include: Sequence[str] = _DEFAULT, *, path: str | os.PathLike | None = None
) -> pd.DataFrame:
    """The targets as a frame (``variable``, ``period``, ``value``, ``constraints`` as text,
    ``source``), one row per target, in the order of ``include``."""
    unknown = sorted(set(include) - set(TARGET_SETS))
    if unknown:
        raise PublicDataError(f"unknown target set(s) {unknown}; choose from {TARGET_SETS}.")
    folder = locate("targets", path)
    rows: list[dict] = []
    for name in include:
        if name == "agi":
            rows += _agi_rows(folder)
        elif name == "age":
            rows += _age_rows(folder)
        elif name == "population":
            rows += _population_rows(folder, "population")
        elif name == "under5":
            rows += _population_rows(folder, "population_under_5")
        else:
            rows += _national_rows(_national_table(folder))
    return pd.DataFrame(rows)


def load_state_targets(
    database: TargetsDatabase | str | os.PathLike | None = None,
    *,
    include: Sequence[str] = _DEFAULT,
    path: str | os.PathLike | None = None,
    replace: bool = False,
) -> TargetsDatabase:
    """Write the published state (and national) targets into a targets database.

    Parameters
    ----------
    database
        A :class:`~calibopt.targets.TargetsDatabase` or its URL / SQLite path (created if
        new); default a new in-memory SQLite database.
    include
        Target sets (see the module docstring): ``"agi"``, ``"age"``, ``"population"``,
        ``"under5"``, ``"national"``; default all but ``"under5"``.
    path
        Optional: the ``calibration_targets`` folder or the ``policyengine_us_data-*.whl``.
    replace
        Overwrite targets that are already there.

    Returns
    -------
    TargetsDatabase
        With the targets (periods 2022 / 2023, sources recorded) and, when ``"agi"`` is
        included, uprating factors 2022 -> 2023 for ``tax_unit_count`` and
        ``adjusted_gross_income`` (national Table 1.1 growth).

    Raises
    ------
    PublicDataError
        The files are missing (``python -m calibopt.datasets.public fetch targets``) or are
        another release.
    """
    frame = read_state_targets(include, path=path)
    if database is None:
        db = TargetsDatabase.create("sqlite://")
    elif isinstance(database, TargetsDatabase):
        db = database
    else:
        db = TargetsDatabase.create(database)
    db.add_targets(frame, replace=replace)
    if "agi" in include:
        table = _national_table(locate("targets", path)).set_index(["Variable", "Year"])["Value"]
        for soi, variable in (
            ("count", "tax_unit_count"),
            ("adjusted_gross_income", "adjusted_gross_income"),
        ):
            db.add_uprating(variable, 2022, 2023, table[(soi, 2023)] / table[(soi, 2022)])
    return db


def target_conflicts(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Where two published figures for the same quantity disagree, with the numbers.

    Rows: each state's ``population_under_5`` vs its ``0-4`` age group, and the national
    returns / AGI (Table 1.1, 2022) vs the sum of the state file (2022). Columns
    ``quantity``, ``geography``, ``first``, ``second`` (values), ``rel_gap`` (second/first-1),
    ``sources``.
    """
    folder = locate("targets", path)
    out = []
    pop = pd.read_csv(folder / "population_by_state.csv").set_index("state")
    age = pd.read_csv(folder / "age_state.csv").set_index("GEO_NAME")
    for state in age.index:
        a, b = float(age.loc[state, "0-4"]), float(pop.loc[state, "population_under_5"])
        out.append(("persons aged 0-4", state, a, b, b / a - 1, "age_state vs population_by_state"))
    nat = _national_table(folder).set_index(["Variable", "Year"])["Value"]
    agi = pd.read_csv(folder / "agi_state.csv")
    for soi, label in (("count", "returns"), ("adjusted_gross_income", "AGI")):
        kind = "count" if soi == "count" else "amount"
        states = float(agi.loc[agi["VARIABLE"].str.endswith(kind), "VALUE"].sum())
        out.append(
            (
                f"{label} 2022",
                "US",
                states,
                float(nat[(soi, 2022)]),
                float(nat[(soi, 2022)]) / states - 1,
                "sum of agi_state vs soi_targets",
            )
        )
    return pd.DataFrame(
        out, columns=["quantity", "geography", "first", "second", "rel_gap", "sources"]
    )
