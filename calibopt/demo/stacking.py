"""The stacking demo stage: calibrated weights -> stacked files, read back and checked.

:func:`stacking_demo` writes the largest calibrated state and the whole country in both
layouts, reads each file back, recomputes every target from the file and prints how far the
file's totals are from ``X @ w``; then it follows one household placed in two geographies
through the mapping CSV.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..stacking import StackedDataset, load, stack, verify

__all__ = ["stacking_demo"]


def stacking_demo(
    country: Any,
    matrix: Any,
    weights: Any,
    outdir: str | os.PathLike,
    out: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Stack calibrated weights of the synthetic country, read the files back and verify them.

    Parameters
    ----------
    country
        The :class:`~calibopt.datasets.SyntheticCountry` (its dataset and rules).
    matrix
        The :class:`~calibopt.matrix.CalibrationMatrix` the weights calibrate.
    weights
        The calibrated weights (a vector over the matrix columns or a CalibrationResult).
    outdir
        Directory for the files (``stacked_<subset>_<layout>.h5`` and mapping CSVs;
        existing ones are replaced).
    out
        Where lines are printed.

    Returns
    -------
    DataFrame
        One row per file: ``subset``, ``layout``, ``geographies``, ``households``,
        ``persons``, ``file_kb``, ``seconds`` (stack + write), ``max_abs_error`` and
        ``max_rel_error`` of the file's totals against ``X @ w``.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    columns = matrix.columns
    states, n_per_state = np.unique(columns.states, return_counts=True)
    big_state = int(states[np.argmax(n_per_state)])
    rows = []
    written: dict[tuple[str, str], StackedDataset] = {}
    for label, subset in ((f"state {big_state}", big_state), ("all", None)):
        for layout in ("calibopt", "policyengine"):
            path = outdir / f"stacked_{'all' if subset is None else subset}_{layout}.h5"
            t0 = time.perf_counter()
            stacked = stack(weights, matrix, country, path, subset, layout=layout, overwrite=True)
            seconds = time.perf_counter() - t0
            back = load(path)
            check = verify(back, matrix, weights)
            written[(label, layout)] = back
            rows.append(
                {
                    "subset": label,
                    "layout": layout,
                    "geographies": stacked.geographies.size,
                    "households": back.dataset.n_households,
                    "persons": back.dataset.n_persons,
                    "file_kb": (path.stat().st_size + back.mapping_path.stat().st_size) / 1024,
                    "seconds": seconds,
                    "max_abs_error": float(check["error"].abs().max()),
                    "max_rel_error": float(check["rel_error"].abs().max()),
                }
            )
    table = pd.DataFrame(rows)
    out(
        f"Stacked files in {outdir}/ (HDF5 + <stem>_household_mapping.csv); every target "
        f"({len(matrix.targets):,}) recomputed from the file read back, against X @ w:"
    )
    with pd.option_context("display.width", 140, "display.float_format", "{:.4g}".format):
        out(table.to_string(index=False))
    everything = written[("all", "calibopt")]
    out(everything.summary())
    _follow_one_household(everything, out)
    return table


def _follow_one_household(stacked: StackedDataset, out: Callable[[str], None]) -> None:
    """Print the records of one original household placed in several geographies: one whose
    geography-dependent values (SNAP) differ most between its destinations."""
    mapping = stacked.mapping
    if mapping is None or mapping.empty:
        return
    hh = stacked.dataset.household.set_index("household_id")
    extra = [c for c in ("snap", "household_size") if c in hh.columns]
    view = mapping.set_index("new_household_id").join(hh[extra])
    by = view.groupby("original_household_id")
    score = pd.DataFrame(
        {
            "values": by["snap"].nunique() if "snap" in view.columns else 0,
            "states": by["state_fips"].nunique(),
            "records": by.size(),
        }
    ).sort_values(["values", "states", "records"], ascending=False, kind="stable")
    chosen = score.index[0]
    placed = view.loc[view["original_household_id"] == chosen]
    out(
        f"Original household {int(chosen)} appears {len(placed)} times in the file (new id, "
        f"geography, weight, and its values under each destination's rules):"
    )
    with pd.option_context("display.width", 140):
        out(placed.to_string())
