"""What a :class:`~calibopt.synthesis.HierarchicalSynthesizer` learns about its data's layout,
and the frames each level is fitted on and generated from.

:class:`ModelSpec` is plain JSON data (saved with the models): the options, the roles, the
modelled variables of each level, the aggregates, the fill values of absent relatives and
the column layout (names, dtypes, categories) of every output table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..datasets.dataset import GEOGRAPHY_VARIABLES, Dataset
from ..datasets.links import id_column
from ..datasets.rules import GeographyRules
from ..errors import InvalidProblemError
from .enforce import check_hierarchy
from .rules import OneHead
from .structure import Layout, person_conditions, relatives

__all__ = ["ModelSpec"]

STATE, DISTRICT = GEOGRAPHY_VARIABLES


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _layout_of(frame: pd.DataFrame) -> list[list[Any]]:
    """``[[column, dtype, categories or None], ...]`` of a table."""
    out = []
    for col in frame.columns:
        dtype = frame[col].dtype
        cats = (
            [_plain(c) for c in dtype.categories]
            if isinstance(dtype, pd.CategoricalDtype)
            else None
        )
        out.append([col, "category" if cats is not None else str(dtype), cats])
    return out


def _cast(values: Any, dtype: str, categories: list[Any] | None) -> Any:
    if categories is not None:
        return pd.Categorical(np.asarray(values, dtype=object), categories=categories)
    arr = np.asarray(values)
    if np.dtype(dtype).kind in "iu" and arr.dtype.kind == "f":
        arr = np.rint(arr)
    return arr.astype(dtype)


@dataclass
class ModelSpec:
    """Options and learned layout of a hierarchical synthesizer (see its docstring)."""

    group: str
    role: str
    head: Any
    household_head: str | None
    aggregates: dict[str, list[str] | None]
    exclude: list[str]
    weight: str | None
    categorical: list[str]
    model: str
    options: dict[str, Any]
    roles: list[Any] = field(default_factory=list)
    household_vars: list[str] = field(default_factory=list)
    unit_vars: list[str] = field(default_factory=list)
    person_vars: list[str] = field(default_factory=list)
    aggregate_entity: dict[str, str] = field(default_factory=dict)
    derived_state: bool = False
    rule_vars: list[str] = field(default_factory=list)
    weight_total: float | None = None
    columns: dict[str, list[list[Any]]] = field(default_factory=dict)
    fills: dict[str, Any] = field(default_factory=dict)
    categories: dict[str, list[Any]] = field(default_factory=dict)
    period: Any = None
    name: str | None = None

    UNITS = "n_units"
    INDEX = "unit_index"
    MEMBER = "member_index"

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(**data)

    @property
    def count_columns(self) -> list[str]:
        return [f"n_{r}" for r in self.roles[1:]]

    def categorical_in(self, frame: pd.DataFrame) -> list[str]:
        """The frame's columns that are categories (relatives' copies included)."""
        return [c for c in frame.columns if c.split(".", 1)[-1] in self.categories]

    # ------------------------------------------------------------------ learn
    def learn(self, dataset: Dataset, rules: GeographyRules | None) -> None:
        """Read the layout of the training data (and check it)."""
        if not isinstance(dataset, Dataset):
            raise InvalidProblemError(f"`dataset` must be a Dataset, got {type(dataset).__name__}.")
        if self.group not in dataset.entities:
            raise InvalidProblemError(
                f"the dataset has no {self.group!r} table (it has {list(dataset.entities)}); "
                f"pass group=... to name the entity between household and person."
            )
        others = [e for e in dataset.group_entities if e != self.group]
        if others:
            raise InvalidProblemError(
                f"the dataset has group entities {others} besides {self.group!r}; synthesis "
                f"handles household > {self.group} > person: drop the others first."
            )
        person = dataset.person
        if self.role not in person.columns:
            raise InvalidProblemError(f"the person table lacks the role column {self.role!r}.")
        col = person[self.role]
        values = (
            list(col.cat.categories)
            if isinstance(col.dtype, pd.CategoricalDtype)
            else sorted(pd.unique(col.to_numpy()).tolist(), key=str)
        )
        if self.head not in values:
            raise InvalidProblemError(f"no person has {self.role} == {self.head!r} (the head).")
        self.roles = [_plain(self.head)] + [_plain(v) for v in values if v != self.head]
        self.rule_vars = list(rules.variables) if rules is not None else []
        skip = set(self.exclude) | set(self.rule_vars) | set(self.aggregates)
        for var, parts in self.aggregates.items():
            entity = dataset.entity_of(var)
            if entity not in ("household", self.group):
                raise InvalidProblemError(
                    f"aggregate {var!r} lives on {entity!r}; aggregates are household or "
                    f"{self.group} variables."
                )
            for p in parts or []:
                if dataset.entity_of(p) != "person":
                    raise InvalidProblemError(f"aggregate {var!r}: {p!r} is not a person variable.")
            self.aggregate_entity[var] = entity
        hh_cols = [
            c for c in dataset.household.columns if c not in skip | {"household_id", self.weight}
        ]
        self.derived_state = DISTRICT in hh_cols and STATE in hh_cols
        if self.derived_state:
            hh_cols.remove(STATE)
        geo = [c for c in hh_cols if c in GEOGRAPHY_VARIABLES]
        self.household_vars = geo + [c for c in hh_cols if c not in geo]
        unit_links = {id_column(self.group), "household_id"}
        self.unit_vars = [
            c for c in dataset.table(self.group).columns if c not in skip | unit_links
        ]
        links = {"person_id", "household_id", id_column(self.group), self.role, self.household_head}
        self.person_vars = [c for c in person.columns if c not in skip | links]
        heads = OneHead(within=id_column(self.group), role=self.role, head=self.head)
        bad = check_hierarchy(person, rules=[heads])["violations"].iloc[0]
        if bad:
            raise InvalidProblemError(
                f"{bad} {self.group} row(s) do not have exactly one {self.role} == "
                f"{self.head!r}; repair with enforce_hierarchy(..., rules=[OneHead()]) first."
            )
        if self.weight is not None and self.weight in dataset.household.columns:
            self.weight_total = float(dataset.household[self.weight].sum())
        drop = set(self.exclude)
        self.columns = {
            e: [c for c in _layout_of(dataset.table(e)) if c[0] not in drop]
            for e in ("household", self.group, "person")
        }
        self.fills = {}
        for v in self.person_vars:
            s = person[v]
            numeric = pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(
                s.dtype
            )
            self.fills[v] = _plain(s.min() - 1) if numeric else _plain(sorted(pd.unique(s))[0])
        self.categories = {}
        for e in ("household", self.group, "person"):
            frame = dataset.table(e)
            for name, dtype, cats in _layout_of(frame):
                numeric = cats is None and np.dtype(dtype).kind in "iuf"
                if name in self.categorical or not numeric:
                    self.categories[name] = (
                        cats
                        if cats is not None
                        else [_plain(v) for v in sorted(pd.unique(frame[name].to_numpy()))]
                    )
        self.period, self.name = dataset.period, dataset.name

    def _categorise(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Category columns with every category of the training data (a sub-model that saw
        only some of them still accepts the others as conditions)."""
        out = frame.copy()
        for col in out.columns:
            base = col.split(".", 1)[-1]
            if base == "present":
                out[col] = pd.Categorical(out[col].to_numpy(dtype=bool), categories=[False, True])
            elif base in self.categories:
                out[col] = pd.Categorical(out[col].to_numpy(), categories=self.categories[base])
        return out

    # ------------------------------------------------------------------ frames
    def unit_conditions(self, hh: pd.DataFrame, n_units: np.ndarray) -> pd.DataFrame:
        """Per unit of generated households: the household's variables, ``n_units`` and the
        unit's position."""
        rows = np.repeat(np.arange(len(hh)), n_units)
        out = hh[self.household_vars].take(rows).reset_index(drop=True)
        out[self.UNITS] = n_units[rows]
        out[self.INDEX] = np.arange(rows.size) - np.repeat(np.cumsum(n_units) - n_units, n_units)
        return out

    def _layout(self, dataset: Dataset) -> Layout:
        role_pos = pd.Index(self.roles).get_indexer(dataset.person[self.role].to_numpy())
        head = None
        if self.household_head in dataset.person.columns:
            head = np.flatnonzero(dataset.person[self.household_head].to_numpy(dtype=bool))
        return Layout.from_dataset(
            dataset.household_index(self.group),
            dataset.entity_index(self.group),
            dataset.entity_index("household"),
            role_pos,
            head,
            dataset.n_households,
        )

    def _passes(
        self, layout: Layout, base: pd.DataFrame, values: dict[str, np.ndarray]
    ) -> Iterator[tuple[str, np.ndarray, pd.DataFrame]]:
        """Per person pass: ``(name, person rows, conditions)``. Lazy: the relatives' values
        are read when a pass is reached, so a pass sees what earlier passes generated."""
        role, uidx = layout.role, layout.unit_index[layout.person_unit]
        rows = np.flatnonzero((role == 0) & (uidx == 0))
        yield "hh_head", rows, base.iloc[rows].reset_index(drop=True)
        rows = np.flatnonzero((role == 0) & (uidx > 0))
        pick = layout.household_head()[layout.person_household[rows]]
        rel = relatives(values, pick, "hh_head", self.fills, False)
        yield "unit_head", rows, person_conditions(base.iloc[rows].reset_index(drop=True), [rel])
        heads = layout.first_member(0)
        for r in range(1, len(self.roles)):
            rows = np.flatnonzero(role == r)
            unit = layout.person_unit[rows]
            blocks = [{self.MEMBER: layout.member_index[rows]}]
            blocks.append(relatives(values, heads[unit], "head", self.fills, False))
            for earlier in range(1, r):
                first = layout.first_member(earlier)[unit]
                blocks.append(relatives(values, first, str(self.roles[earlier]), self.fills, True))
            cond = person_conditions(base.iloc[rows].reset_index(drop=True), blocks)
            yield str(self.roles[r]), rows, cond

    def training_frames(self, dataset: Dataset) -> dict[str, tuple[pd.DataFrame, list, list]]:
        """``{level: (frame, targets, conditions)}`` for every model."""
        layout = self._layout(dataset)
        hh = dataset.household[self.household_vars].copy()
        hh[self.UNITS] = layout.units_per_household()
        geo = [c for c in self.household_vars if c in GEOGRAPHY_VARIABLES]
        rest = [c for c in self.household_vars if c not in geo]
        frames = {"household": (hh, [*geo, self.UNITS, *rest], [])}
        units = hh.take(layout.unit_household).reset_index(drop=True)
        units[self.INDEX] = layout.unit_index
        counts = layout.role_counts(len(self.roles))[:, 1:]
        for j, name in enumerate(self.count_columns):
            units[name] = counts[:, j]
        tu = dataset.table(self.group)
        for v in self.unit_vars:
            units[v] = tu[v].to_numpy()
        conds = [*self.household_vars, self.UNITS, self.INDEX]
        frames["unit"] = (units, [*self.count_columns, *self.unit_vars], conds)
        base = units.take(layout.person_unit).reset_index(drop=True)
        values = {v: dataset.person[v].to_numpy() for v in self.person_vars}
        for name, rows, cond in self._passes(layout, base, values):
            if rows.size == 0:
                continue
            frame = cond.copy()
            for v in self.person_vars:
                frame[v] = values[v][rows]
            frames[name] = (frame, list(self.person_vars), list(cond.columns))
        return {k: (self._categorise(f), t, c) for k, (f, t, c) in frames.items()}

    # ------------------------------------------------------------------ generate
    def generate_persons(
        self,
        models: dict[str, Any],
        layout: Layout,
        units: pd.DataFrame,
        rng: np.random.Generator,
    ) -> pd.DataFrame:
        """Person variables, pass by pass (relatives read from earlier passes)."""
        n = layout.n_persons
        values: dict[str, np.ndarray] = {}
        for v in self.person_vars:
            kind = dict((c[0], c) for c in self.columns["person"])[v]
            numeric = kind[2] is None and np.dtype(kind[1]).kind in "iuf"
            values[v] = np.empty(n, dtype=np.float64 if numeric else object)
        base = units.take(layout.person_unit).reset_index(drop=True)
        for name, rows, cond in self._passes(layout, base, values):
            if rows.size == 0:
                continue
            if name not in models:
                raise InvalidProblemError(
                    f"generated households need a {name!r} model the training data could not "
                    f"fit (no such persons in training)."
                )
            out = models[name].generate(cond, seed=rng)
            for v in self.person_vars:
                values[v][rows] = out[v].to_numpy()
        return pd.DataFrame(values)
