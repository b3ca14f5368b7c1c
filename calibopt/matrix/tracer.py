"""Navigate a local-area matrix: columns, rows, groups, households.

>>> tracer = matrix.tracer()                         # doctest: +SKIP
>>> tracer.column_info(12022)                        # household and geography of a column
>>> tracer.household_columns(654)                    # {geography: column} for one household
>>> tracer.row_info(80)                              # the target definition of a row
>>> tracer.group_rows("state/snap[snap]")            # the rows of a target group
>>> tracer.print_structure()                         # a printed summary
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from ..targets.constraints import format_constraints

if TYPE_CHECKING:
    from .calibration_matrix import CalibrationMatrix

__all__ = ["MatrixTracer"]

_ROW_FIELDS = [
    "target_id",
    "stratum_id",
    "name",
    "group",
    "variable",
    "period",
    "value",
    "original_value",
    "uprating_factor",
    "tolerance",
    "geo_level",
    "geographic_id",
    "domain_variable",
    "source",
    "nnz",
]


class MatrixTracer:
    """Lookups between the matrix's rows/columns and targets/households/geographies.

    Parameters
    ----------
    matrix
        A :class:`~calibopt.matrix.CalibrationMatrix`.
    """

    def __init__(self, matrix: CalibrationMatrix) -> None:
        self.matrix = matrix
        self.columns = matrix.columns
        self.targets = matrix.targets
        self._groups = matrix.group_table()

    # ------------------------------------------------------------------ columns
    def column_info(self, column: int) -> dict[str, Any]:
        """``column``, ``geography``, ``state_fips``, ``household_id``, ``household_index``."""
        row = self.columns.locate([column]).iloc[0]
        return {k: int(v) for k, v in row.items()}

    def column_of(self, household_id: int, geography: Any) -> int:
        """The column of a household (by id) placed in a geography."""
        return int(self.columns.column(household_id, geography))

    def household_columns(self, household_id: int) -> dict[int, int]:
        """``{geography: column}`` for every placement of a household (original id)."""
        return self.columns.household_columns(household_id)

    def column_entries(self, column: int) -> pd.DataFrame:
        """The non-zero entries of one column: ``row``, ``name``, ``group``, ``value``."""
        self.columns.locate([column])
        col = self.matrix.X[:, [int(column)]].tocoo()
        order = np.argsort(col.row)
        rows = col.row[order]
        return pd.DataFrame(
            {
                "row": rows,
                "name": self.targets["name"].to_numpy()[rows],
                "group": self.targets["group"].to_numpy()[rows],
                "value": col.data[order],
            }
        )

    # ------------------------------------------------------------------ rows
    def _check_row(self, row: int) -> int:
        r = int(row)
        if not 0 <= r < len(self.targets):
            raise InvalidProblemError(f"row {row} outside 0..{len(self.targets) - 1}.")
        return r

    def row_info(self, row: int) -> dict[str, Any]:
        """The target definition of a row: ids, variable, value, geography, domain,
        constraints (text), group, non-zeros."""
        r = self._check_row(row)
        rec = self.targets.iloc[r]
        info: dict[str, Any] = {"row_index": r}
        for key in _ROW_FIELDS:
            if key in rec.index:
                value = rec[key]
                info[key] = value.item() if isinstance(value, np.generic) else value
        info["constraints"] = format_constraints(rec["constraints"]) or "(national)"
        return info

    def row_of(self, *, target_id: int | None = None, name: str | None = None) -> int:
        """The row of a target, by database ``target_id`` or by ``name``."""
        if (target_id is None) == (name is None):
            raise InvalidProblemError("row_of needs exactly one of target_id= or name=.")
        col, value = ("target_id", target_id) if target_id is not None else ("name", name)
        hits = np.flatnonzero(self.targets[col].to_numpy() == value)
        if not hits.size:
            raise InvalidProblemError(f"no row with {col} {value!r} in this matrix.")
        return int(hits[0])

    def row_entries(self, row: int) -> pd.DataFrame:
        """The non-zero entries of one row with their household and geography."""
        r = self._check_row(row)
        X = self.matrix.X
        start, end = X.indptr[r], X.indptr[r + 1]
        frame = self.columns.locate(X.indices[start:end])
        frame["value"] = X.data[start:end]
        return frame

    # ------------------------------------------------------------------ groups
    def groups(self) -> pd.DataFrame:
        """One row per target group (``group_id``, ``group``, level, variable, domain,
        ``n_targets``, ``total``, ``first_row``)."""
        return self._groups.copy()

    def group_rows(self, group: int | str) -> pd.DataFrame:
        """The rows of a group (by ``group_id`` or label), with ``row_index`` first."""
        table = self._groups
        if isinstance(group, int | np.integer):
            hit = table.loc[table["group_id"] == int(group), "group"]
        else:
            hit = table.loc[table["group"] == group, "group"]
        if hit.empty:
            raise InvalidProblemError(
                f"no target group {group!r}; groups: {table['group'].tolist()[:20]}."
            )
        label = hit.iloc[0]
        rows = np.flatnonzero(self.targets["group"].to_numpy() == label)
        cols = [c for c in _ROW_FIELDS if c in self.targets.columns]
        out = self.targets.iloc[rows][cols].reset_index(drop=True)
        out.insert(0, "row_index", rows)
        return out

    # ------------------------------------------------------------------ summary
    def structure(self, show: int = 5) -> str:
        """A text summary: dimensions, column blocks (first and last ``show``), groups."""
        X = self.matrix.X
        cm = self.columns
        m, n = X.shape
        density = X.nnz / (m * n) if m and n else 0.0
        lines = [
            "MATRIX STRUCTURE",
            f"  {m:,} rows (targets) x {n:,} columns = {cm.n_geographies:,} {cm.level}s x "
            f"{cm.n_households:,} households",
            f"  non-zeros {X.nnz:,} (density {density:.4%}), period {self.matrix.period}",
            "",
            f"COLUMN BLOCKS (one per {cm.level}, households in dataset order)",
        ]
        blocks = cm.blocks()
        if len(blocks) > 2 * show:
            shown = pd.concat([blocks.head(show), blocks.tail(show)])
            lines.append(shown.to_string(index=False))
            lines.append(f"  ... {len(blocks) - 2 * show} more in between")
        else:
            lines.append(blocks.to_string(index=False))
        lines += ["", "TARGET GROUPS"]
        table = self._groups[["group_id", "group", "n_targets", "total", "first_row"]]
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:,.0f}"))
        dropped = self.matrix.info.get("dropped_targets")
        if dropped is not None and len(dropped):
            lines.append(
                f"\n  {len(dropped)} target(s) dropped (geography not or partly calibrated)."
            )
        return "\n".join(lines)

    def print_structure(self, show: int = 5, out: Callable[[str], Any] = print) -> None:
        """Print :meth:`structure`."""
        out(self.structure(show))
