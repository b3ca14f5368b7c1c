"""From generated levels to a checked :class:`~calibopt.datasets.Dataset`.

:func:`repair` applies the relationship rules to the generated persons; :func:`assemble`
gives ids, recomputes aggregates, derives the state from the district, restores the training
tables' columns and dtypes, and computes geography-rule variables under each household's
home rules; :func:`check_generated` counts every violation generated data must not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..datasets.dataset import GEOGRAPHY_VARIABLES, Dataset
from ..datasets.links import id_column
from ..datasets.rules import GeographyRules
from .enforce import check_hierarchy, enforce_hierarchy
from .model_spec import ModelSpec, _cast
from .rules import OneHead
from .structure import Layout

__all__ = ["assemble", "check_generated", "repair"]

STATE, DISTRICT = GEOGRAPHY_VARIABLES
_REPORT = ["rule", "violations_before", "rows_changed", "violations_after"]


def _flat(spec: ModelSpec, persons: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    flat = persons.copy()
    flat["household_id"] = layout.person_household
    flat[id_column(spec.group)] = layout.person_unit
    flat[spec.role] = np.asarray(spec.roles, dtype=object)[layout.role]
    return flat


def repair(
    spec: ModelSpec,
    persons: pd.DataFrame,
    layout: Layout,
    rules: Sequence[Any],
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the relationship rules to generated persons; returns (persons, report)."""
    flat = _flat(spec, persons, layout)
    if not rules:
        return flat, pd.DataFrame({c: [] for c in _REPORT})
    return enforce_hierarchy(flat, rules=rules, seed=rng)


def _aggregate(spec: ModelSpec, flat: pd.DataFrame, layout: Layout, var: str) -> np.ndarray:
    parts = spec.aggregates[var]
    total = (
        np.ones(len(flat))
        if parts is None
        else np.sum([flat[p].to_numpy(dtype=np.float64) for p in parts], axis=0)
    )
    if spec.aggregate_entity[var] == "household":
        return np.bincount(layout.person_household, weights=total, minlength=layout.n_households)
    return np.bincount(layout.person_unit, weights=total, minlength=layout.n_units)


def _table(layout_cols: list[list[Any]], data: dict[str, Any], skip: set[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            name: _cast(data[name], dtype, cats)
            for name, dtype, cats in layout_cols
            if name not in skip
        }
    )


def _home_rules(ds: Dataset, rules: GeographyRules) -> Dataset:
    """Geography-rule variables under each household's home rules (one call per rule set,
    on that rule set's households only)."""
    hh = ds.household
    home = hh[DISTRICT].to_numpy() if DISTRICT in hh.columns else hh[STATE].to_numpy() * 100 + 1
    keys = np.array([rules.key(int(g)) for g in np.unique(home)])
    key_of = dict(zip(np.unique(home).tolist(), keys.tolist()))
    hh_key = np.array([key_of[g] for g in home.tolist()]) if home.size else np.zeros(0, int)
    out = {var: np.zeros(ds.n(entity)) for var, entity in rules.variables.items()}
    for key in np.unique(hh_key):
        mask = hh_key == key
        sub = ds.subset(mask) if not mask.all() else ds
        values = rules.evaluate(sub, int(key))
        for var, entity in rules.variables.items():
            rows = np.flatnonzero(mask[ds.household_index(entity)])
            out[var] = out[var].astype(np.result_type(out[var], values[var]))
            out[var][rows] = values[var]
    for var, entity in rules.variables.items():
        ds = ds.assign(entity, **{var: out[var]})
    return ds


def assemble(
    spec: ModelSpec,
    hh: pd.DataFrame,
    units: pd.DataFrame,
    flat: pd.DataFrame,
    layout: Layout,
    offsets: np.ndarray,
    n_total: int,
    rules: GeographyRules | None,
) -> Dataset:
    """The generated batch as a Dataset laid out like the training data."""
    hh_id = offsets[0] + 1 + np.arange(layout.n_households, dtype=np.int64)
    unit_id = offsets[1] + 1 + np.arange(layout.n_units, dtype=np.int64)
    person_id = offsets[2] + 1 + np.arange(layout.n_persons, dtype=np.int64)
    group_id = id_column(spec.group)
    hh_data: dict[str, Any] = {"household_id": hh_id, **{v: hh[v].to_numpy() for v in hh.columns}}
    if spec.derived_state:
        hh_data[STATE] = hh[DISTRICT].to_numpy(dtype=np.int64) // 100
    if spec.weight_total is not None:
        hh_data[spec.weight] = np.full(layout.n_households, spec.weight_total / n_total)
    unit_data: dict[str, Any] = {
        group_id: unit_id,
        "household_id": hh_id[layout.unit_household],
        **{v: units[v].to_numpy() for v in spec.unit_vars},
    }
    for var in spec.aggregates:
        target = hh_data if spec.aggregate_entity[var] == "household" else unit_data
        target[var] = _aggregate(spec, flat, layout, var)
    person_data: dict[str, Any] = {
        "person_id": person_id,
        "household_id": hh_id[layout.person_household],
        group_id: unit_id[layout.person_unit],
        spec.role: flat[spec.role].to_numpy(),
        **{v: flat[v].to_numpy() for v in spec.person_vars},
    }
    if spec.household_head:
        person_data[spec.household_head] = (layout.role == 0) & (
            layout.unit_index[layout.person_unit] == 0
        )
    skip = set(spec.rule_vars)
    tables = {
        "household": _table(spec.columns["household"], hh_data, skip),
        "person": _table(spec.columns["person"], person_data, skip),
        spec.group: _table(spec.columns[spec.group], unit_data, skip),
    }
    ds = Dataset(tables, period=spec.period, name=f"synthesised from {spec.name or 'a dataset'}")
    if rules is not None:
        ds = _home_rules(ds, rules)
        for entity in ("household", spec.group):
            order = [c[0] for c in spec.columns[entity] if c[0] in ds.table(entity).columns]
            if list(ds.table(entity).columns) != order:
                ds.entities[entity] = ds.table(entity)[order]
    return ds


def check_generated(spec: ModelSpec, dataset: Dataset, rules: Sequence[Any]) -> pd.DataFrame:
    """Violations of every rule generated data satisfy by construction or by repair."""
    group_id = id_column(spec.group)
    person = dataset.person
    rows = [
        (
            "one head per unit",
            check_hierarchy(
                person, rules=[OneHead(within=group_id, role=spec.role, head=spec.head)]
            )["violations"].iloc[0],
        ),
    ]
    if spec.household_head and spec.household_head in person.columns:
        heads = dataset.map_to(person[spec.household_head].to_numpy(), "person", "household")
        rows.append(("one household head per household", int((heads != 1).sum())))
    if rules:
        flat = person.copy()
        for _, r in check_hierarchy(flat, rules=rules).iterrows():
            rows.append((r["rule"], int(r["violations"])))
    for var, parts in spec.aggregates.items():
        entity = spec.aggregate_entity[var]
        total = (
            np.ones(dataset.n_persons)
            if parts is None
            else np.sum([person[p].to_numpy(dtype=np.float64) for p in parts], axis=0)
        )
        expected = dataset.map_to(total, "person", entity)
        got = dataset.table(entity)[var].to_numpy(dtype=np.float64)
        rows.append((f"{var} = sum over persons", int((got != expected).sum())))
    if spec.derived_state:
        hh = dataset.household
        bad = hh[STATE].to_numpy() != hh[DISTRICT].to_numpy() // 100
        rows.append(("district inside its state", int(bad.sum())))
    return pd.DataFrame(rows, columns=["rule", "violations"])
