"""The stacked dataset object: the data, the household mapping and the id scheme."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..datasets.dataset import Dataset
from .ids import IdScheme

__all__ = ["StackedDataset"]


@dataclass
class StackedDataset:
    """A stacked local-area dataset, built by :func:`~calibopt.stacking.stacked_dataset` /
    :func:`~calibopt.stacking.stack` or read by :func:`~calibopt.stacking.load`.

    Attributes
    ----------
    dataset : Dataset
        Households (``household_weight`` = the calibrated weight, ``state_fips`` and
        ``congressional_district_geoid`` = the geography), persons and group entities, with
        new ids.
    mapping : DataFrame or None
        One row per household record: ``new_household_id``, ``original_household_id``,
        ``congressional_district`` (district columns only), ``state_fips``,
        ``household_weight``, ``matrix_column``. None when a loaded file's mapping CSV is
        missing.
    ids : IdScheme
        The id ranges (``ids.id_range(3701)``, ``ids.geography_of(ids)``).
    geographies : ndarray
        The geographies in the file, in file order.
    level : str
        ``"district"`` or ``"state"``.
    path, mapping_path : Path or None
        Where the file and its mapping CSV are (once written or loaded).
    layout : str or None
        ``"calibopt"`` or ``"policyengine"`` (once written or loaded).
    info : dict
        Record counts, total weight, timings in seconds.
    """

    dataset: Dataset
    mapping: pd.DataFrame | None
    ids: IdScheme
    geographies: np.ndarray
    level: str
    path: Path | None = None
    mapping_path: Path | None = None
    layout: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def write(
        self,
        path: str | os.PathLike,
        *,
        layout: str = "calibopt",
        mapping_path: str | os.PathLike | None = None,
        period: int | str | None = None,
        overwrite: bool = False,
    ) -> StackedDataset:
        """Write the HDF5 file and the mapping CSV atomically; see
        :func:`calibopt.stacking.stack` for the parameters. Returns a copy with ``path``,
        ``mapping_path`` and ``layout`` set."""
        from .files import write_stacked

        return write_stacked(
            self,
            path,
            layout=layout,
            mapping_path=mapping_path,
            period=period,
            overwrite=overwrite,
        )

    def with_location(self, path: Path, mapping_path: Path | None, layout: str) -> StackedDataset:
        """A copy that records where it was written or read from."""
        return replace(self, path=path, mapping_path=mapping_path, layout=layout)

    def summary(self) -> str:
        """One line per entity: records and id range; the geographies and total weight."""
        lines = [
            f"stacked dataset: {self.geographies.size} {self.level}"
            f"{'s' if self.geographies.size != 1 else ''}, total weight "
            f"{float(self.dataset.household['household_weight'].sum()):,.6g}; {self.ids!r}"
        ]
        for e in self.dataset.entities:
            ids = self.dataset.ids(e)
            lines.append(
                f"  {e:<12} {ids.size:>10,} records, ids {int(ids.min()):,} .. {int(ids.max()):,}"
                if ids.size
                else f"  {e:<12} {0:>10,} records"
            )
        if self.path is not None:
            lines.append(f"  file: {self.path} ({self.layout} layout)")
        if self.mapping_path is not None:
            lines.append(f"  mapping: {self.mapping_path}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = ", ".join(f"{e}={n:,}" for e, n in self._counts().items())
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        return (
            f"StackedDataset({self.geographies.size} {self.level}s, {counts}, "
            f"stride={self.ids.stride:,}{where})"
        )

    def _counts(self) -> dict[str, int]:
        return {e: len(t) for e, t in self.dataset.entities.items()}
