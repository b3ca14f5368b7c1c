"""Calibrated local-area weights -> one stacked :class:`~calibopt.datasets.Dataset` in memory.

For every column ``g * n_households + h`` with a non-zero weight in a selected geography, the
household row ``h`` is copied with all its persons and group-entity rows (tax units, ...);
the copy gets the column's weight, the geography's variables and new ids
(:mod:`calibopt.stacking.ids`). Records are ordered by geography (calibrated order), then by
the household's row in the dataset; persons and group rows follow their household in their
original order.

Cost: one pass over the weight vector (a loop per geography, 12,000 households at a time)
and, per entity, a handful of gathers over the output rows. Geography-dependent variables
are computed once per rule set (state) on the whole source dataset, exactly as the matrix
builder computes them, so the file's weighted totals equal ``X @ w``. No Python loop runs per
household.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..datasets.dataset import GEOGRAPHY_VARIABLES, Dataset
from ..datasets.rules import GeographyRules
from ..errors import InvalidProblemError
from ..matrix.columns import ColumnMap
from .ids import IdScheme, choose_scheme
from .inputs import as_columns, as_dataset, as_weights, subset_positions
from .stacked import StackedDataset

__all__ = ["stacked_dataset"]

STATE, DISTRICT = GEOGRAPHY_VARIABLES
WEIGHT = "household_weight"


def stacked_dataset(
    weights: Any,
    geographies: Any,
    dataset: Any,
    subset: Any = None,
    *,
    rules: GeographyRules | None = None,
    level: str | None = None,
    variables: Sequence[str] | None = None,
    stride: int | str = "auto",
    id_dtype: str = "int32",
    derived_id_factor: int = 100,
    progress: bool | None = None,
) -> StackedDataset:
    """Build the stacked dataset in memory (what :func:`~calibopt.stacking.stack` writes).

    Parameters are those of :func:`~calibopt.stacking.stack` without the file options.

    Returns
    -------
    StackedDataset
        The dataset, the household mapping and the id scheme.
    """
    t0 = time.perf_counter()
    ds, rules = as_dataset(dataset, rules)
    columns = as_columns(geographies, ds, level)
    w = as_weights(weights, columns)
    written = subset_positions(subset, columns)
    if rules is not None and rules.level == "district" and columns.level == "state":
        raise InvalidProblemError("district-level rules need district columns.")
    keep = _kept_variables(ds, rules, variables, columns.level)
    entities = list(ds.entities)
    layout = _HouseholdLayout(ds)

    # one pass over the weights: records per geography and entity; households to write
    counts, sel_g, sel_h = _scan(w, columns, written, layout, progress)
    scheme = choose_scheme(
        counts,
        columns.geographies,
        written,
        level=columns.level,
        stride=stride,
        id_dtype=id_dtype,
        derived_id_factor=derived_id_factor,
        entities=entities,
    )
    if sel_h.size == 0:
        shown = columns.geographies[written[:10]].tolist()
        raise InvalidProblemError(
            f"every weight of the selected {columns.level}s {shown}"
            f"{' ...' if written.size > 10 else ''} is zero: there is nothing to write."
        )
    t_scan = time.perf_counter() - t0

    # rows of every entity in the output, their household (output position), new columns
    hh_weight = w[sel_g * columns.n_households + sel_h]
    rows, owner, changed = _relinked(ds, layout, scheme, sel_g, sel_h)
    for e in entities:
        col = WEIGHT if e == "household" else f"{e}_weight"
        if e == "household" or col in ds.table(e).columns:
            changed[e][col] = hh_weight[owner[e]]
    hh_table = ds.household
    if columns.level == "district":
        changed["household"][DISTRICT] = columns.geographies[sel_g].astype(
            _int_dtype(hh_table, DISTRICT)
        )
    changed["household"][STATE] = columns.states[sel_g].astype(_int_dtype(hh_table, STATE))
    t1 = time.perf_counter()
    if rules is not None:
        computed = _rules_values(ds, rules, columns, sel_g, owner, rows, keep, progress)
        for var, values in computed.items():
            changed[rules.variables[var]][var] = values
    t_rules = time.perf_counter() - t1

    t2 = time.perf_counter()
    tables = {e: _table(ds.table(e), rows[e], changed[e], keep[e]) for e in entities}
    out = Dataset(tables, period=ds.period, name=f"stacked {ds.name or 'dataset'}")
    mapping = _mapping(
        changed["household"]["household_id"], ds.ids("household")[sel_h], sel_g, columns, w, sel_h
    )
    t_assemble = time.perf_counter() - t2
    info = {
        "records": {e: int(rows[e].size) for e in entities},
        "weight_total": float(hh_weight.sum()),
        "timings": {
            "scan": t_scan,
            "rules": t_rules,
            "assemble": t_assemble,
            "total": time.perf_counter() - t0,
        },
    }
    return StackedDataset(
        dataset=out,
        mapping=mapping,
        ids=scheme,
        geographies=columns.geographies[written],
        level=columns.level,
        info=info,
    )


# ---------------------------------------------------------------------------------- helpers
class _HouseholdLayout:
    """Where each household's persons and group rows are: per entity, the rows sorted by
    household (``order``), each household's first position in that order (``start``) and
    each row's rank among its household's rows (``rank``)."""

    def __init__(self, ds: Dataset) -> None:
        n = ds.n_households
        self.count: dict[str, np.ndarray] = {}
        self.order: dict[str, np.ndarray] = {}
        self.start: dict[str, np.ndarray] = {}
        self.rank: dict[str, np.ndarray] = {}
        for e in list(ds.entities)[1:]:
            hh = ds.household_index(e)
            order = np.argsort(hh, kind="stable")
            count = np.bincount(hh, minlength=n)
            start = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(count, out=start[1:])
            rank = np.empty(hh.size, dtype=np.int64)
            rank[order] = np.arange(hh.size) - start[hh[order]]
            self.count[e], self.order[e], self.start[e], self.rank[e] = count, order, start, rank
        self.per_household = (
            np.column_stack([self.count[e] for e in self.count])
            if self.count
            else np.zeros((n, 0), dtype=np.int64)
        )

    def gather(self, entity: str, households: np.ndarray) -> tuple[np.ndarray, ...]:
        """Rows of ``entity`` for a list of household rows (repeats allowed), household by
        household; with each row's position in ``households`` and each household's first
        output row."""
        cnt = self.count[entity][households]
        first = np.zeros(households.size, dtype=np.int64)
        np.cumsum(cnt[:-1], out=first[1:])
        owner = np.repeat(np.arange(households.size), cnt)
        within = np.arange(owner.size, dtype=np.int64) - first[owner]
        rows = self.order[entity][self.start[entity][households][owner] + within]
        return rows, owner, first


def _relinked(
    ds: Dataset, layout: _HouseholdLayout, scheme: IdScheme, sel_g: np.ndarray, sel_h: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Per entity: the source rows of the output records, the output household of each, and
    the new id and link columns (``{entity: {column: values}}``)."""
    entities = list(ds.entities)
    rows: dict[str, np.ndarray] = {"household": sel_h}
    owner: dict[str, np.ndarray] = {"household": np.arange(sel_h.size)}
    first: dict[str, np.ndarray] = {}
    for e in entities[1:]:
        rows[e], owner[e], first[e] = layout.gather(e, sel_h)
    new_ids = {e: scheme.assign(sel_g[owner[e]]) for e in entities}
    changed: dict[str, dict[str, Any]] = {e: {f"{e}_id": new_ids[e]} for e in entities}
    changed["person"]["household_id"] = new_ids["household"][owner["person"]]
    for e in entities[2:]:
        # a person's group: its household's first output row of that entity + the group's
        # rank within the household
        group_row = ds.entity_index(e)[rows["person"]]
        out_row = first[e][owner["person"]] + layout.rank[e][group_row]
        changed["person"][f"{e}_id"] = new_ids[e][out_row]
        changed[e]["household_id"] = new_ids["household"][owner[e]]
    return rows, owner, changed


