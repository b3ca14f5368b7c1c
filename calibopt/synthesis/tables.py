"""Normalised tables and one person-level frame: :func:`flatten` and :func:`unflatten`.

A :class:`~calibopt.datasets.Dataset` keeps households, tax units (any group entity) and
persons in their own tables, linked by ids. Synthesis and repair work on one person-level
frame; :func:`flatten` joins group variables onto persons (only those asked for: a household
variable copied onto every person costs memory) and :func:`unflatten` splits a frame back into
tables. The round trip is exact: values, dtypes and row order (group rows come in the order
of their first person, which is how every calibopt dataset is laid out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from ..datasets.dataset import Dataset
from ..datasets.links import id_column
from ..errors import InvalidProblemError

__all__ = ["flatten", "group_variables", "unflatten"]


def group_variables(dataset: Dataset) -> dict[str, list[str]]:
    """``{group entity: its variables}`` (household first; link columns excluded)."""
    out: dict[str, list[str]] = {e: [] for e in dataset.entities if e != "person"}
    for var, entity in dataset.variables.items():
        if entity != "person" and var != id_column(entity):
            out[entity].append(var)
    return out


def flatten(dataset: Dataset, include: Iterable[str] | str = ()) -> pd.DataFrame:
    """One row per person: the person table plus the group variables asked for.

    Parameters
    ----------
    dataset
        The hierarchical data.
    include
        Group variables to join onto persons, entity names (all of that entity's
        variables), or ``"all"``. Default none: household and tax-unit variables are not
        copied onto persons unless asked for.

    Returns
    -------
    DataFrame
        The person table's columns (ids and links included), then the joined variables in
        entity order; dtypes are kept.
    """
    if not isinstance(dataset, Dataset):
        raise InvalidProblemError(f"`dataset` must be a Dataset, got {type(dataset).__name__}.")
    groups = group_variables(dataset)
    names = (
        list(groups)
        if include == "all"
        else [include]
        if isinstance(include, str)
        else list(include)
    )
    wanted: dict[str, list[str]] = {e: [] for e in groups}
    for name in names:
        if name in groups:
            wanted[name] = list(groups[name])
            continue
        entity = dataset.entity_of(name)
        if entity == "person":
            continue
        if name not in wanted[entity]:
            wanted[entity].append(name)
    out = dataset.person.copy()
    for entity, cols in wanted.items():
        rows = dataset.entity_index(entity)
        for col in cols:
            out[col] = dataset.table(entity)[col].take(rows).reset_index(drop=True)
    return out


def _first_rows(keys: np.ndarray) -> np.ndarray:
    """Row positions of the first occurrence of each key, in order of appearance."""
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def _check_constant(frame: pd.DataFrame, key: str, cols: list[str]) -> None:
    """Every column in ``cols`` takes one value per ``key`` (else a clear error)."""
    if not cols:
        return
    counts = frame.groupby(key, sort=False, observed=True)[cols].nunique(dropna=False)
    bad = counts.columns[(counts > 1).any()].tolist()
    if bad:
        col = bad[0]
        first = counts.index[(counts[col] > 1).to_numpy()][0]
        raise InvalidProblemError(
            f"{col!r} differs between persons of the same {key[:-3]} ({key} {first}); a group "
            f"variable must be identical within its group: repair with enforce_hierarchy("
            f"..., shared={{{col!r}: 'mode'}}) first."
        )


def unflatten(
    flat: pd.DataFrame,
    entities: Mapping[str, Iterable[str]] | None = None,
    *,
    like: Dataset | None = None,
    period: int | str | None = None,
    name: str | None = None,
) -> Dataset:
    """Split a person-level frame back into a :class:`~calibopt.datasets.Dataset`.

    Parameters
    ----------
    flat
        One row per person with ``person_id``, ``household_id`` and ``<entity>_id`` for each
        group entity.
    entities
        ``{group entity: its variables}`` for the variables in ``flat`` that belong to a group
        (e.g. ``{"household": ["household_income"], "tax_unit": ["filing_status"]}``).
    like
        A dataset with the same layout (e.g. the one ``flat`` came from): gives the entities
        when ``entities`` is None, and the values of group variables ``flat`` does not carry
        (looked up by id).
    period, name
        Of the new dataset (default: those of ``like``).

    Raises
    ------
    InvalidProblemError
        A missing id column, a group variable that differs within its group, a group (tax
        unit) whose persons live in different households, or an empty frame.
    """
    if not isinstance(flat, pd.DataFrame):
        raise InvalidProblemError(f"`flat` must be a DataFrame, got {type(flat).__name__}.")
    if len(flat) == 0:
        raise InvalidProblemError("`flat` has no rows: a dataset needs persons.")
    if entities is None:
        if like is None:
            raise InvalidProblemError("pass `entities` ({group: [variables]}) or `like=dataset`.")
        entities = group_variables(like)
    layout = {e: list(v) for e, v in entities.items()}
    layout.setdefault("household", [])
    for e in ["person", *layout]:
        if id_column(e) not in flat.columns:
            raise InvalidProblemError(
                f"`flat` lacks the id column {id_column(e)!r} (columns: {list(flat.columns)[:12]})."
            )
    group_cols = {v for cols in layout.values() for v in cols}
    tables: dict[str, pd.DataFrame] = {}
    for entity, cols in layout.items():
        key = id_column(entity)
        present = [c for c in cols if c in flat.columns]
        link = [] if entity == "household" else ["household_id"]
        if link:
            spans = flat.groupby(key, sort=False)["household_id"].nunique()
            if (spans > 1).any():
                raise InvalidProblemError(
                    f"{int((spans > 1).sum())} {entity} row(s) span several households, e.g. "
                    f"{key} {spans.index[(spans > 1).to_numpy()][0]}; every person of a "
                    f"{entity} must live in the same household."
                )
        _check_constant(flat, key, present)
        first = _first_rows(flat[key].to_numpy())
        table = flat.iloc[first][[key, *link, *present]].reset_index(drop=True)
        if like is not None and entity in like.entities:
            source = like.table(entity)
            missing = [c for c in source.columns if c not in table.columns]
            if missing:
                pos = pd.Index(source[key]).get_indexer(table[key])
                if (pos < 0).any():
                    raise InvalidProblemError(
                        f"{entity} ids {table[key][pos < 0].head(5).tolist()} are not in `like`."
                    )
                for col in missing:
                    table[col] = source[col].take(pos).to_numpy()
                    if isinstance(source[col].dtype, pd.CategoricalDtype):
                        table[col] = table[col].astype(source[col].dtype)
                table = table[[c for c in source.columns if c in table.columns]]
        tables[entity] = table
    person_cols = [c for c in flat.columns if c not in group_cols]
    tables["person"] = flat[person_cols].reset_index(drop=True)
    order = ["household", "person", *[e for e in layout if e != "household"]]
    if like is not None:
        period = like.period if period is None else period
        name = like.name if name is None else name
    return Dataset({e: tables[e] for e in order}, period=period, name=name)
