"""The local-area calibration matrix: targets x (household placed in a geography) columns.

:class:`MatrixBuilder` reads the targets of a :class:`~calibopt.targets.TargetsDatabase`,
evaluates each target's stratum on a :class:`~calibopt.datasets.Dataset`, and writes the sparse
matrix ``X`` directly in CSR form: row ``j`` holds, for every calibrated geography inside the
target's geography, the household contributions of :class:`ContributionEvaluator`, at columns
``g * n_households + h``. A national target covers every column, a state target only the
columns of that state's districts, a district target one column block.

Cost: one contribution vector per distinct (variable, domain[, rule set]) and one vectorised
fill per (target, run of geographies with the same rule set); memory is the final CSR arrays
(12 bytes per non-zero) plus the small per-household vectors. No Python loop runs per
household or per column.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..datasets.dataset import Dataset
from ..datasets.rules import GeographyRules
from ..errors import InvalidProblemError
from ..targets import TargetFilter, TargetsDatabase, domain_of, format_constraints
from .calibration_matrix import CalibrationMatrix
from .columns import ColumnMap
from .evaluate import ContributionEvaluator
from .groups import target_groups

__all__ = ["MatrixBuilder"]

_PARTIAL = ("drop", "keep", "error")


class MatrixBuilder:
    """Build local-area calibration matrices from a targets database and unit data.

    Parameters
    ----------
    database
        A :class:`TargetsDatabase`, or its URL / SQLite path.
    dataset
        A :class:`~calibopt.datasets.Dataset` or the path of an HDF5 dataset file. Its
        household table needs ``household_weight`` and ``state_fips`` for the design prior.
    geographies
        The geographies to calibrate, in column order: district GEOIDs (or state FIPS codes
        with ``level="state"``). Default: every district (state) that has a district (state)
        target in the database, sorted.
    period
        The period to calibrate (default: the dataset's period); older targets are uprated.
    rules
        :class:`~calibopt.datasets.GeographyRules` for variables that depend on where a
        household is placed; the callback runs once per rule set (state) and is cached.
    level
        ``"district"`` (default) or ``"state"`` columns.
    reform_id
        Which reform's targets (0 = current law).
    partial
        A national or state target whose geography is only partly calibrated (the database
        knows geographies inside it that are not in ``geographies``): ``"drop"`` it
        (default), ``"keep"`` it (its value then counts the calibrated part only), or
        ``"error"``.
    """

    def __init__(
        self,
        database: TargetsDatabase | str | os.PathLike,
        dataset: Dataset | str | os.PathLike,
        geographies: Sequence[Any] | np.ndarray | None = None,
        *,
        period: int | None = None,
        rules: GeographyRules | None = None,
        level: str = "district",
        reform_id: int = 0,
        partial: str = "drop",
    ) -> None:
        self.database = (
            database if isinstance(database, TargetsDatabase) else TargetsDatabase(database)
        )
        self.dataset = dataset if isinstance(dataset, Dataset) else Dataset.from_hdf5(dataset)
        if rules is not None and not isinstance(rules, GeographyRules):
            raise InvalidProblemError(
                f"`rules` must be a calibopt.datasets.GeographyRules, got {type(rules).__name__}."
            )
        if level not in ("district", "state"):
            raise InvalidProblemError(f"level must be 'district' or 'state', got {level!r}.")
        if rules is not None and rules.level == "district" and level == "state":
            raise InvalidProblemError("district-level rules need district columns.")
        if partial not in _PARTIAL:
            raise InvalidProblemError(f"partial must be one of {_PARTIAL}, got {partial!r}.")
        self.level = level
        self.rules = rules
        self.reform_id = int(reform_id)
        self.partial = partial
        self.period = period if period is not None else self.dataset.period
        if self.period is None:
            raise InvalidProblemError(
                "no period: pass period=... (the dataset does not say which year it describes)."
            )
        self.period = int(self.period)
        self._known = self.database.geographies()
        if geographies is None:
            geographies = sorted(self._known[level])
            if not geographies:
                raise InvalidProblemError(
                    f"the database has no {level}-level targets to take the geographies from; "
                    f"pass geographies=[...] explicitly."
                )
        self.columns = ColumnMap(
            geographies,
            self.dataset.ids("household"),
            level=level,
            household_weight=self._household_column("household_weight", np.float64),
            home_state=self._household_column("state_fips", np.int64),
        )
        if self.dataset.n_households == 0:
            raise InvalidProblemError("the dataset has no households.")
        self.evaluator = ContributionEvaluator(self.dataset, rules)

    def _household_column(self, name: str, dtype: type) -> np.ndarray | None:
        """A household column for the design prior (None when absent), checked."""
        hh = self.dataset.household
        if name not in hh:
            return None
        values = pd.to_numeric(hh[name], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if dtype is np.int64:
            bad |= values != np.round(values)
        if bad.any():
            raise InvalidProblemError(
                f"household.{name} has {int(bad.sum())} missing or invalid value(s), e.g. at "
                f"household_id {self.dataset.ids('household')[bad][:5].tolist()}."
            )
        return values.astype(dtype)

    # ------------------------------------------------------------------ geography checks
    def _scope_check_filter(self, flt: TargetFilter) -> None:
        if flt.geographic_ids is None:
            return
        allowed = {"US"} | {str(s) for s in self.columns.states}
        if self.level == "district":
            allowed |= {str(g) for g in self.columns.geographies}
        unknown = [g for g in flt.geographic_ids if g not in allowed]
        if unknown:
            raise InvalidProblemError(
                f"the filter names geograph{'y' if len(unknown) == 1 else 'ies'} {unknown[:10]} "
                f"that the calibrated data lack; calibrated {self.level}s: "
                f"{self.columns.geographies[:12].tolist()}"
                f"{' ...' if self.columns.n_geographies > 12 else ''} (states "
                f"{sorted(set(self.columns.states.tolist()))[:12]}), or 'US'."
            )

    # ------------------------------------------------------------------ build
    def build(
        self,
        filter: TargetFilter | Mapping[str, Any] | None = None,
        *,
        progress: bool | None = None,
    ) -> CalibrationMatrix:
        """Build ``targets``, the CSR matrix ``X`` and the column map.

        Parameters
        ----------
        filter
            A :class:`~calibopt.targets.TargetFilter` (or its dict form) selecting targets by
            variable, domain variable, geographic level and geography id.
        progress
            Show a progress bar (default: only on a terminal).

        Raises
        ------
        InvalidProblemError
            Unknown variables or operations in a target, a filter geography the data lack,
            no target left, duplicate targets, partial geographies with ``partial="error"``.
        """
        t0 = time.perf_counter()
        flt = TargetFilter.from_mapping(filter)
        self._scope_check_filter(flt)
        frame = self.database.targets(flt, period=self.period, reform_id=self.reform_id)
        t_query = time.perf_counter() - t0
        frame, dropped = self._scope(frame)
        if frame.empty:
            raise InvalidProblemError(
                f"no target matches: the filter {flt} and the calibrated {self.level}s leave "
                f"nothing for period {self.period} (dropped {len(dropped)} whose geography is "
                f"not or only partly calibrated)."
            )
        frame = self._name_rows(frame)
        t1 = time.perf_counter()
        blocks = self._blocks(frame, progress)
        frame = frame.drop(columns="_scope")
        t_eval = time.perf_counter() - t1
        t2 = time.perf_counter()
        X, nnz = self._assemble(blocks, progress)
        t_fill = time.perf_counter() - t2
        frame["nnz"] = nnz
        info = {
            "rule_calls": dict(self.evaluator.rule_calls),
            "dropped_targets": dropped,
            "timings": {
                "query": t_query,
                "evaluate": t_eval,
                "fill": t_fill,
                "total": time.perf_counter() - t0,
            },
        }
        return CalibrationMatrix(frame, X, self.columns, period=self.period, info=info)

    def _scope(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Each target's geography positions; drop targets outside / partly outside."""
        states = self.columns.states
        geos = self.columns.geographies
        state_set = set(states.tolist())
        by_state = {s: np.flatnonzero(states == s) for s in state_set}
        all_pos = np.arange(geos.size)
        scopes: list[np.ndarray | None] = []
        partial: list[bool] = []
        for lvl, gid in zip(frame["geo_level"], frame["geographic_id"], strict=True):
            if lvl == "national":
                outside = (self._known["state"] - state_set) | (
                    self._known["district"] - set(geos.tolist())
                    if self.level == "district"
                    else set()
                )
                scopes.append(all_pos)
                partial.append(bool(outside))
            elif lvl == "state":
                s = int(gid)
                pos = by_state.get(s)
                scopes.append(pos)
                known = {d for d in self._known["district"] if d // 100 == s}
                partial.append(
                    pos is not None
                    and self.level == "district"
                    and bool(known - set(geos[pos].tolist()))
                )
            else:
                d = int(gid)
                if self.level == "state":
                    raise InvalidProblemError(
                        f"district target(s) (e.g. {d}) cannot be calibrated with state columns; "
                        f"filter them out (geo_levels=['national', 'state'])."
                    )
                pos = np.flatnonzero(geos == d)
                scopes.append(pos if pos.size else None)
                partial.append(False)
        missing = np.array([s is None for s in scopes], dtype=bool)
        part = np.array(partial, dtype=bool)
        if part.any() and self.partial == "error":
            ex = frame.loc[part, ["target_id", "variable", "geo_level", "geographic_id"]]
            raise InvalidProblemError(
                f"{int(part.sum())} target(s) cover geographies only partly calibrated, e.g. "
                f"{ex.head(3).to_dict('records')}; pass partial='drop' or 'keep', or calibrate "
                f"all their geographies."
            )
        drop = missing | (part & (self.partial == "drop"))
        frame = frame.assign(_scope=scopes)
        dropped = frame.loc[drop].drop(columns="_scope").reset_index(drop=True)
        dropped["reason"] = np.where(missing[drop], "not calibrated", "partly calibrated")
        return frame.loc[~drop].reset_index(drop=True), dropped

    @staticmethod
    def _name_rows(frame: pd.DataFrame) -> pd.DataFrame:
        domains = [domain_of(cs) for cs in frame["constraints"]]
        keys = list(zip(frame["variable"], frame["constraints"], strict=True))
        dup = pd.Series(keys).duplicated(keep=False).to_numpy()
        if dup.any():
            bad = frame.loc[dup, ["target_id", "stratum_id", "variable", "geographic_id"]]
            raise InvalidProblemError(
                f"duplicate targets: {int(dup.sum())} rows give the same variable for the same "
                f"constraints through different strata, e.g. {bad.head(4).to_dict('records')}; "
                f"deactivate or delete all but one."
            )
        names = [
            f"{gid}/{var}" + (f"|{format_constraints(dom).replace(' ', '')}" if dom else "")
            for gid, var, dom in zip(
                frame["geographic_id"], frame["variable"], domains, strict=True
            )
        ]
        frame = frame.assign(name=names, group=target_groups(frame))
        return frame

    def _blocks(self, frame: pd.DataFrame, progress: bool | None) -> list[list[tuple]]:
        """Per row: ``[(geography positions, household positions, values), ...]`` in
        increasing column order."""
        from tqdm.auto import tqdm

        ev = self.evaluator
        rules = self.rules
        keys = (
            np.array(
                [
                    rules.key(g) if self.level == "district" else int(g)
                    for g in self.columns.geographies
                ]
            )
            if rules is not None
            else None
        )
        sparse_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

        def nonzeros(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            hit = sparse_cache.get(id(vec))
            if hit is None:
                idx = np.flatnonzero(vec)
                hit = (idx, vec[idx])
                sparse_cache[id(vec)] = hit
            return hit

        rows = []
        iterator = zip(
            frame["variable"],
            frame["constraints"],
            frame["_scope"],
            frame["target_id"],
            strict=True,
        )
        for var, cons, scope, tid in tqdm(
            iterator,
            total=len(frame),
            desc="evaluating targets",
            disable=_disable(progress),
            leave=False,
        ):
            domain = domain_of(cons)
            where = f"target {tid} ({var}, stratum '{format_constraints(cons) or 'national'}')"
            if keys is None or not ev.depends_on_geography(var, domain):
                idx, vals = nonzeros(ev.contribution(var, domain, None, where))
                rows.append([(scope, idx, vals)] if idx.size else [])
                continue
            blocks = []
            run_keys = keys[scope]
            cuts = np.flatnonzero(np.diff(run_keys)) + 1
            for run in np.split(np.arange(scope.size), cuts):
                key = int(run_keys[run[0]])
                idx, vals = nonzeros(ev.contribution(var, domain, key, where))
                if idx.size:
                    blocks.append((scope[run], idx, vals))
            rows.append(blocks)
        return rows

    def _assemble(
        self, rows: list[list[tuple]], progress: bool | None
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """Write the CSR arrays in place, one vectorised fill per block."""
        from tqdm.auto import tqdm

        n_hh = self.columns.n_households
        n_cols = self.columns.n_columns
        nnz = np.array(
            [sum(g.size * i.size for g, i, _ in blocks) for blocks in rows], dtype=np.int64
        )
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(nnz, out=indptr[1:])
        total = int(indptr[-1])
        idx_dtype = np.int32 if max(n_cols, total) < np.iinfo(np.int32).max else np.int64
        indices = np.empty(total, dtype=idx_dtype)
        data = np.empty(total, dtype=np.float64)
        for j, blocks in enumerate(
            tqdm(rows, desc="filling matrix", disable=_disable(progress), leave=False)
        ):
            pos = int(indptr[j])
            # blocks are runs of increasing geography positions, in increasing order, and
            # household positions increase within a block: each row comes out sorted
            for g, idx, vals in blocks:
                size = g.size * idx.size
                out_i = indices[pos : pos + size].reshape(g.size, idx.size)
                np.add(
                    (g.astype(np.int64) * n_hh).astype(idx_dtype)[:, None],
                    idx.astype(idx_dtype)[None, :],
                    out=out_i,
                )
                data[pos : pos + size].reshape(g.size, idx.size)[...] = vals[None, :]
                pos += size
        X = sp.csr_matrix(
            (data, indices, indptr.astype(idx_dtype)), shape=(len(rows), n_cols), copy=False
        )
        X.has_sorted_indices = True
        X.has_canonical_format = True
        return X, nnz


def _disable(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
