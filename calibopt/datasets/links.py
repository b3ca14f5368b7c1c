"""Checking a dataset's entity tables and resolving their links (ids) to row positions.

The rules are those of :class:`~calibopt.datasets.Dataset`: every table has unique integer
ids ``<entity>_id``; the person table links each person to its household and to one row of
every other group entity; a group table links to its household; a group's persons all live in
the group's household; variable names are unique across tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError

__all__ = ["Links", "id_column", "link_entities"]


@dataclass
class Links:
    """The resolved links of a dataset (row positions, not ids).

    Attributes
    ----------
    positions
        ``{entity: for each person, the row of its entity}`` (household and groups).
    household_positions
        ``{entity: for each row of entity, the row of its household}`` (every entity).
    variables
        ``{variable: entity}`` for every column but the link columns.
    """

    positions: dict[str, np.ndarray]
    household_positions: dict[str, np.ndarray]
    variables: dict[str, str]


def id_column(entity: str) -> str:
    """The id column of an entity table: ``<entity>_id``."""
    return f"{entity}_id"


def _as_int_ids(values: pd.Series, where: str) -> np.ndarray:
    """Integer ids from a column, refusing missing or non-integral values."""
    if values.isna().any():
        first = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise InvalidProblemError(f"{where} has a missing value at row {first}; ids must be set.")
    arr = values.to_numpy()
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise InvalidProblemError(
        f"{where} must hold integer ids, got dtype {values.dtype}; convert it with "
        f".astype('int64')."
    )


def _entity_ids(entities: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """Each table's ids, checked: present, integral, unique."""
    ids = {}
    for entity, frame in entities.items():
        col = id_column(entity)
        if col not in frame.columns:
            raise InvalidProblemError(
                f"the {entity!r} table lacks its id column {col!r} (columns: "
                f"{list(frame.columns)[:10]})."
            )
        values = _as_int_ids(frame[col], f"{entity}.{col}")
        dup = pd.Index(values).duplicated()
        if dup.any():
            first = values[np.flatnonzero(dup)[:5]].tolist()
            raise InvalidProblemError(
                f"{entity}.{col} has {int(dup.sum())} duplicated id(s), e.g. {first}; "
                f"ids must be unique."
            )
        ids[entity] = values
    return ids


def _check_dangling(pos: np.ndarray, links: np.ndarray, where: str, entity: str) -> None:
    bad = np.flatnonzero(pos < 0)
    if bad.size:
        raise InvalidProblemError(
            f"{where} has {bad.size} dangling link(s) to {entity} ids that do not exist, "
            f"e.g. {links[bad[:5]].tolist()} (rows {bad[:5].tolist()})."
        )


def _person_links(
    person: pd.DataFrame, ids: dict[str, np.ndarray], entities: list[str]
) -> dict[str, np.ndarray]:
    """For each person, the row of its household and of each group entity; every row of
    those entities must have at least one person."""
    positions = {}
    for entity in entities:
        col = id_column(entity)
        if col not in person.columns:
            raise InvalidProblemError(
                f"the person table lacks the link column {col!r} (the {entity} of each person)."
            )
        links = _as_int_ids(person[col], f"person.{col}")
        pos = pd.Index(ids[entity]).get_indexer(links)
        _check_dangling(pos, links, f"person.{col}", entity)
        positions[entity] = pos.astype(np.int64)
        counts = np.bincount(pos, minlength=ids[entity].size)
        if (counts == 0).any():
            empty = ids[entity][counts == 0]
            raise InvalidProblemError(
                f"{int(empty.size)} {entity} row(s) have no persons (e.g. {col} "
                f"{empty[:5].tolist()}); drop them or add their persons."
            )
    return positions


def _group_households(
    entities: Mapping[str, pd.DataFrame],
    ids: dict[str, np.ndarray],
    groups: list[str],
    positions: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """For each row of each group entity, its household's row; a group's persons must live
    in that household."""
    hh_index = pd.Index(ids["household"])
    out = {}
    for entity in groups:
        frame = entities[entity]
        if "household_id" not in frame.columns:
            raise InvalidProblemError(f"the {entity!r} table lacks the link column 'household_id'.")
        links = _as_int_ids(frame["household_id"], f"{entity}.household_id")
        pos = hh_index.get_indexer(links)
        _check_dangling(pos, links, f"{entity}.household_id", "household")
        out[entity] = pos.astype(np.int64)
        # every person's group must be in the person's own household
        via_group = pos[positions[entity]]
        bad = np.flatnonzero(via_group != positions["household"])
        if bad.size:
            p = bad[0]
            raise InvalidProblemError(
                f"{bad.size} person(s) belong to a {entity} of another household: person_id "
                f"{int(ids['person'][p])} is in household "
                f"{int(ids['household'][positions['household'][p]])} but its "
                f"{entity} {int(ids[entity][positions[entity][p]])} is in "
                f"household {int(ids['household'][via_group[p]])}."
            )
    return out


def _link_columns(entity: str, entities: Mapping[str, pd.DataFrame]) -> set[str]:
    if entity == "person":
        return {id_column(e) for e in entities if e != "person"}
    if entity == "household":
        return set()
    return {"household_id"}


def _variables(entities: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    owner: dict[str, str] = {}
    for entity, frame in entities.items():
        links = _link_columns(entity, entities)
        for col in frame.columns:
            if col in links:
                continue
            if not isinstance(col, str):
                raise InvalidProblemError(
                    f"the {entity!r} table has a non-string column name {col!r}."
                )
            if col in owner:
                raise InvalidProblemError(
                    f"variable {col!r} appears in both the {owner[col]!r} and the "
                    f"{entity!r} tables; variable names must be unique across entities "
                    f"(rename one, e.g. '{entity}_{col}')."
                )
            owner[col] = entity
    return owner


def link_entities(entities: Mapping[str, pd.DataFrame]) -> Links:
    """Check the tables (``"household"`` and ``"person"`` first, then the groups) and
    resolve their links.

    Raises
    ------
    InvalidProblemError
        A missing, duplicated or non-integral id, a missing link column, a dangling link, a
        group without persons or with persons of another household, a non-string or
        repeated variable name.
    """
    ids = _entity_ids(entities)
    groups = [e for e in entities if e not in ("household", "person")]
    positions = _person_links(entities["person"], ids, ["household", *groups])
    household_positions = {
        "household": np.arange(ids["household"].size, dtype=np.int64),
        "person": positions["household"],
    }
    household_positions |= _group_households(entities, ids, groups, positions)
    return Links(positions, household_positions, _variables(entities))
