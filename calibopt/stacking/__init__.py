"""Stacked local-area datasets: calibrated weights -> one HDF5 dataset per set of areas.

Local-area calibration gives every (geography, household) pair a weight (the matrix columns,
geography-major). :func:`stack` turns those weights into a dataset a microsimulation model
can read: every household with a non-zero weight in a geography is copied with all its
persons and group entities, gets that weight, the geography (``state_fips``,
``congressional_district_geoid``) and the geography-dependent variables recomputed under the
destination's rules, and new ids in the geography's id range (:mod:`calibopt.stacking.ids`).
A mapping CSV links each new household to its original id.

The guarantee: for every target of the matrix, the weighted total computed from the file
equals ``X @ w`` (weights outside the written geographies set to zero) to float rounding;
:func:`verify` checks it.

>>> import numpy as np
>>> from calibopt.datasets import synthetic_country
>>> from calibopt.stacking import stacked_dataset
>>> country = synthetic_country("tiny")
>>> s = stacked_dataset(country.true_weights, country.geographies, country, subset=[3701])
>>> s.geographies.tolist(), s.ids.id_range(3701)
([3701], (2000, 2500))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..datasets.rules import GeographyRules
from .build import stacked_dataset
from .files import check_outputs, load, mapping_path_for
from .ids import IdScheme
from .stacked import StackedDataset
from .verify import file_totals, verify

__all__ = [
    "IdScheme",
    "StackedDataset",
    "file_totals",
    "load",
    "stack",
    "stacked_dataset",
    "verify",
]


def stack(
    weights: Any,
    geographies: Any,
    dataset: Any,
    output_path: str | os.PathLike,
    subset: Any = None,
    *,
    rules: GeographyRules | None = None,
    layout: str = "calibopt",
    mapping_path: str | os.PathLike | None = None,
    period: int | str | None = None,
    level: str | None = None,
    variables: Sequence[str] | None = None,
    stride: int | str = "auto",
    id_dtype: str = "int32",
    derived_id_factor: int = 100,
    overwrite: bool = False,
    progress: bool | None = None,
) -> StackedDataset:
    """Write calibrated local-area weights as a stacked HDF5 dataset and a mapping CSV.

    Parameters
    ----------
    weights
        One weight per matrix column (``n_geographies * n_households``, geography-major:
        column ``g * n_households + h``), a ``(n_geographies, n_households)`` array, or a
        :class:`~calibopt.CalibrationResult`. Finite and non-negative; zeros are left out.
    geographies
        The calibrated geographies in column-block order: a
        :class:`~calibopt.matrix.CalibrationMatrix`, its ``ColumnMap``, or a list of district
        GEOIDs (state FIPS codes for state columns).
    dataset
        The unit data the matrix was built from: a :class:`~calibopt.datasets.Dataset`, the
        path of a dataset HDF5 file, ``{entity: DataFrame}``, or a synthetic country (its
        dataset and rules).
    output_path
        The HDF5 file to write.
    subset
        Which geographies go into the file: None / ``"all"``, one GEOID, a state FIPS code
        (all its calibrated districts), or a list of these.
    rules
        The :class:`~calibopt.datasets.GeographyRules` used to build the matrix: their
        variables are recomputed for each record under its destination's rules (as in the
        matrix), so the file's totals equal ``X @ w``.
    layout
        ``"calibopt"`` (lossless, see :mod:`calibopt.datasets.hdf5`) or ``"policyengine"``
        (``/<variable>/<period>``).
    mapping_path
        The mapping CSV (default ``<stem>_household_mapping.csv`` beside the file).
    period
        Period of the PolicyEngine layout (default: the dataset's).
    level
        ``"district"`` or ``"state"`` when ``geographies`` is a plain list (default: states
        when every code is below 100).
    variables
        Variables to write (default all); ids, links, weights and geography are always
        written. Use it to write input variables only.
    stride, id_dtype, derived_id_factor
        The id scheme (:mod:`calibopt.stacking.ids`): ids per geography range (``"auto"``),
        the id dtype (``"int32"`` or ``"int64"``), and the factor by which consumers may
        multiply ids (ids x factor must fit the dtype; checked before writing).
    overwrite
        Replace existing output files (otherwise they are an error, raised before any work).
    progress
        Show progress bars (default: only on a terminal).

    Returns
    -------
    StackedDataset
        The written data with its mapping, id scheme and paths.

    Raises
    ------
    InvalidProblemError
        Weights of the wrong length, negative, NaN or infinite; a subset geography that was
        not calibrated; a dataset without an entity id column; ids that would overflow; an
        output that exists (without ``overwrite``) or cannot be written. Nothing is written.
    """
    from pathlib import Path

    mpath = Path(mapping_path) if mapping_path is not None else mapping_path_for(output_path)
    check_outputs([Path(output_path), mpath], overwrite)
    stacked = stacked_dataset(
        weights,
        geographies,
        dataset,
        subset,
        rules=rules,
        level=level,
        variables=variables,
        stride=stride,
        id_dtype=id_dtype,
        derived_id_factor=derived_id_factor,
        progress=progress,
    )
    return stacked.write(
        output_path, layout=layout, mapping_path=mpath, period=period, overwrite=overwrite
    )
