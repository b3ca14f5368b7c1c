"""Hierarchical unit data: households, persons and other group entities, in pandas tables.

A :class:`Dataset` is a set of entity tables keyed by entity name:

* ``"household"`` and ``"person"`` are required; any other *group entity* (``"tax_unit"``,
  ``"spm_unit"``, ``"family"``, ...) is declared simply by giving its table;
* every entity table has an id column ``<entity>_id`` (integers, unique, no missing values);
* every group-entity table other than the household table has a ``household_id`` column;
* the person table has ``household_id`` and ``<entity>_id`` for every group entity (the
  person's tax unit, SPM unit, ...); a group's persons all live in the group's household;
* the household table carries the design weight (``household_weight``) and the geography
  variables (``state_fips``, ``congressional_district_geoid``, ...).

Variable names are unique across entities (the link columns ``household_id`` and
``<entity>_id`` on the person table excepted), so a variable name says where it lives, as in
the PolicyEngine ``/<variable>/<period>`` HDF5 layout. Rows keep their order; positions (not
ids) are what the vectorised helpers return.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from .aggregate import aggregate, is_up
from .links import id_column, link_entities

__all__ = ["GEOGRAPHY_VARIABLES", "Dataset"]

GEOGRAPHY_VARIABLES = ("state_fips", "congressional_district_geoid")
"""Household variables that say where a household lives (set anew when it is placed elsewhere)."""

_ENTITY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Dataset:
    """Hierarchical microdata: entity tables linked by id columns.

    Parameters
    ----------
    entities
        ``{entity name: DataFrame}``; must contain ``"household"`` and ``"person"``. See the
        module docstring for the required id and link columns.
    period
        The period (usually a year) the data describe; used when writing the PolicyEngine
        ``/<variable>/<period>`` layout.
    name
        A label shown in messages and ``repr``.

    The tables are re-indexed ``0..n-1`` (pandas copy-on-write makes this cheap); a caller's
    DataFrames are never modified.

    Raises
    ------
    InvalidProblemError
        A required table or id column is missing, ids are duplicated or missing, a link
        points to an id that does not exist ("dangling"), a group's persons live in different
        households, a group has no persons, or a variable name appears in two tables.

    Examples
    --------
    >>> hh = pd.DataFrame({"household_id": [1, 2], "household_weight": [10.0, 20.0],
    ...                    "state_fips": [37, 15]})
    >>> people = pd.DataFrame({"person_id": [1, 2, 3], "household_id": [1, 1, 2],
    ...                        "age": [40, 3, 70]})
    >>> ds = Dataset({"household": hh, "person": people})
    >>> ds.map_to(ds.person["age"] < 5, "person", "household", how="count")
    array([1., 0.])
    """

    def __init__(
        self,
        entities: Mapping[str, pd.DataFrame],
        *,
        period: int | str | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(entities, Mapping):
            raise InvalidProblemError(
                f"`entities` must be a mapping {{entity name: DataFrame}}, got "
                f"{type(entities).__name__}."
            )
        for required in ("household", "person"):
            if required not in entities:
                raise InvalidProblemError(
                    f"Dataset needs a {required!r} table; got tables {sorted(entities)}."
                )
        tables: dict[str, pd.DataFrame] = {}
        for entity, frame in entities.items():
            if not isinstance(entity, str) or not _ENTITY_NAME.match(entity):
                raise InvalidProblemError(
                    f"entity name {entity!r} must be lower-case letters, digits and '_'."
                )
            if not isinstance(frame, pd.DataFrame):
                raise InvalidProblemError(
                    f"the {entity!r} table must be a pandas DataFrame, got {type(frame).__name__}."
                )
            tables[entity] = frame.reset_index(drop=True)
        # household and person first, then the other groups in the given order
        order = ["household", "person"] + [e for e in entities if e not in ("household", "person")]
        self.entities: dict[str, pd.DataFrame] = {e: tables[e] for e in order}
        self.period = period
        self.name = name
        links = link_entities(self.entities)
        self._positions = links.positions
        self._household_positions = links.household_positions
        self._variables = links.variables

    # ------------------------------------------------------------------ structure
    @property
    def household(self) -> pd.DataFrame:
        """The household table."""
        return self.entities["household"]

    @property
    def person(self) -> pd.DataFrame:
        """The person table."""
        return self.entities["person"]

    @property
    def group_entities(self) -> list[str]:
        """Group entities other than the household (e.g. ``["tax_unit"]``)."""
        return [e for e in self.entities if e not in ("household", "person")]

    @property
    def n_households(self) -> int:
        """Number of households."""
        return len(self.household)

    @property
    def n_persons(self) -> int:
        """Number of persons."""
        return len(self.person)

    def n(self, entity: str) -> int:
        """Number of rows of an entity table."""
        return len(self.table(entity))

    def table(self, entity: str) -> pd.DataFrame:
        """The table of ``entity``; a clear error names the entities that exist."""
        try:
            return self.entities[entity]
        except KeyError:
            raise InvalidProblemError(
                f"dataset has no entity {entity!r}; it has {list(self.entities)}."
            ) from None

    def ids(self, entity: str) -> np.ndarray:
        """The ids of ``entity`` (``<entity>_id``) as int64, in row order."""
        return self.table(entity)[id_column(entity)].to_numpy(dtype=np.int64)

    # ------------------------------------------------------------------ variables
    @property
    def variables(self) -> dict[str, str]:
        """``{variable: entity}`` for every column (link columns excepted)."""
        return dict(self._variables)

    def entity_of(self, variable: str) -> str:
        """The entity a variable lives on."""
        try:
            return self._variables[variable]
        except KeyError:
            raise InvalidProblemError(
                f"dataset has no variable {variable!r}; it has "
                f"{sorted(self._variables)[:30]}{' ...' if len(self._variables) > 30 else ''}."
            ) from None

    def get(self, variable: str) -> np.ndarray:
        """The values of ``variable`` on its own entity (a NumPy array, row order)."""
        return self.table(self.entity_of(variable))[variable].to_numpy()

    # ------------------------------------------------------------------ links (positions)
    def entity_index(self, entity: str) -> np.ndarray:
        """For each person, the row position of its ``entity`` (``arange`` for ``"person"``)."""
        if entity == "person":
            return np.arange(self.n_persons, dtype=np.int64)
        self.table(entity)
        return self._positions[entity]

    def household_index(self, entity: str) -> np.ndarray:
        """For each row of ``entity``, the row position of its household."""
        self.table(entity)
        return self._household_positions[entity]

    def map_to(
        self,
        values: Any,
        source: str,
        target: str,
        how: str = "sum",
        where: Any = None,
    ) -> np.ndarray:
        """Move values between entities: aggregate up, broadcast down.

        Parameters
        ----------
        values
            One value per row of ``source`` (array-like or Series); None means ones
            (with ``how="sum"`` that counts rows).
        source, target
            Entity names. Up means person -> any group, or a group -> household
            (aggregation with ``how``); down means group -> person or household -> group
            (each row gets its container's value).
        how
            Aggregation up: ``"sum"``, ``"any"``, ``"all"``, ``"count"`` (rows that are
            non-zero/True), ``"min"``, ``"max"``, ``"mean"``. Ignored for broadcasts.
        where
            Optional boolean mask over ``source`` rows: only those rows take part (the others
            count as absent: 0 for sums and counts, False for ``any``, skipped by
            ``all/min/max/mean``; a group with no selected row gets 0, True for ``all``).
            In a broadcast (or ``source == target``) unselected rows carry 0.

        Returns
        -------
        ndarray
            One value per row of ``target`` (float64 for aggregations, bool for ``any``/``all``,
            the source dtype for broadcasts).
        """
        n_src = self.n(source)
        self.table(target)
        vals = np.ones(n_src) if values is None else np.asarray(values)
        if vals.shape != (n_src,):
            raise InvalidProblemError(
                f"map_to: values have shape {vals.shape} but {source!r} has {n_src} rows."
            )
        mask = None
        if where is not None:
            mask = np.asarray(where, dtype=bool)
            if mask.shape != (n_src,):
                raise InvalidProblemError(
                    f"map_to: `where` has shape {mask.shape} but {source!r} has {n_src} rows."
                )
        if mask is not None and not is_up(source, target):
            vals = np.where(mask, vals, 0)  # a broadcast carries 0 from unselected rows
        if source == target:
            return vals
        if source == "person":
            index = self.entity_index(target)
        elif target == "household":
            index = self.household_index(source)
        elif target == "person":
            return vals[self.entity_index(source)]
        elif source == "household":
            return vals[self.household_index(target)]
        else:
            raise InvalidProblemError(
                f"map_to: {source!r} and {target!r} are not nested in each other; go through "
                f"'person' or 'household'."
            )
        return aggregate(vals, index, self.n(target), how, mask)

    # ------------------------------------------------------------------ derived datasets
    def subset(self, households: Any) -> Dataset:
        """The dataset restricted to some households (boolean mask or row positions).

        Persons and group rows follow their households; row order is kept.
        """
        keep = np.zeros(self.n_households, dtype=bool)
        sel = np.asarray(households)
        if sel.dtype == bool:
            if sel.shape != (self.n_households,):
                raise InvalidProblemError(
                    f"subset: mask has shape {sel.shape}, expected ({self.n_households},)."
                )
            keep = sel
        else:
            keep[sel.astype(np.int64)] = True
        tables = {
            e: frame.loc[keep[self.household_index(e)]].reset_index(drop=True)
            for e, frame in self.entities.items()
        }
        return Dataset(tables, period=self.period, name=self.name)

    def assign(self, entity: str, **columns: Any) -> Dataset:
        """A new dataset with columns added to (or replaced in) one entity table."""
        frame = self.table(entity).copy()
        for col, values in columns.items():
            arr = np.asarray(values)
            if arr.ndim == 0:
                arr = np.full(len(frame), arr)
            if arr.shape != (len(frame),):
                raise InvalidProblemError(
                    f"assign: {entity}.{col} has shape {arr.shape}, expected ({len(frame)},)."
                )
            frame[col] = arr
        tables = dict(self.entities)
        tables[entity] = frame
        return Dataset(tables, period=self.period, name=self.name)

    def copy(self) -> Dataset:
        """A deep copy."""
        return Dataset(
            {e: f.copy() for e, f in self.entities.items()}, period=self.period, name=self.name
        )

    # ------------------------------------------------------------------ files
    def to_hdf5(
        self,
        path: str,
        *,
        layout: str = "calibopt",
        period: int | str | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write the dataset to an HDF5 file (atomically: temp file, then rename).

        Parameters
        ----------
        path
            Output file.
        layout
            ``"calibopt"`` (lossless; see :mod:`calibopt.datasets.hdf5`) or
            ``"policyengine"`` (``/<variable>/<period>``, person links written as
            ``person_<entity>_id``; loadable by PolicyEngine tools).
        period
            Period for the PolicyEngine layout (default: the dataset's ``period``).
        overwrite
            Replace an existing file; otherwise an existing file is an error.
        """
        from .hdf5 import write_dataset

        write_dataset(self, path, layout=layout, period=period, overwrite=overwrite)

    @classmethod
    def from_hdf5(
        cls,
        path: str,
        *,
        period: int | str | None = None,
        entities: Mapping[str, str] | None = None,
    ) -> Dataset:
        """Read a dataset written by :meth:`to_hdf5`, or a PolicyEngine-style file.

        The layout is detected from the file. For a PolicyEngine ``/<variable>/<period>``
        file, ``period`` picks the period (needed when the file holds several), and
        ``entities`` (``{variable: entity}``) resolves variables whose length matches two
        entities.
        """
        from .hdf5 import read_dataset

        return read_dataset(path, period=period, entities=entities)

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        parts = ", ".join(f"{e}={len(f)}" for e, f in self.entities.items())
        label = f"{self.name!r}, " if self.name else ""
        return f"Dataset({label}{parts}, period={self.period!r})"

    def equals(self, other: Dataset) -> bool:
        """True when both datasets have the same tables (columns, values and dtypes kinds)."""
        if list(self.entities) != list(other.entities):
            return False
        for e, frame in self.entities.items():
            o = other.entities[e]
            if list(frame.columns) != list(o.columns) or len(frame) != len(o):
                return False
            for col in frame.columns:
                a, b = frame[col].to_numpy(), o[col].to_numpy()
                if a.dtype.kind in "fc" or b.dtype.kind in "fc":
                    if not np.array_equal(a.astype(float), b.astype(float), equal_nan=True):
                        return False
                elif not np.array_equal(a.astype(object), b.astype(object)):
                    return False
        return True
