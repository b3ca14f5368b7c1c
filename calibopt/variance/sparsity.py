"""How uncertain are estimates when sparsity discards records? A bootstrap over everything.

Sparse calibration (``l0-mip``, ``reweighted-l1``, ``hard-concrete``, ``cross-category``)
selects records and then calibrates them; its weights are not a smooth function of the design
weights, so no linearisation applies. The bootstrap does: every replicate re-runs the whole
method (selection and calibration) on the replicate's design weights, and the spread of the
replicate estimates of variables that were *not* targets measures what the selection costs.
:func:`sparsity_uncertainty` runs every method on the same replicates (common random numbers,
so differences between methods are not bootstrap noise) next to a dense calibration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem
from ..status import SUCCESS_STATUSES
from .design import Design
from .estimators import total
from .replicate_design import ReplicateDesign
from .replicates import replicate_weights

__all__ = ["SparsityStudy", "local_area_design", "sparsity_uncertainty"]


@dataclass
class SparsityStudy:
    """What :func:`sparsity_uncertainty` found.

    Attributes
    ----------
    table : DataFrame
        One row per method and variable (and domain): ``method``, ``kept`` (non-zero weights of
        the full-sample run), ``kept_replicates`` (their mean over replicates), ``failed``
        (replicates whose calibration missed its targets or bounds: their weights are used as
        they are, as R does, so a large count makes that row's SE unreliable), ``variable``,
        [``domain``], ``estimate``, ``se``, ``cv``, ``se_ratio`` (SE over the dense method's SE)
        and ``se_linearised`` (the dense method's linearised SE, for comparison; NaN when the
        problem has tolerance bands, whose binding set changes from sample to sample).
    replicates : dict
        The re-calibrated :class:`ReplicateDesign` of each method.
    dense : str
        The label of the dense reference.
    """

    table: pd.DataFrame
    replicates: dict[str, ReplicateDesign] = field(default_factory=dict)
    dense: str = "raking"

    def __repr__(self) -> str:
        with pd.option_context("display.width", 160, "display.float_format", "{:.4g}".format):
            return f"SparsityStudy(dense={self.dense!r})\n{self.table.to_string(index=False)}"


def _specs(methods: Any, dense: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    """label -> (method, options)."""
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, dict):
        items = list(methods.items())
    else:
        items = [(m, {}) for m in methods]
    specs: dict[str, tuple[Any, dict[str, Any]]] = {}
    for label, opts in items:
        if not isinstance(opts, dict):
            raise InvalidProblemError(
                f"methods[{label!r}] must be a dict of options (optionally with 'method')."
            )
        opts = dict(opts)
        specs[str(label)] = (opts.pop("method", label), opts)
    if dense not in specs:
        specs = {dense: (dense, {}), **specs}
    return specs


def sparsity_uncertainty(
    design: Design,
    problem: CalibrationProblem,
    y: Any,
    methods: Any = ("l0-mip", "reweighted-l1", "cross-category", "hard-concrete"),
    *,
    dense: str = "raking",
    replicates: int = 50,
    type: str = "bootstrap",
    seed: Any = 0,
    by: Any = None,
    executor: Any = None,
    progress: bool | None = None,
) -> SparsityStudy:
    """Bootstrap the whole selection + calibration of sparse methods, next to a dense one.

    Parameters
    ----------
    design
        The survey design (its rows are the problem's units, its weights the initial weights).
    problem
        The calibration problem.
    y
        Variables to estimate (not targets, to see what sparsity costs), as for
        :func:`calibopt.variance.total`.
    methods
        Method names, or ``{label: {"method": name, **options}}`` (the label is the method
        when ``"method"`` is missing), e.g. ``{"cross-category": {"n_keep": 200}}``.
    dense
        The dense reference (a distance method, linearisable); added when not in ``methods``.
    replicates, type, seed
        The replicates (default 50 Rao-Wu bootstrap replicates), shared by every method.
    by
        Domains for the estimates (e.g. districts).
    executor, progress
        Where replicates run, and a progress bar.

    Returns
    -------
    SparsityStudy
    """
    specs = _specs(methods, dense)
    options = {"replicates": replicates, "seed": seed} if type == "bootstrap" else {}
    base = replicate_weights(design, type, **options)
    rows = []
    fitted: dict[str, ReplicateDesign] = {}
    dense_se = None
    linearised = None
    for label, (method, opts) in specs.items():
        reps = base.calibrate(problem, method, executor=executor, progress=progress, **opts)
        fitted[label] = reps
        est = total(y, reps, by=by)
        if label == dense:
            dense_se = est.se
            linearised = np.full(len(est), np.nan)
            if np.all(problem.tolerance == 0):  # with bands the active set moves: no formula
                cal = design.calibrate(problem, method, **opts)
                linearised = total(y, cal, by=by).se
        frame = est.frame().drop(columns=["ci_low", "ci_high"])
        status = reps.info["replicate_status"]
        frame.insert(0, "failed", sum(s not in SUCCESS_STATUSES for s in status))
        frame.insert(0, "kept_replicates", float(np.mean(reps.info["replicate_nnz"])))
        frame.insert(0, "kept", reps.info["calibration"].nnz)
        frame.insert(0, "method", label)
        rows.append(frame)
    table = pd.concat(rows, ignore_index=True)
    table["se_ratio"] = table["se"].to_numpy() / np.tile(dense_se, len(specs))
    table["se_linearised"] = np.tile(linearised, len(specs))
    return SparsityStudy(table, fitted, dense)


def local_area_design(
    matrix: Any, problem: CalibrationProblem, strata: str = "home_state", lonely_psu: str = "fail"
) -> Design:
    """The survey design of a local-area problem: its columns are (household, district) pairs.

    A household is one sampled unit wherever it is placed, so it is the PSU of all its
    columns; households are stratified by their home state (the synthetic country samples a
    fixed number per state). The design weights are the problem's initial weights (the
    prior spread over districts), so the design fits the problem.

    Parameters
    ----------
    matrix
        A :class:`~calibopt.matrix.CalibrationMatrix` (geography-major columns).
    problem
        Its calibration problem (``matrix.to_problem(...)``).
    strata
        ``"home_state"`` or None (unstratified).
    lonely_psu
        See :class:`Design`.

    Returns
    -------
    Design
        Its data has ``household_id``, ``geography`` (the column's district), ``state_fips``
        (the district's state) and ``home_state``: ``by="geography"`` gives district estimates.
    """
    cm = matrix.columns
    g, h = cm.n_geographies, cm.n_households
    if cm.home_state is None and strata is not None:
        raise InvalidProblemError(
            "the matrix does not know the households' states; pass strata=None."
        )
    data = pd.DataFrame(
        {
            "household_id": np.tile(cm.household_ids, g),
            "geography": np.repeat(cm.geographies, h),
            "state_fips": np.repeat(cm.states, h),
        }
    )
    if cm.home_state is not None:
        data["home_state"] = np.tile(cm.home_state, g)
    return Design(
        data,
        weights=problem.initial_weights,
        strata=None if strata is None else strata,
        psu="household_id",
        lonely_psu=lonely_psu,
    )