def _scan(
    w: np.ndarray,
    columns: ColumnMap,
    written: np.ndarray,
    layout: _HouseholdLayout,
    progress: bool | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records per (geography, entity) over all geographies; (geography position, household
    row) of every non-zero weight in the written geographies, in output order."""
    from tqdm.auto import tqdm

    n_geo, n_hh = columns.n_geographies, columns.n_households
    W = w.reshape(n_geo, n_hh)
    n_ent = 1 + layout.per_household.shape[1]
    counts = np.zeros((n_geo, n_ent), dtype=np.int64)
    is_written = np.zeros(n_geo, dtype=bool)
    is_written[written] = True
    picked: list[np.ndarray] = []
    for g in tqdm(range(n_geo), desc="scanning weights", disable=_disable(progress), leave=False):
        idx = np.flatnonzero(W[g])
        counts[g, 0] = idx.size
        if idx.size and n_ent > 1:
            counts[g, 1:] = layout.per_household[idx].sum(axis=0)
        if is_written[g]:
            picked.append(idx)
    sizes = np.array([p.size for p in picked], dtype=np.int64)
    sel_g = np.repeat(written.astype(np.int64), sizes)
    sel_h = np.concatenate(picked).astype(np.int64) if picked else np.zeros(0, np.int64)
    return counts, sel_g, sel_h


def _kept_variables(
    ds: Dataset, rules: GeographyRules | None, variables: Sequence[str] | None, level: str
) -> dict[str, list[str]]:
    """Per entity, the columns to write, in order (ids and links first as in the source)."""
    rule_vars = dict(rules.variables) if rules is not None else {}
    for var, entity in rule_vars.items():
        if entity not in ds.entities:
            raise InvalidProblemError(
                f"the geography rules compute {var!r} on entity {entity!r}, which the dataset "
                f"lacks (entities: {list(ds.entities)})."
            )
    wanted = None
    if variables is not None:
        if isinstance(variables, str):
            variables = [variables]
        known = set(ds.variables) | set(rule_vars)
        unknown = [v for v in variables if v not in known]
        if unknown:
            raise InvalidProblemError(
                f"variables {unknown[:10]} are neither in the dataset nor computed by the "
                f"geography rules; known: {sorted(known)[:30]}."
            )
        wanted = set(variables)
    keep: dict[str, list[str]] = {}
    for e, frame in ds.entities.items():
        always = {f"{x}_id" for x in ds.entities} | {WEIGHT, f"{e}_weight"}
        if e == "household":
            always |= {STATE, DISTRICT}
        cols = [c for c in frame.columns if wanted is None or c in always or c in wanted]
        cols += [
            v
            for v, ent in rule_vars.items()
            if ent == e and v not in cols and (wanted is None or v in wanted)
        ]
        if e == "household":
            cols += [c for c in (WEIGHT, STATE) if c not in cols]
            if level == "district" and DISTRICT not in cols:
                cols.append(DISTRICT)
            if level == "state" and DISTRICT in cols:
                cols.remove(DISTRICT)  # a state placement does not say which district
        keep[e] = cols
    return keep


def _int_dtype(frame: pd.DataFrame, column: str) -> np.dtype:
    """The integer dtype of an existing geography column (int64 when absent or not int)."""
    if column in frame.columns and frame[column].dtype.kind in "iu":
        return frame[column].dtype
    return np.dtype(np.int64)


def _rules_values(
    ds: Dataset,
    rules: GeographyRules,
    columns: ColumnMap,
    sel_g: np.ndarray,
    owner: dict[str, np.ndarray],
    rows: dict[str, np.ndarray],
    keep: dict[str, list[str]],
    progress: bool | None,
) -> dict[str, np.ndarray]:
    """The rules variables of every output row, each computed under its destination's rule
    set on the whole source dataset (one call per rule set, as the matrix builder does)."""
    from tqdm.auto import tqdm

    wanted = {v: e for v, e in rules.variables.items() if v in keep[e]}
    if not wanted:
        return {}
    geos = columns.geographies
    key_of = np.array(
        [rules.key(g) if columns.level == "district" else int(g) for g in geos], dtype=np.int64
    )
    # output rows are sorted by geography position: each written geography is one slice
    bounds = {
        e: np.searchsorted(sel_g[owner[e]], np.arange(geos.size + 1), side="left")
        for e in set(wanted.values())
    }
    written = np.unique(sel_g)
    out: dict[str, np.ndarray] = {}
    for key in tqdm(
        np.unique(key_of[written]),
        desc="geography rules",
        disable=_disable(progress),
        leave=False,
    ):
        values = rules.evaluate(ds, int(key))
        for var, e in wanted.items():
            vals = values[var]
            arr = out.get(var)
            if arr is None:
                arr = out[var] = np.empty(rows[e].size, dtype=vals.dtype)
            elif np.result_type(arr, vals) != arr.dtype:
                arr = out[var] = arr.astype(np.result_type(arr, vals))
            for g in written[key_of[written] == key]:
                lo, hi = bounds[e][g], bounds[e][g + 1]
                arr[lo:hi] = vals[rows[e][lo:hi]]
    return out


def _table(
    frame: pd.DataFrame, rows: np.ndarray, changed: dict[str, Any], columns: list[str]
) -> pd.DataFrame:
    """The output table: changed columns as given, the others copied from ``rows``."""
    data = {}
    for col in columns:
        if col in changed:
            data[col] = changed[col]
        elif isinstance(frame[col].dtype, np.dtype):
            data[col] = frame[col].to_numpy()[rows]
        else:  # categorical, string and other extension arrays keep their dtype
            data[col] = frame[col].array.take(rows)
    return pd.DataFrame(data, copy=False)


def _mapping(
    new_ids: np.ndarray,
    original_ids: np.ndarray,
    sel_g: np.ndarray,
    columns: ColumnMap,
    w: np.ndarray,
    sel_h: np.ndarray,
) -> pd.DataFrame:
    """new_household_id, original_household_id, [congressional_district], state_fips,
    household_weight, matrix_column."""
    col = sel_g * columns.n_households + sel_h
    data: dict[str, np.ndarray] = {
        "new_household_id": new_ids.astype(np.int64),
        "original_household_id": original_ids,
    }
    if columns.level == "district":
        data["congressional_district"] = columns.geographies[sel_g]
    data["state_fips"] = columns.states[sel_g]
    data[WEIGHT] = w[col]
    data["matrix_column"] = col
    return pd.DataFrame(data)


def _disable(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
